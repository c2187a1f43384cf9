// Device helpers shared by the rank and soft-rank kernels.
#pragma once
#include <cstdint>

namespace fastmlem {
namespace cuda {

// Order-preserving map double -> uint64, as csrc/radix.hpp: -0.0 and 0.0 map alike.
__device__ __forceinline__ uint64_t order_key(double v) {
  if (v == 0.0) return 0x8000000000000000ULL;  // the key of +0.0
  const uint64_t u = static_cast<uint64_t>(__double_as_longlong(v));
  return (u & 0x8000000000000000ULL) ? ~u : (u | 0x8000000000000000ULL);
}

}  // namespace cuda
}  // namespace fastmlem
