// Neural distances of sampled pairs (gather-bound: G lanes per pair, 16-byte vector loads,
// double accumulation), look-ups in precomputed RDMs, and condensed RDMs from a Gram matrix.
#include <cmath>

#include "common.cuh"
#include "kernels.hpp"

namespace fastmlem {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename T> struct Vec;  // 16-byte vector of T
template <> struct Vec<float> { using type = float4; static constexpr int width = 4; };
template <> struct Vec<double> { using type = double2; static constexpr int width = 2; };

struct Acc {
  double s = 0, ab = 0, aa = 0, bb = 0;
};

template <int METRIC>
__device__ __forceinline__ void accumulate(Acc& acc, double a, double b) {
  fastmlem::accumulate<static_cast<Metric>(METRIC)>(a, b, acc.s, acc.ab, acc.aa, acc.bb);
}

template <int METRIC, typename T>
__device__ __forceinline__ void accumulate_vec(Acc& acc, float4 a, float4 b) {
  accumulate<METRIC>(acc, a.x, b.x); accumulate<METRIC>(acc, a.y, b.y);
  accumulate<METRIC>(acc, a.z, b.z); accumulate<METRIC>(acc, a.w, b.w);
}
template <int METRIC, typename T>
__device__ __forceinline__ void accumulate_vec(Acc& acc, double2 a, double2 b) {
  accumulate<METRIC>(acc, a.x, b.x); accumulate<METRIC>(acc, a.y, b.y);
}

template <int G>
__device__ __forceinline__ double group_sum(double v, unsigned mask) {
#pragma unroll
  for (int off = G / 2; off > 0; off /= 2) v += __shfl_xor_sync(mask, v, off, G);
  return v;
}

// G lanes (a power of two <= 32) per pair. All lanes of a group run the same trip count, and the
// shuffles name only the group's lanes, so groups of one warp may leave the loop at different times.
template <int METRIC, typename T, bool VECTOR, int G>
__global__ void neural_kernel(const T* __restrict__ Y, int64_t p, const int64_t* __restrict__ I,
                              const int64_t* __restrict__ J, int64_t B, double* __restrict__ out) {
  const int64_t thread = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int lane = threadIdx.x % G;
  const unsigned mask = G == 32 ? 0xFFFFFFFFu : (((1u << G) - 1u) << ((threadIdx.x % 32) / G * G));
  const int64_t groups = static_cast<int64_t>(gridDim.x) * blockDim.x / G;
  for (int64_t k = thread / G; k < B; k += groups) {
    const T* a = Y + I[k] * p;
    const T* b = Y + J[k] * p;
    Acc acc;
    if (VECTOR) {
      using V = typename Vec<T>::type;
      const V* av = reinterpret_cast<const V*>(a);
      const V* bv = reinterpret_cast<const V*>(b);
      const int64_t pv = p / Vec<T>::width;
      for (int64_t e = lane; e < pv; e += G) accumulate_vec<METRIC, T>(acc, __ldg(av + e), __ldg(bv + e));
    } else {
      for (int64_t e = lane; e < p; e += G) accumulate<METRIC>(acc, static_cast<double>(a[e]), static_cast<double>(b[e]));
    }
    const double result = finish<static_cast<Metric>(METRIC)>(group_sum<G>(acc.s, mask), group_sum<G>(acc.ab, mask),
                                                              group_sum<G>(acc.aa, mask), group_sum<G>(acc.bb, mask));
    if (lane == 0) out[k] = I[k] == J[k] ? 0.0 : result;  // a stimulus is at distance 0 from itself
  }
}

template <int METRIC, typename T, bool VECTOR>
void launch_neural(const T* Y, int64_t p, const int64_t* i, const int64_t* j, int64_t B, double* out,
                   cudaStream_t stream) {
  const int64_t width = VECTOR ? p / Vec<T>::width : p;
  if (width <= 64) {  // short rows: 8 lanes per pair, 4 pairs per warp
    neural_kernel<METRIC, T, VECTOR, 8><<<grid_for(B * 8, kThreads), kThreads, 0, stream>>>(Y, p, i, j, B, out);
  } else {
    neural_kernel<METRIC, T, VECTOR, 32><<<grid_for(B * 32, kThreads), kThreads, 0, stream>>>(Y, p, i, j, B, out);
  }
}

template <int METRIC, typename T>
void dispatch_vector(const T* Y, int64_t p, const int64_t* i, const int64_t* j, int64_t B, double* out,
                     cudaStream_t stream) {
  const bool aligned = reinterpret_cast<uintptr_t>(Y) % 16 == 0 && p % Vec<T>::width == 0;
  if (aligned) launch_neural<METRIC, T, true>(Y, p, i, j, B, out, stream);
  else launch_neural<METRIC, T, false>(Y, p, i, j, B, out, stream);
}

template <typename T>
void dispatch_metric(const T* Y, int64_t p, const int64_t* i, const int64_t* j, int64_t B, int metric,
                     double* out, cudaStream_t stream) {
  if (metric < 0 || metric >= kMetricCount) throw std::runtime_error("fastmlem._cuda: neural_distances: unknown metric");
  with_metric(static_cast<Metric>(metric), [&](auto M) {
    dispatch_vector<static_cast<int>(decltype(M)::value)>(Y, p, i, j, B, out, stream);
  });
}

__global__ void lookup_condensed_kernel(const double* D, int64_t n, const int64_t* I, const int64_t* J,
                                        int64_t B, double* out) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < B;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t a = I[k], b = J[k], lo = a < b ? a : b, hi = a < b ? b : a;
    out[k] = lo == hi ? 0.0 : D[condensed_index(n, lo, hi)];
  }
}

