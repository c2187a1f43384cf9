// CUDA kernels of fastmlem on raw device pointers: no Python, no allocation policy. Every launcher
// takes the stream it runs on and, where it needs scratch memory, a caller-owned workspace whose
// size the matching *_workspace function returns. Errors throw std::runtime_error.
//
// Conventions: row-major arrays; T rows of length B; pair counts and flat offsets are int64;
// sort orders within one row are int32 (so B < 2^31).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "../pair_math.hpp"

namespace fastmlem {
namespace cuda {

// Metrics, their names and the per-pair maths: ../pair_math.hpp (shared with the CPU kernels).
constexpr int kEuclidean = static_cast<int>(Metric::euclidean), kManhattan = static_cast<int>(Metric::manhattan),
              kCosine = static_cast<int>(Metric::cosine), kNormDiff = static_cast<int>(Metric::norm_diff);

// ---- pairs and features (pairs.cu) ------------------------------------------------------------
// B pairs uniform with replacement in [0, n)^2, bit-identical to the CPU sampler (rng.hpp).
void sample_pairs(int64_t n, int64_t B, uint64_t seed, uint64_t rng_stream, int64_t* i, int64_t* j,
                  cudaStream_t stream);

// Predictor rows F (B, q): d_k^2 (q = m) or d_a d_b for a >= b (q = m(m+1)/2, row-major lower
// triangle). X is (n, m), or (n, n, m) per-feature distances when `precomputed`.
void feature_distances(const double* X, int64_t n, int64_t m, bool precomputed, const int64_t* i,
                       const int64_t* j, int64_t B, bool interactions, double nan_to_num, double* F,
                       cudaStream_t stream);

// Whether the fused kernels below support m features (their per-thread rows live in shared memory).
bool fused_supported(int64_t m, bool interactions);

// Fused forward: pred = F w without F in global memory. With `generate`, pair k is drawn from
// (seed, rng_stream) as by sample_pairs and written to i, j (when not null); otherwise i, j are read.
void predict_pairs(const double* X, int64_t n, int64_t m, bool precomputed, bool interactions,
                   double nan_to_num, const double* w, bool generate, uint64_t seed,
                   uint64_t rng_stream, int64_t* i, int64_t* j, int64_t B, double* pred,
                   cudaStream_t stream);

// Fused backward: grad (q,) = F^T g, recomputing F tile by tile.
size_t features_vjp_workspace(int64_t m, bool interactions, int64_t B);
void features_vjp(const double* X, int64_t n, int64_t m, bool precomputed, bool interactions,
                  double nan_to_num, const int64_t* i, const int64_t* j, int64_t B, const double* g,
                  double* grad, void* work, size_t work_bytes, cudaStream_t stream);

// ---- neural distances (neural.cu) -------------------------------------------------------------
// out[k] = metric(Y[i[k]], Y[j[k]]) for Y (n, p) of float32 (itemsize 4) or float64 (itemsize 8).
void neural_distances(const void* Y, int itemsize, int64_t p, const int64_t* i, const int64_t* j,
                      int64_t B, int metric, double* out, cudaStream_t stream);
// out[k] = entry (i[k], j[k]) of a condensed RDM (n(n-1)/2,), 0 on the diagonal.
void lookup_condensed(const double* D, int64_t n, const int64_t* i, const int64_t* j, int64_t B,
                      double* out, cudaStream_t stream);
// Rows r0..r1-1 of the condensed RDM from the Gram rows G ((r1-r0), ld) = Y[r0:r1] Y^T and the
// squared row norms sq (n,); metric euclidean or cosine (a zero row has cosine distance 1).
void condensed_from_gram(const double* G, int64_t ld, const double* sq, int64_t r0, int64_t r1,
                         int64_t n, int metric, double* out, cudaStream_t stream);

// ---- ranks (rank.cu) --------------------------------------------------------------------------
// Stable argsort of each row (ascending, or descending), ties in index order.
size_t argsort_workspace(int64_t T, int64_t B);
void argsort_rows(const double* x, int64_t T, int64_t B, bool descending, int32_t* order,
                  uint64_t* sorted_keys, void* work, size_t work_bytes, cudaStream_t stream);
// Ranks 1..B with ties averaged.
size_t rank_workspace(int64_t T, int64_t B);
void rank_average(const double* x, int64_t T, int64_t B, double* out, void* work, size_t work_bytes,
                  cudaStream_t stream);
// Pearson correlation of T row pairs (0 for a constant row); y_stride = 0 broadcasts one y row.
size_t pearson_workspace(int64_t T, int64_t B);
void pearson_rows(const double* x, const double* y, int64_t y_stride, int64_t T, int64_t B,
                  double* out, void* work, size_t work_bytes, cudaStream_t stream);
// Exact Spearman of T row pairs (average ranks).
size_t spearman_workspace(int64_t T, int64_t B);
void spearman(const double* x, const double* y, int64_t T, int64_t B, double* out, void* work,
              size_t work_bytes, cudaStream_t stream);

// ---- soft rank (softrank.cu) ------------------------------------------------------------------
// Soft ranks of T rows (l2, or kl), strengths eps (T,). Records the descending sort order perm
// (T, B) and, per sorted position, the FLAT index (t * B + start) of its pooled block's start.
size_t soft_rank_workspace(int64_t T, int64_t B);
void soft_rank(const double* x, const double* eps, int64_t T, int64_t B, bool kl, double* ranks,
               int32_t* perm, int64_t* block, void* work, size_t work_bytes, cudaStream_t stream);
size_t soft_rank_vjp_workspace(int64_t T, int64_t B);
void soft_rank_vjp(const double* g, const double* x, const double* ranks, const int32_t* perm,
                   const int64_t* block, const double* eps, int64_t T, int64_t B, bool kl,
                   double* out, void* work, size_t work_bytes, cudaStream_t stream);

}  // namespace cuda
}  // namespace fastmlem
