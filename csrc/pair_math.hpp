// The one definition of fastmlem's per-pair maths, shared by the CPU kernels and the CUDA kernels
// (compiled as __host__ __device__ by nvcc): the neural metrics, the condensed index, feature
// clipping and half-precision loads.
//
// Adding a neural distance: a Metric value, its name in kMetricNames, its two lines in
// accumulate() / finish() below, and its numpy twin in fastmlem/numpy_backend.py.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "rng.hpp"  // FASTMLEM_HD

namespace fastmlem {

enum class Metric : int { euclidean = 0, manhattan = 1, cosine = 2, norm_diff = 3 };
constexpr int kMetricCount = 4;
// Python reads these names from the compiled module (fastmlem._core.METRICS).
constexpr const char* kMetricNames[kMetricCount] = {"euclidean", "manhattan", "cosine", "norm_diff"};

// Sums of one pair of rows a, b: accumulate() one coordinate at a time (partial sums of several
// threads simply add up), then finish(). cosine is 1 - cos (1 when either row is zero);
// norm_diff is | |a| - |b| |.
template <Metric M, typename V = double>
FASTMLEM_HD inline void accumulate(V a, V b, V& s, V& ab, V& aa, V& bb) {
  if (M == Metric::euclidean) { const V d = a - b; s += d * d; }
  if (M == Metric::manhattan) s += std::fabs(a - b);
  if (M == Metric::cosine) ab += a * b;
  if (M == Metric::cosine || M == Metric::norm_diff) { aa += a * a; bb += b * b; }
}

template <Metric M>
FASTMLEM_HD inline double finish(double s, double ab, double aa, double bb) {
  if (M == Metric::euclidean) return std::sqrt(s);
  if (M == Metric::manhattan) return s;
  const double na = std::sqrt(aa), nb = std::sqrt(bb);
  if (M == Metric::norm_diff) return std::fabs(na - nb);
  const double den = na * nb;
  return den > 0 ? 1.0 - ab / den : 1.0;
}

// The one switch over metrics: calls f(std::integral_constant<Metric, M>{}) for the run-time m,
// so kernels are templates on the metric and host code dispatches here (CPU and CUDA alike).
template <typename F>
decltype(auto) with_metric(Metric m, F&& f) {
  switch (m) {
    case Metric::manhattan: return f(std::integral_constant<Metric, Metric::manhattan>{});
    case Metric::cosine: return f(std::integral_constant<Metric, Metric::cosine>{});
    case Metric::norm_diff: return f(std::integral_constant<Metric, Metric::norm_diff>{});
    case Metric::euclidean: break;
  }
  return f(std::integral_constant<Metric, Metric::euclidean>{});
}

// Position of pair (a, b), a < b, in a condensed RDM of n stimuli (row-major upper triangle).
FASTMLEM_HD inline int64_t condensed_index(int64_t n, int64_t a, int64_t b) {
  return n * a - a * (a + 1) / 2 + b - a - 1;
}

// One feature distance: clip(v, 0, 1), NaN -> nan_to_num (v = |x_i - x_j|, or a precomputed value).
FASTMLEM_HD inline double clip_feature(double v, double nan_to_num) {
  if (v != v) v = nan_to_num;
  return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
}

// IEEE half (binary16 bits) -> float, exact for finite values (subnormals included): the 15
// exponent+mantissa bits shifted into a float and rescaled by 2^112. Inf/NaN are not handled
// (representations are checked finite before any kernel runs).
FASTMLEM_HD inline float half_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h & 0x7FFFu) << 13;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  f *= 5.192296858534828e+33f;  // 2^112
  return (h & 0x8000u) ? -f : f;
}

// Element loads as double: float16 (stored as uint16_t bits), float32 and float64.
FASTMLEM_HD inline double load(const uint16_t* p) { return half_to_float(*p); }
FASTMLEM_HD inline double load(const float* p) { return *p; }
FASTMLEM_HD inline double load(const double* p) { return *p; }

}  // namespace fastmlem

namespace fastmlem {
// Factor of the running min-max scaling (y - lo) * scale of MLEM's neural targets: 1 / (hi - lo)
// with a relative guard (the reference's absolute 1e-8 swamps distances of tiny data), 0 when every
// distance so far is equal.
FASTMLEM_HD inline double minmax_scale(double lo, double hi) {
  const double den = (hi - lo) + 1e-8 * (std::fabs(lo) > std::fabs(hi) ? std::fabs(lo) : std::fabs(hi));
  return den > 0 ? 1.0 / den : 0.0;
}
}  // namespace fastmlem