// One block per row r of the condensed RDM; its entries (r, c > r) are contiguous in `out`.
__global__ void condensed_from_gram_kernel(const double* G, int64_t ld, const double* sq, int64_t r0,
                                           int64_t n, int metric, double* out) {
  const int64_t r = r0 + blockIdx.x;
  const double* g = G + static_cast<int64_t>(blockIdx.x) * ld;
  double* row = out + condensed_index(n, r, r + 1) - (r + 1);  // row[c] is entry (r, c)
  const double sr = sq[r];
  for (int64_t c = r + 1 + threadIdx.x; c < n; c += blockDim.x) {
    if (metric == kCosine) {
      const double den = sqrt(sr) * sqrt(sq[c]);
      row[c] = den > 0 ? 1.0 - g[c] / den : 1.0;
    } else {
      row[c] = sqrt(fmax(sr + sq[c] - 2.0 * g[c], 0.0));
    }
  }
}

}  // namespace

void neural_distances(const void* Y, int itemsize, int64_t p, const int64_t* i, const int64_t* j,
                      int64_t B, int metric, double* out, cudaStream_t stream) {
  if (B <= 0) return;
  if (itemsize == 4) dispatch_metric(static_cast<const float*>(Y), p, i, j, B, metric, out, stream);
  else if (itemsize == 8) dispatch_metric(static_cast<const double*>(Y), p, i, j, B, metric, out, stream);
  else throw std::runtime_error("fastmlem._cuda: neural_distances: Y must be float32 or float64");
  check_launch("neural_distances");
}

void lookup_condensed(const double* D, int64_t n, const int64_t* i, const int64_t* j, int64_t B,
                      double* out, cudaStream_t stream) {
  if (B <= 0) return;
  lookup_condensed_kernel<<<grid_for(B, kThreads), kThreads, 0, stream>>>(D, n, i, j, B, out);
  check_launch("lookup_condensed");
}

void condensed_from_gram(const double* G, int64_t ld, const double* sq, int64_t r0, int64_t r1, int64_t n,
                         int metric, double* out, cudaStream_t stream) {
  if (metric != kEuclidean && metric != kCosine)
    throw std::runtime_error("fastmlem._cuda: condensed_from_gram: metric must be euclidean or cosine");
  if (r1 <= r0) return;
  condensed_from_gram_kernel<<<static_cast<unsigned>(r1 - r0), kThreads, 0, stream>>>(G, ld, sq, r0, n, metric, out);
  check_launch("condensed_from_gram");
}

}  // namespace cuda
}  // namespace fastmlem
