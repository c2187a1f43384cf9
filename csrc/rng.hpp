// The one definition of fastmlem's counter-based random pairs, shared by the CPU kernels and the
// CUDA kernels (compiled as __host__ __device__ by nvcc), so both draw bit-identical pairs.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FASTMLEM_HD __host__ __device__
#else
#define FASTMLEM_HD
#endif

namespace fastmlem {
namespace rng {

// SplitMix64 finaliser (wrapping arithmetic).
FASTMLEM_HD inline uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Key of one stream: bits[k] = splitmix64(key + k).
FASTMLEM_HD inline uint64_t stream_key(uint64_t seed, uint64_t stream) {
  return splitmix64(splitmix64(seed) ^ (stream * 0xD1B54A32D192ED03ULL));
}

// High 64 bits of the 128-bit product a * b, from 32-bit halves (the same on host and device).
FASTMLEM_HD inline uint64_t mulhi64(uint64_t a, uint64_t b) {
  const uint64_t a0 = a & 0xFFFFFFFFULL, a1 = a >> 32, b0 = b & 0xFFFFFFFFULL, b1 = b >> 32;
  const uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const uint64_t mid = (p00 >> 32) + (p01 & 0xFFFFFFFFULL) + (p10 & 0xFFFFFFFFULL);
  return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

// Pair number k of a stream. n < 2^32: one draw, i from its high 32 bits, j from its low 32 bits,
// each mapped to [0, n) by a 32-bit multiply-shift. n >= 2^32: two draws per pair (counters 2k
// and 2k + 1), each mapped to [0, n) by a 64-bit multiply-shift, so every index can be drawn.
FASTMLEM_HD inline void pair(uint64_t key, uint64_t k, uint64_t n, int64_t* i, int64_t* j) {
  if (n >> 32) {
    *i = static_cast<int64_t>(mulhi64(splitmix64(key + 2 * k), n));
    *j = static_cast<int64_t>(mulhi64(splitmix64(key + 2 * k + 1), n));
    return;
  }
  const uint64_t h = splitmix64(key + k);
  *i = static_cast<int64_t>(((h >> 32) * n) >> 32);
  *j = static_cast<int64_t>(((h & 0xFFFFFFFFULL) * n) >> 32);
}

}  // namespace rng
}  // namespace fastmlem
