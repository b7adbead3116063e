// kernels/philox.h — Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11; bit-compatible with Random123's philox4x32 and cuRAND's Philox4_32_10 block function).
//
// Why counter-based: a dropout mask must be produced again in backward, and identically on the
// CPU and on the GPU. A counter-based generator is a pure function of (key, counter), so element
// i's random number is computed from i itself: no state to store, no sequential stream to replay,
// and any thread layout on any device gives the same bits. Plain C++ on the host (this header is
// included by CPU code) and __host__ __device__ under nvcc.
//
// Stream layout used by philox_uniform / philox_bits: key = the 64-bit seed; counter =
// (lo, hi of index / 4, lo, hi of offset). One block yields 4 words: element `index` takes word
// index % 4. `offset` selects an independent stream for the same seed (the caller advances it per
// use, as PyTorch's philox offset), so (seed, offset) pairs never share counters.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PEFT_HOST_DEVICE __host__ __device__
#else
#define PEFT_HOST_DEVICE
#endif

namespace peft::kernels {

struct Philox4x32 {
  uint32_t v[4];
};

namespace philox_detail {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments

PEFT_HOST_DEVICE inline uint32_t mulhi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

}  // namespace philox_detail

// One Philox4x32 block with `rounds` rounds (10 is the standard, and what everything here uses;
// other counts exist so the test can also check Random123's 7-round vectors).
PEFT_HOST_DEVICE inline Philox4x32 philox4x32(Philox4x32 ctr, uint32_t k0, uint32_t k1, int rounds = 10) {
  using namespace philox_detail;
  for (int r = 0; r < rounds; ++r) {
    if (r > 0) {  // the key is bumped between rounds, never before the first
      k0 += kW0;
      k1 += kW1;
    }
    const uint32_t hi0 = mulhi(kM0, ctr.v[0]), lo0 = kM0 * ctr.v[0];
    const uint32_t hi1 = mulhi(kM1, ctr.v[2]), lo1 = kM1 * ctr.v[2];
    ctr = Philox4x32{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
  }
  return ctr;
}

// The block holding element `index` of stream (seed, offset): elements 4*(index/4) .. +3.
PEFT_HOST_DEVICE inline Philox4x32 philox_block(uint64_t seed, uint64_t offset, uint64_t index) {
  const uint64_t b = index >> 2;
  const Philox4x32 ctr{{static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), static_cast<uint32_t>(offset),
                        static_cast<uint32_t>(offset >> 32)}};
  return philox4x32(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// 32 random bits for element `index` of stream (seed, offset).
PEFT_HOST_DEVICE inline uint32_t philox_bits(uint64_t seed, uint64_t offset, uint64_t index) {
  const Philox4x32 b = philox_block(seed, offset, index);
  const uint32_t w = static_cast<uint32_t>(index & 3);
  // Selects rather than b.v[w]: a dynamic index would put the block in local memory on the GPU.
  return w == 0 ? b.v[0] : w == 1 ? b.v[1] : w == 2 ? b.v[2] : b.v[3];
}

// A 32-bit word to a float uniform in [0, 1): the top 24 bits times 2^-24. The product is exact
// in float on every device, so the CPU and the GPU agree bit for bit (and on `u < p`).
PEFT_HOST_DEVICE inline float philox_word_to_uniform(uint32_t w) {
  return static_cast<float>(w >> 8) * (1.0f / 16777216.0f);
}

// Uniform in [0, 1) for element `index` of stream (seed, offset).
PEFT_HOST_DEVICE inline float philox_uniform(uint64_t seed, uint64_t offset, uint64_t index) {
  return philox_word_to_uniform(philox_bits(seed, offset, index));
}

}  // namespace peft::kernels
