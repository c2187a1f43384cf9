// Pure CPU kernels on raw pointers: no Python, no allocation policy.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "pair_math.hpp"

namespace fastmlem {

// Counter-based random numbers: bits[k] = splitmix64(stream_key(seed, stream) + k).
uint64_t splitmix64(uint64_t x);
uint64_t stream_key(uint64_t seed, uint64_t stream);

// B pairs uniform with replacement in [0, n)^2.
void sample_pairs(int64_t n, int64_t B, uint64_t seed, uint64_t stream, int64_t* i, int64_t* j);

// Predictor rows of pairs (i, j): out (B, m) squared feature distances or (B, m(m+1)/2) products,
// distances clip(|X[i] - X[j]|, 0, 1) of encoded features X (n, m), or, when precomputed,
// clip(X[i, j], 0, 1) of per-feature distance matrices X (n, n, m); NaN -> nan_to_num.
void feature_distances(const double* X, int64_t n, int64_t m, bool precomputed, const int64_t* i, const int64_t* j,
                       int64_t B, bool interactions, double nan_to_num, double* out);

// Ranks 1..B with ties averaged, for T rows of length B (row-major).
void rank_average(const double* x, int64_t T, int64_t B, double* out);

// One row of the above, with sort buffers the caller keeps between calls; Pearson of two rows.
struct RankBuffers {
  std::vector<int64_t> idx, itmp;
  std::vector<uint32_t> keys, ktmp;
};
void rank_row(const double* x, int64_t B, double* out, RankBuffers& buffers);
double pearson_row(const double* a, const double* b, int64_t B);

struct NeuralSource;
// Permutation feature importance of MLEM, fused: for each task t < n_tasks (column c = t / P),
// a fresh batch of B pairs (sample_pairs stream stream0 + t), neural distances from `targets`
// (condensed RDM or gathered rows; NaN -> nan_to_num), prediction sum_c F_c w_c summed in column order (identical
// rows tie exactly), column c permuted across pairs by numpy_backend.random_permutations(B, 1,
// perm_seed, t), and the exact Spearman (average ranks, y ranked once) of both. OpenMP over tasks.
void permutation_importance(const double* X, int64_t n, int64_t m, bool precomputed, bool interactions,
                            double nan_to_num,
                            const NeuralSource& targets, const double* w, int64_t B, uint64_t seed, uint64_t stream0,
                            uint64_t perm_seed, int64_t n_tasks, int64_t P, double* base, double* permuted);

// Exact Spearman correlation of T row pairs of length B.
void spearman(const double* x, const double* y, int64_t T, int64_t B, double* out);

// Kendall's tau-a of T row pairs of length B (2 <= B < 2^32; no NaN): (concordant - discordant)
// / (B(B-1)/2), pairs counted exactly in 64-bit integers, O(B log B) per row (Knight's algorithm:
// sort by (x, y), then count the inversions of y by a merge sort). OpenMP over rows, or over the
// merges of one row when T == 1.
void kendall_tau_a(const double* x, const double* y, int64_t T, int64_t B, double* out);

// Moments of two RDMs over the pairs r < c, r0 <= r < r1, of n stimuli, from Gram blocks
// Gx, Gy ((r1 - r0), n - r0) = Z[r0:r1] Z[r0:]^T and squared row norms sqx, sqy (n,): the
// dissimilarities of gram_row_dissimilarities, accumulated into stats = (count, mean_a,
// mean_b, centred sum of squares a, of b, centred sum of products) (Chan's update, row by row in
// row order: the same result on any thread count). OpenMP over rows.
void rdm_moments(const float* Gx, const double* sqx, const float* Gy, const double* sqy, int64_t r0, int64_t r1,
                 int64_t n, bool cosine, double* stats);
void rdm_moments(const double* Gx, const double* sqx, const double* Gy, const double* sqy, int64_t r0, int64_t r1,
                 int64_t n, bool cosine, double* stats);

}  // namespace fastmlem

namespace fastmlem {
// Soft ranks (ascending, 1..B) of T rows of length B, projection onto the permutahedron
// (Blondel et al. 2020) with l2 (kl=false) or kl regularisation of strength eps[t].
// Records, per row, the descending sort order perm and, per sorted position, the start of its
// pooled PAV block, which soft_rank_vjp needs.
void soft_rank(const double* x, const double* eps, int64_t T, int64_t B, bool kl, double* ranks,
               int64_t* perm, int64_t* block_start);
// The 'auto' l2 strength of one vector x (B,): the largest range * 2^t, t in [-40, 0] (12 bisection
// steps on t; t = 0 when it qualifies), whose soft ranks correlate >= 0.999 with the average ranks;
// 1.0 for a constant x or B < 2. Twin: fastmlem._shared.auto_strength.
double auto_strength(const double* x, int64_t B);
// grad_x of <g, soft_rank(x)>, from the forward's records.
void soft_rank_vjp(const double* g, const double* x, const double* ranks, const int64_t* perm,
                   const int64_t* block_start, const double* eps, int64_t T, int64_t B, bool kl,
                   double* out);
}  // namespace fastmlem

