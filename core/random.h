// Seeded, deterministic RNG. One global Generator (peft::manual_seed) plus user-owned ones.
// Uniforms from the top 53/24 bits of a 64-bit Mersenne Twister; normals by Box–Muller, so
// the streams are identical on every platform and standard library.
#pragma once
#include <cstdint>
#include <random>

namespace peft {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : engine_(seed), seed_(seed) {}
  void manual_seed(uint64_t seed) { engine_.seed(seed); seed_ = seed; has_spare_ = false; }
  uint64_t seed() const { return seed_; }
  uint64_t next_u64() { return engine_(); }
  double uniform() { return static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  double normal();

 private:
  std::mt19937_64 engine_;
  uint64_t seed_;
  bool has_spare_ = false;
  double spare_ = 0;
};

Generator& default_generator();
inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace peft
