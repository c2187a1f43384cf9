// Pair sampling and predictor rows (feature distances), unfused and fused with the prediction
// F w (forward) and F^T g (backward), so that training never stores the (B, q) matrix F.
#include <cmath>

#include "../rng.hpp"
#include "common.cuh"
#include "kernels.hpp"

namespace fastmlem {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr size_t kSharedBudget = 48 * 1024;  // default dynamic shared memory limit per block

// Distance of feature f for pair (i, j): clip(|x_if - x_jf|, 0, 1) (or clip(X[i, j, f], 0, 1) when
// precomputed), NaN -> fill. Same operations, in the same order, as the CPU kernel.
__device__ __forceinline__ double feature(const double* X, int64_t n, int64_t m, bool precomputed,
                                          int64_t i, int64_t j, int64_t f, double fill) {
  return clip_feature(precomputed ? X[(i * n + j) * m + f] : fabs(X[i * m + f] - X[j * m + f]), fill);
}

// Column c of the row-major lower triangle (c = a(a+1)/2 + b, b <= a) -> (a, b).
__device__ __forceinline__ void tril_index(int64_t c, int64_t* a, int64_t* b) {
  int64_t r = static_cast<int64_t>((sqrt(8.0 * static_cast<double>(c) + 1.0) - 1.0) * 0.5);
  while (r * (r + 1) / 2 > c) --r;
  while ((r + 1) * (r + 2) / 2 <= c) ++r;
  *a = r;
  *b = c - r * (r + 1) / 2;
}

__global__ void sample_pairs_kernel(uint64_t key, uint64_t n, int64_t B, int64_t* I, int64_t* J) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < B;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    rng::pair(key, static_cast<uint64_t>(k), n, I + k, J + k);
}

// One thread per output element (coalesced writes; the two source rows are cached).
__global__ void feature_distances_kernel(const double* X, int64_t n, int64_t m, bool precomputed,
                                         const int64_t* I, const int64_t* J, int64_t B,
                                         bool interactions, double fill, double* F) {
  const int64_t q = interactions ? m * (m + 1) / 2 : m, total = B * q;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = e / q, c = e - k * q, i = I[k], j = J[k];
    int64_t a = c, b = c;
    if (interactions) tril_index(c, &a, &b);
    const double da = feature(X, n, m, precomputed, i, j, a, fill);
    const double db = a == b ? da : feature(X, n, m, precomputed, i, j, b, fill);
    F[e] = da * db;
  }
}

// Threads per block for the fused kernels: the largest of 128, 64, 32 whose shared memory
// (q weights or accumulators, m x (threads + 1) feature distances, threads cotangents) fits.
int fused_threads(int64_t m, bool interactions) {
  const int64_t q = interactions ? m * (m + 1) / 2 : m;
  for (int t = 128; t >= 32; t /= 2)
    if (static_cast<size_t>(q + m * (t + 1) + t) * sizeof(double) <= kSharedBudget) return t;
  return 0;
}

size_t fused_shared_bytes(int64_t m, bool interactions, int threads) {
  const int64_t q = interactions ? m * (m + 1) / 2 : m;
  return static_cast<size_t>(q + m * (threads + 1) + threads) * sizeof(double);
}

// Fused forward, one thread per pair. Shared memory: w (q), then d[f * (T + 1) + t] (column t
// belongs to thread t only, so the loop needs no barrier; the +1 pads away bank conflicts).
__global__ void predict_pairs_kernel(const double* X, int64_t n, int64_t m, bool precomputed,
                                     bool interactions, double fill, const double* w, bool generate,
                                     uint64_t key, int64_t* I, int64_t* J, int64_t B,
                                     double* pred) {
  extern __shared__ double shared[];
  const int T = blockDim.x, t = threadIdx.x;
  const int64_t q = interactions ? m * (m + 1) / 2 : m;
  double* ws = shared;
  double* d = shared + q;
  for (int64_t c = t; c < q; c += T) ws[c] = w[c];
  __syncthreads();
  for (int64_t k = blockIdx.x * static_cast<int64_t>(T) + t; k < B;
       k += static_cast<int64_t>(gridDim.x) * T) {
    int64_t i, j;
    if (generate) {
      rng::pair(key, static_cast<uint64_t>(k), static_cast<uint64_t>(n), &i, &j);
      if (I != nullptr) I[k] = i;
      if (J != nullptr) J[k] = j;
    } else {
      i = I[k];
      j = J[k];
    }
    for (int64_t f = 0; f < m; ++f) d[f * (T + 1) + t] = feature(X, n, m, precomputed, i, j, f, fill);
    double acc = 0.0;
    if (interactions) {
      int64_t c = 0;
      for (int64_t a = 0; a < m; ++a) {
        const double da = d[a * (T + 1) + t];
        for (int64_t b = 0; b <= a; ++b, ++c) acc += ws[c] * (da * d[b * (T + 1) + t]);
      }
    } else {
      for (int64_t f = 0; f < m; ++f) {
        const double df = d[f * (T + 1) + t];
        acc += ws[f] * (df * df);
      }
    }
    pred[k] = acc;
  }
}