namespace fastmlem {
// Baseline and permuted exact Spearman (average ranks) of T rows of length B against the same
// targets y (T, B): y and pred (T, B) are ranked once per row, and each of the K permuted sets
// (K, T, B). Outputs base (T,) and permuted_out (K, T).
void permutation_spearman(const double* pred, const double* permuted, const double* y, int64_t K, int64_t T,
                          int64_t B, double* base, double* permuted_out);

// Neural distances of B sampled pairs of rows of Y (n, p), row stride ld elements, unit column stride,
// float16 (uint16_t bits), float32 or float64 (pair_math.hpp's metrics): euclidean and manhattan of
// float16/32 rows summed in float in blocks of 1,024 (relative error < 1.2e-6; a sum beyond float's
// range is taken again in double), everything else in double. `parallel`:
// OpenMP across pairs when the work is large (off inside an outer parallel region).
void neural_distances(const uint16_t* Y, int64_t n, int64_t p, int64_t ld, const int64_t* i, const int64_t* j,
                      int64_t B, Metric metric, double* out, bool parallel = true);
void neural_distances(const float* Y, int64_t n, int64_t p, int64_t ld, const int64_t* i, const int64_t* j, int64_t B,
                      Metric metric, double* out, bool parallel = true);
void neural_distances(const double* Y, int64_t n, int64_t p, int64_t ld, const int64_t* i, const int64_t* j, int64_t B,
                      Metric metric, double* out, bool parallel = true);

// The largest |y| of Y (rows, cols), row stride ld elements, as the bits of y with the sign cleared
// (for IEEE floats, integer order of those bits is magnitude order, inf and NaN last): one read of
// Y, threads across rows. T is the unsigned integer of Y's width (float16, float32, float64).
uint64_t largest_magnitude_bits(const uint16_t* Y, int64_t rows, int64_t cols, int64_t ld);
uint64_t largest_magnitude_bits(const uint32_t* Y, int64_t rows, int64_t cols, int64_t ld);
uint64_t largest_magnitude_bits(const uint64_t* Y, int64_t rows, int64_t cols, int64_t ld);

// Data that fit a core's cache (kCoreCacheBytes) or the shared cache (kSharedCacheBytes) are read
// without prefetches, and loops over them stay serial: on cached data a parallel region costs more
// than it saves, and it stalls when another process holds a core.
constexpr int64_t kCoreCacheBytes = int64_t(1) << 21;
constexpr int64_t kSharedCacheBytes = int64_t(1) << 25;

// Where MLEM's neural targets come from: a condensed RDM (rdm != nullptr), or rows of Y gathered
// per pair (Y of itemsize 2 = float16, 4, 8). The caller owns the memory.
struct NeuralSource {
  int64_t n = 0;
  const double* rdm = nullptr;
  const void* Y = nullptr;
  int itemsize = 8;
  int64_t p = 0, ld = 0;
  Metric metric = Metric::euclidean;
  const double* norms = nullptr;  // norm_diff: Y's row norms (n,), once cached by cache_norms
  // y[k] = distance of pair (i[k], j[k]), NaN -> nan_to_num.
  void distances(const int64_t* i, const int64_t* j, int64_t B, double nan_to_num, bool parallel, double* y) const;
  // The order in which distances() would visit a whole batch's pairs for locality (pairs_by_row), or
  // empty for their own order: for a caller that splits the batch into chunks, which would lose it.
  std::vector<int64_t> visit_order(const int64_t* i, const int64_t* j, int64_t B) const;
  // norm_diff of rows of Y: computes every row norm once into `store` (which must outlive this
  // source's use) so that distances() looks them up; nothing otherwise.
  void cache_norms(std::vector<double>& store);
};

// The one definition of a dissimilarity from Gram entries: row[c] = d(r, r + 1 + c), c < len, from
// g[c] = <y_r, y_{r+1+c}> and the squared row norms sq (n,): euclidean sqrt(sq_r + sq_c - 2 g) (Y
// centred by the caller), or cosine 1 - g / (|y_r| |y_c|) (1 for a zero row).
template <typename G_t>
inline void gram_row_dissimilarities(const G_t* g, const double* sq, int64_t r, int64_t len, bool cosine,
                                     double* row) {
  const double* sq_c = sq + r + 1;
  if (cosine) {
    const double nr = std::sqrt(sq[r]);
    for (int64_t c = 0; c < len; ++c) {
      const double den = nr * std::sqrt(sq_c[c]);
      row[c] = den > 0 ? 1.0 - static_cast<double>(g[c]) / den : 1.0;
    }
    return;
  }
  for (int64_t c = 0; c < len; ++c) row[c] = std::sqrt(std::max(sq[r] + sq_c[c] - 2.0 * static_cast<double>(g[c]), 0.0));
}

// Rows r0..r1-1 of a condensed RDM of n stimuli, from the Gram block G ((r1 - r0), n - r0) =
// Y[r0:r1] Y[r0:]^T and the squared row norms sq (n,), by gram_row_dissimilarities.
void condensed_from_gram(const float* G, const double* sq, int64_t r0, int64_t r1, int64_t n, bool cosine,
                         double* out);
void condensed_from_gram(const double* G, const double* sq, int64_t r0, int64_t r1, int64_t n, bool cosine,
                         double* out);
}  // namespace fastmlem
