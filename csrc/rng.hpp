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

// Pair number k of a stream: i from the high 32 bits, j from the low 32 bits, each mapped to
// [0, n) by a multiply-shift.
FASTMLEM_HD inline void pair(uint64_t key, uint64_t k, uint64_t n, int64_t* i, int64_t* j) {
  const uint64_t h = splitmix64(key + k);
  *i = static_cast<int64_t>(((h >> 32) * n) >> 32);
  *j = static_cast<int64_t>(((h & 0xFFFFFFFFULL) * n) >> 32);
}

}  // namespace rng
}  // namespace fastmlem
