// kernels/philox.h against Random123's known-answer vectors, and the Philox dropout CPU reference
// (kernels/cpu/dropout_philox.h) that the CUDA dropout kernels must reproduce bit for bit.
// Runs on the CPU for real.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/dropout_philox.h"
#include "kernels/philox.h"

using peft::kernels::Philox4x32;

namespace {

struct Kat {
  int rounds;
  Philox4x32 ctr;
  uint32_t k0, k1;
  Philox4x32 expected;
};

// Random123 (DEShawResearch) tests/kat_vectors, the "philox4x32" lines: CTR (4 words), KEY (2
// words), EXPECTED (4 words). The same three 10-round vectors appear in TensorFlow's
// random_test.py (citing Random123-Boost's test_philox.cpp) and other ports.
const Kat kKats[] = {
    {7, {{0, 0, 0, 0}}, 0, 0, {{0x5f6fb709u, 0x0d893f64u, 0x4f121f81u, 0x4f730a48u}}},
    {7, {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu,
     {{0x5207ddc2u, 0x45165e59u, 0x4d8ee751u, 0x8c52f662u}}},
    {7, {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
     {{0x4dfccabau, 0x190a87f0u, 0xc47362bau, 0xb6b5242au}}},
    {10, {{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
    {10, {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu,
     {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
    {10, {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
     {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
};

std::vector<uint8_t> mask_of(int64_t n, double p, uint64_t seed, uint64_t offset) {
  std::vector<uint8_t> m(static_cast<size_t>(n), 2);  // 2: never written
  peft::kernels::cpu::dropout_philox_mask(n, p, seed, offset, m.data());
  return m;
}

}  // namespace

TEST_CASE("philox4x32 reproduces Random123's known-answer vectors", "[philox]") {
  for (const Kat& k : kKats) {
    const Philox4x32 got = peft::kernels::philox4x32(k.ctr, k.k0, k.k1, k.rounds);
    INFO("rounds " << k.rounds << " counter[0] 0x" << std::hex << k.ctr.v[0] << " key[0] 0x" << k.k0);
    for (int i = 0; i < 4; ++i) CHECK(got.v[i] == k.expected.v[i]);
  }
  // The default is the standard 10 rounds.
  const Philox4x32 d = peft::kernels::philox4x32(kKats[5].ctr, kKats[5].k0, kKats[5].k1);
  for (int i = 0; i < 4; ++i) CHECK(d.v[i] == kKats[5].expected.v[i]);
}

TEST_CASE("philox streams: key = seed, counter = (index / 4, offset), word = index % 4", "[philox]") {
  // Pins the layout the CUDA kernels share; high halves of every 64-bit input matter.
  const uint64_t seeds[] = {0, 42, 0x123456789abcdef0ull};
  const uint64_t offsets[] = {0, 1, 0x100000007ull};
  const uint64_t indices[] = {0, 1, 2, 3, 4, 1023, (uint64_t(1) << 34) + 5};
  for (uint64_t seed : seeds)
    for (uint64_t off : offsets)
      for (uint64_t i : indices) {
        const uint64_t b = i / 4;
        const Philox4x32 ctr{{static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), static_cast<uint32_t>(off),
                              static_cast<uint32_t>(off >> 32)}};
        const Philox4x32 r =
            peft::kernels::philox4x32(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
        CHECK(peft::kernels::philox_bits(seed, off, i) == r.v[i % 4]);
      }
  CHECK(peft::kernels::philox_bits(1, 0, 0) != peft::kernels::philox_bits(uint64_t(1) << 32 | 1, 0, 0));
  CHECK(peft::kernels::philox_bits(1, 0, 0) != peft::kernels::philox_bits(1, uint64_t(1) << 32, 0));
}

TEST_CASE("philox_uniform is in [0, 1) with 24-bit resolution and mean 1/2", "[philox]") {
  CHECK(peft::kernels::philox_word_to_uniform(0) == 0.0f);
  CHECK(peft::kernels::philox_word_to_uniform(0xffffffffu) < 1.0f);
  CHECK(peft::kernels::philox_word_to_uniform(0xffffffffu) == 1.0f - 1.0f / 16777216.0f);
  const int64_t n = 1000000;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float u = peft::kernels::philox_uniform(7, 3, static_cast<uint64_t>(i));
    REQUIRE(u >= 0.0f);
    REQUIRE(u < 1.0f);
    sum += u;
  }
  // Var(U) = 1/12: the mean of n draws has sigma 1 / sqrt(12 n); allow 4 sigma.
  CHECK(std::abs(sum / n - 0.5) < 4.0 / std::sqrt(12.0 * n));
}

TEST_CASE("philox dropout drops a fraction p of 1e6 elements, within 4 sigma", "[philox][dropout]") {
  const int64_t n = 1000000;
  for (double p : {0.05, 0.1, 0.3, 0.5, 0.9}) {
    const auto m = mask_of(n, p, 1234, 0);
    int64_t dropped = 0;
    for (uint8_t k : m) {
      REQUIRE(k <= 1);
      dropped += k == 0;
    }
    const double frac = static_cast<double>(dropped) / n, sigma = std::sqrt(p * (1 - p) / n);
    INFO("p " << p << " dropped fraction " << frac << " sigma " << sigma);
    CHECK(std::abs(frac - p) < 4 * sigma);
  }
  for (uint8_t k : mask_of(1000, 0.0, 1, 2)) CHECK(k == 1);
  for (uint8_t k : mask_of(1000, 1.0, 1, 2)) CHECK(k == 0);
}

TEST_CASE("philox dropout is a function of (seed, offset, index) only", "[philox][dropout]") {
  const auto a = mask_of(4099, 0.5, 99, 5);
  CHECK(a == mask_of(4099, 0.5, 99, 5));  // deterministic
  // A shorter call (tails not a multiple of 4) is a prefix of a longer one.
  for (int64_t n : {1, 2, 3, 7, 1023}) {
    const auto s = mask_of(n, 0.5, 99, 5);
    CHECK(std::equal(s.begin(), s.end(), a.begin()));
  }
  // Another offset or seed is another stream: about half the decisions change at p = 0.5.
  auto differing = [&](const std::vector<uint8_t>& b) {
    int64_t d = 0;
    for (size_t i = 0; i < a.size(); ++i) d += a[i] != b[i];
    return static_cast<double>(d) / static_cast<double>(a.size());
  };
  CHECK(std::abs(differing(mask_of(4099, 0.5, 99, 6)) - 0.5) < 0.05);
  CHECK(std::abs(differing(mask_of(4099, 0.5, 100, 5)) - 0.5) < 0.05);
}

TEST_CASE("philox dropout forward scales kept elements by 1/(1-p); backward regenerates the mask",
          "[philox][dropout]") {
  const int64_t n = 1023;
  const double p = 0.3;
  std::vector<float> x(n), y(n, -7.f), dy(n), dx(n, -7.f);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = 0.5f + static_cast<float>(i % 13);
    dy[i] = -1.25f - static_cast<float>(i % 5);
  }
  peft::kernels::cpu::dropout_philox_forward(n, p, 5, 11, x.data(), y.data());
  peft::kernels::cpu::dropout_philox_backward(n, p, 5, 11, dy.data(), dx.data());
  const auto m = mask_of(n, p, 5, 11);
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i) {
    CHECK(y[i] == (m[i] ? x[i] * scale : 0.0f));
    CHECK(dx[i] == (m[i] ? dy[i] * scale : 0.0f));
  }
  // In place, and in double: the same mask.
  std::vector<double> xd(x.begin(), x.end());
  peft::kernels::cpu::dropout_philox_forward(n, p, 5, 11, xd.data(), xd.data());
  const double scaled = 1.0 / (1.0 - p);
  for (int64_t i = 0; i < n; ++i) CHECK(xd[i] == (m[i] ? static_cast<double>(x[i]) * scaled : 0.0));
  // p == 1 drops everything and never multiplies by the infinite scale.
  peft::kernels::cpu::dropout_philox_forward(n, 1.0, 5, 11, x.data(), y.data());
  for (float v : y) CHECK(v == 0.0f);
}