// Fused backward: each block walks tiles of T pairs; per tile the distances of all its pairs go
// to shared memory, then thread t accumulates columns c = t, t + T, ... over the tile. One row of
// partial sums per block; a second kernel adds the rows in a fixed order (deterministic).
__global__ void features_vjp_kernel(const double* X, int64_t n, int64_t m, bool precomputed,
                                    bool interactions, double fill, const int64_t* I,
                                    const int64_t* J, int64_t B, const double* g,
                                    double* partial) {
  extern __shared__ double shared[];
  const int T = blockDim.x, t = threadIdx.x;
  const int64_t q = interactions ? m * (m + 1) / 2 : m;
  double* acc = shared;             // q
  double* d = shared + q;           // m * (T + 1)
  double* gs = d + m * (T + 1);     // T
  for (int64_t c = t; c < q; c += T) acc[c] = 0.0;
  for (int64_t base = blockIdx.x * static_cast<int64_t>(T); base < B;
       base += static_cast<int64_t>(gridDim.x) * T) {
    const int64_t k = base + t;
    if (k < B) {
      const int64_t i = I[k], j = J[k];
      for (int64_t f = 0; f < m; ++f) d[f * (T + 1) + t] = feature(X, n, m, precomputed, i, j, f, fill);
      gs[t] = g[k];
    } else {
      for (int64_t f = 0; f < m; ++f) d[f * (T + 1) + t] = 0.0;
      gs[t] = 0.0;
    }
    __syncthreads();
    for (int64_t c = t; c < q; c += T) {
      int64_t a = c, b = c;
      if (interactions) tril_index(c, &a, &b);
      const double* da = d + a * (T + 1);
      const double* db = d + b * (T + 1);
      double s = 0.0;
      for (int u = 0; u < T; ++u) s += gs[u] * (da[u] * db[u]);
      acc[c] += s;
    }
    __syncthreads();  // the next tile overwrites d and gs
  }
  for (int64_t c = t; c < q; c += T) partial[blockIdx.x * q + c] = acc[c];
}

__global__ void sum_rows_kernel(const double* partial, int64_t rows, int64_t q, double* out) {
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < q;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int64_t r = 0; r < rows; ++r) s += partial[r * q + c];
    out[c] = s;
  }
}

constexpr int64_t kVjpMaxBlocks = 1024;

int64_t vjp_blocks(int64_t B, int threads) {
  const int64_t b = (B + threads - 1) / threads;
  return b < 1 ? 1 : (b < kVjpMaxBlocks ? b : kVjpMaxBlocks);
}

}  // namespace

void sample_pairs(int64_t n, int64_t B, uint64_t seed, uint64_t rng_stream, int64_t* i, int64_t* j,
                  cudaStream_t stream) {
  if (B <= 0) return;
  sample_pairs_kernel<<<grid_for(B, kThreads), kThreads, 0, stream>>>(
      rng::stream_key(seed, rng_stream), static_cast<uint64_t>(n), B, i, j);
  check_launch("sample_pairs");
}

void feature_distances(const double* X, int64_t n, int64_t m, bool precomputed, const int64_t* i,
                       const int64_t* j, int64_t B, bool interactions, double nan_to_num, double* F,
                       cudaStream_t stream) {
  const int64_t q = interactions ? m * (m + 1) / 2 : m;
  if (B <= 0 || q <= 0) return;
  feature_distances_kernel<<<grid_for(B * q, kThreads), kThreads, 0, stream>>>(
      X, n, m, precomputed, i, j, B, interactions, nan_to_num, F);
  check_launch("feature_distances");
}

bool fused_supported(int64_t m, bool interactions) { return m >= 1 && fused_threads(m, interactions) > 0; }

void predict_pairs(const double* X, int64_t n, int64_t m, bool precomputed, bool interactions,
                   double nan_to_num, const double* w, bool generate, uint64_t seed,
                   uint64_t rng_stream, int64_t* i, int64_t* j, int64_t B, double* pred,
                   cudaStream_t stream) {
  const int threads = fused_threads(m, interactions);
  if (threads == 0) throw std::runtime_error("fastmlem._cuda: predict_pairs: too many features for the fused kernel");
  if (B <= 0) return;
  const uint64_t key = generate ? rng::stream_key(seed, rng_stream) : 0;
  predict_pairs_kernel<<<grid_for(B, threads, 65536), threads, fused_shared_bytes(m, interactions, threads),
                         stream>>>(X, n, m, precomputed, interactions, nan_to_num, w, generate, key,
                                   i, j, B, pred);
  check_launch("predict_pairs");
}

size_t features_vjp_workspace(int64_t m, bool interactions, int64_t B) {
  const int threads = fused_threads(m, interactions);
  if (threads == 0) return 0;
  const int64_t q = interactions ? m * (m + 1) / 2 : m;
  Carver c;
  c.take<double>(vjp_blocks(B, threads) * q);
  return c.used();
}

void features_vjp(const double* X, int64_t n, int64_t m, bool precomputed, bool interactions,
                  double nan_to_num, const int64_t* i, const int64_t* j, int64_t B, const double* g,
                  double* grad, void* work, size_t work_bytes, cudaStream_t stream) {
  const int threads = fused_threads(m, interactions);
  if (threads == 0) throw std::runtime_error("fastmlem._cuda: features_vjp: too many features for the fused kernel");
  const int64_t q = interactions ? m * (m + 1) / 2 : m;
  check_workspace(work_bytes, features_vjp_workspace(m, interactions, B), "features_vjp");
  const int64_t blocks = vjp_blocks(B, threads);
  Carver carve(work);
  double* partial = carve.take<double>(blocks * q);
  features_vjp_kernel<<<static_cast<unsigned>(blocks), threads, fused_shared_bytes(m, interactions, threads),
                        stream>>>(X, n, m, precomputed, interactions, nan_to_num, i, j, B, g, partial);
  check_launch("features_vjp");
  sum_rows_kernel<<<grid_for(q, kThreads), kThreads, 0, stream>>>(partial, blocks, q, grad);
  check_launch("features_vjp (sum)");
}

}  // namespace cuda
}  // namespace fastmlem
