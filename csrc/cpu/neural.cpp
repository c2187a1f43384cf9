// Neural distances of sampled pairs of rows of Y (n, p) in float16, float32 or float64, accumulated
// in double; the per-pair maths is pair_math.hpp's. Also the condensed RDM from Gram-matrix blocks.
#include "kernels.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "pair_math.hpp"

namespace fastmlem {

namespace {

// Independent partial sums per pass: one vector accumulator would make every FMA wait for the last
// (latency 4, two per cycle), so the loop runs kLanes sums side by side, at any vector width.
constexpr int kLanes = 32;

template <Metric M>
struct PairSums {
  double s[kLanes] = {}, ab[kLanes] = {}, aa[kLanes] = {}, bb[kLanes] = {};

  template <typename T>
  inline void add(const T* a, const T* b, int64_t p) {  // p a multiple of kLanes
    for (int64_t k = 0; k < p; k += kLanes) {
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) accumulate<M>(load(a + k + l), load(b + k + l), s[l], ab[l], aa[l], bb[l]);
    }
  }

  template <typename T>
  inline double finish_with_tail(const T* a, const T* b, int64_t len) {
    double S = 0, AB = 0, AA = 0, BB = 0;
    for (int64_t k = 0; k < len; ++k) accumulate<M>(load(a + k), load(b + k), S, AB, AA, BB);
    for (int l = 0; l < kLanes; ++l) { S += s[l]; AB += ab[l]; AA += aa[l]; BB += bb[l]; }
    return finish<M>(S, AB, AA, BB);
  }
};

// One pass over rows a and b (unit stride).
template <Metric M, typename T>
double pair_distance(const T* a, const T* b, int64_t p) {
  PairSums<M> sums;
  const int64_t body = p - p % kLanes;
  sums.add(a, b, body);
  return sums.finish_with_tail(a + body, b + body, p - body);
}

template <typename T>
double row_norm(const T* a, int64_t p) {
  double aa = 0;
#pragma omp simd reduction(+ : aa)
  for (int64_t k = 0; k < p; ++k) { const double v = load(a + k); aa += v * v; }
  return std::sqrt(aa);
}

// The per-pair row loops are built three times on x86-64 Linux with GCC, for the baseline, x86-64-v3
// (AVX2, FMA) and x86-64-v4 (AVX-512), and the loader picks one at run time; `flatten` inlines the
// whole call tree into each clone (a template called, not inlined, would run the baseline code).
// float16 rows additionally get an F16C path (half -> float in hardware) when the CPU has it.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FASTMLEM_X86_DISPATCH 1
#define FASTMLEM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define FASTMLEM_X86_DISPATCH 0
#define FASTMLEM_CLONES
#endif

template <typename T>
inline double row_distance_impl(const T* a, const T* b, int64_t p, Metric metric) {
  return with_metric(metric, [&](auto M) { return pair_distance<decltype(M)::value>(a, b, p); });
}

#if FASTMLEM_X86_DISPATCH
// Rows converted 256 halves at a time into float buffers by F16C, then the float loop.
template <Metric M>
__attribute__((target("arch=x86-64-v3"), flatten)) double half_pair_f16c(const uint16_t* a, const uint16_t* b, int64_t p) {
  constexpr int64_t kChunk = 256;
  alignas(32) float fa[kChunk], fb[kChunk];
  PairSums<M> sums;
  const int64_t body = p - p % kLanes;  // chunks are multiples of kLanes; the tail is read as halves
  for (int64_t k0 = 0; k0 < body; k0 += kChunk) {
    const int64_t len = std::min(kChunk, body - k0);
    for (int64_t e = 0; e < len; e += 8) {
      _mm256_store_ps(fa + e, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k0 + e))));
      _mm256_store_ps(fb + e, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + k0 + e))));
    }
    sums.add(fa, fb, len);
  }
  return sums.finish_with_tail(a + body, b + body, p - body);
}

__attribute__((target("arch=x86-64-v3"), flatten)) double row_distance_f16c(const uint16_t* a, const uint16_t* b, int64_t p,
                                                                   Metric metric) {
  return with_metric(metric, [&](auto M) { return half_pair_f16c<decltype(M)::value>(a, b, p); });
}
const bool kHasF16C = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") &&
                      __builtin_cpu_supports("fma");
#endif

double row_distance(const uint16_t* a, const uint16_t* b, int64_t p, Metric metric) {
#if FASTMLEM_X86_DISPATCH
  if (kHasF16C) return row_distance_f16c(a, b, p, metric);
#endif
  return row_distance_impl(a, b, p, metric);
}
FASTMLEM_CLONES double row_distance(const float* a, const float* b, int64_t p, Metric metric) {
  return row_distance_impl(a, b, p, metric);
}
FASTMLEM_CLONES double row_distance(const double* a, const double* b, int64_t p, Metric metric) {
  return row_distance_impl(a, b, p, metric);
}

template <typename U>
inline uint64_t largest_bits_impl(const U* Y, int64_t rows, int64_t cols, int64_t ld) {
  constexpr U kMagnitude = static_cast<U>(static_cast<U>(~U(0)) >> 1);  // (~ promotes uint16_t to int)
  U best = 0;
#pragma omp parallel for schedule(static) reduction(max : best) if (rows * cols > (int64_t(1) << 22))
  for (int64_t r = 0; r < rows; ++r) {
    const U* row = Y + r * ld;
    U top = 0;
#pragma omp simd reduction(max : top)
    for (int64_t c = 0; c < cols; ++c) top = std::max<U>(top, row[c] & kMagnitude);
    best = std::max(best, top);
  }
  return best;
}

constexpr int64_t kParallelWork = int64_t(1) << 22;  // elements read; below this OpenMP costs more
constexpr int64_t kPrefetchAhead = 4;                  // pairs ahead whose rows are prefetched

// Prefetch the rows of a coming pair (random rows: the hardware prefetcher would only follow a
// row once the loop has started on it).
template <typename T>
inline void prefetch_rows(const T* Y, int64_t ld, int64_t p, int64_t a, int64_t b) {
  const char* ra = reinterpret_cast<const char*>(Y + a * ld);
  const char* rb = reinterpret_cast<const char*>(Y + b * ld);
  const int64_t bytes = p * static_cast<int64_t>(sizeof(T));
  for (int64_t off = 0; off < bytes; off += 64) {
    __builtin_prefetch(ra + off);
    __builtin_prefetch(rb + off);
  }
}

// Pairs in the order of their lower row (a counting sort on min(i, j), in at most 2^16 buckets):
// pairs sharing a row then follow each other and find it in cache, and rows are read in address
// order. Returns the order in which to compute the pairs.
std::vector<int64_t> pairs_by_row(int64_t n, const int64_t* i, const int64_t* j, int64_t B) {
  const int64_t buckets = std::min<int64_t>(n, int64_t(1) << 16);
  const auto bucket = [&](int64_t k) { return std::min(i[k], j[k]) * buckets / n; };
  std::vector<int64_t> start(buckets + 1, 0), order(B);
  for (int64_t k = 0; k < B; ++k) ++start[bucket(k) + 1];
  for (int64_t b = 0; b < buckets; ++b) start[b + 1] += start[b];
  for (int64_t k = 0; k < B; ++k) order[start[bucket(k)]++] = k;
  return order;
}

template <typename T>
void over_pairs(const T* Y, int64_t n, int64_t ld, int64_t p, const int64_t* i, const int64_t* j, int64_t B,
                Metric metric, bool parallel, double* out) {
  const bool large = n * ld * static_cast<int64_t>(sizeof(T)) > kCoreCacheBytes;  // else: no prefetch, no sort
  std::vector<int64_t> order;
  // Sorted when rows recur within the batch (B >= n) and the rows are wide (float32/64): 17 % off the
  // float32 gather at n = 10^4 (2 threads); float16 rows (F16C-bound) and batches with few repeats
  // did not gain (measured).
  if (large && sizeof(T) >= 4 && B >= n) order = pairs_by_row(n, i, j, B);
  const int64_t* at = order.empty() ? nullptr : order.data();  // at[k]: the pair computed k-th
#pragma omp parallel for schedule(static) if (parallel && B * p > kParallelWork)
  for (int64_t k = 0; k < B; ++k) {
    if (large && k + kPrefetchAhead < B) {
      const int64_t next = at ? at[k + kPrefetchAhead] : k + kPrefetchAhead;
      prefetch_rows(Y, ld, p, i[next], j[next]);
    }
    const int64_t t = at ? at[k] : k;
    out[t] = row_distance(Y + i[t] * ld, Y + j[t] * ld, p, metric);
  }
}

template <typename T>
void neural_distances_impl(const T* Y, int64_t n, int64_t p, int64_t ld, const int64_t* i, const int64_t* j,
                           int64_t B, Metric metric, bool parallel, double* out) {
  // norm_diff: every row norm once when that reads less than the pairs would, else per pair.
  if (metric != Metric::norm_diff || n > 2 * B) return over_pairs(Y, n, ld, p, i, j, B, metric, parallel, out);
  std::vector<double> norms(n);
#pragma omp parallel for schedule(static) if (parallel && n * p > kParallelWork)
  for (int64_t r = 0; r < n; ++r) norms[r] = row_norm(Y + r * ld, p);
  for (int64_t k = 0; k < B; ++k) out[k] = std::fabs(norms[i[k]] - norms[j[k]]);
}

}  // namespace

FASTMLEM_CLONES uint64_t largest_magnitude_bits(const uint16_t* Y, int64_t rows, int64_t cols, int64_t ld) {
  return largest_bits_impl(Y, rows, cols, ld);
}
FASTMLEM_CLONES uint64_t largest_magnitude_bits(const uint32_t* Y, int64_t rows, int64_t cols, int64_t ld) {
  return largest_bits_impl(Y, rows, cols, ld);
}
FASTMLEM_CLONES uint64_t largest_magnitude_bits(const uint64_t* Y, int64_t rows, int64_t cols, int64_t ld) {
  return largest_bits_impl(Y, rows, cols, ld);
}

void neural_distances(const uint16_t* Y, int64_t n, int64_t p, int64_t ld, const int64_t* i, const int64_t* j,
                      int64_t B, Metric metric, double* out, bool parallel) {
  neural_distances_impl(Y, n, p, ld, i, j, B, metric, parallel, out);
}

void neural_distances(const float* Y, int64_t n, int64_t p, int64_t ld, const int64_t* i, const int64_t* j, int64_t B,
                      Metric metric, double* out, bool parallel) {
  neural_distances_impl(Y, n, p, ld, i, j, B, metric, parallel, out);
}

void neural_distances(const double* Y, int64_t n, int64_t p, int64_t ld, const int64_t* i, const int64_t* j, int64_t B,
                      Metric metric, double* out, bool parallel) {
  neural_distances_impl(Y, n, p, ld, i, j, B, metric, parallel, out);
}

void NeuralSource::distances(const int64_t* i, const int64_t* j, int64_t B, double nan_to_num, bool parallel,
                             double* y) const {
  if (rdm != nullptr) {
    const bool misses = n * (n - 1) / 2 * static_cast<int64_t>(sizeof(double)) > kSharedCacheBytes;
#pragma omp parallel for schedule(static) if (parallel && misses && B > 8192)
    for (int64_t k = 0; k < B; ++k) {  // condensed-RDM lookup, 0 on the diagonal
      const int64_t a = std::min(i[k], j[k]), b = std::max(i[k], j[k]);
      y[k] = a == b ? 0.0 : rdm[condensed_index(n, a, b)];
    }
  } else if (itemsize == 2) {
    neural_distances(static_cast<const uint16_t*>(Y), n, p, ld, i, j, B, metric, y, parallel);
  } else if (itemsize == 4) {
    neural_distances(static_cast<const float*>(Y), n, p, ld, i, j, B, metric, y, parallel);
  } else {
    neural_distances(static_cast<const double*>(Y), n, p, ld, i, j, B, metric, y, parallel);
  }
  for (int64_t k = 0; k < B; ++k) {
    if (i[k] == j[k]) y[k] = 0.0;  // exactly, whatever rounding gives (cosine of a row with itself)
    if (std::isnan(y[k])) y[k] = nan_to_num;
  }
}

template <typename G_t>
void condensed_from_gram_impl(const G_t* G, const double* sq, int64_t r0, int64_t r1, int64_t n, bool cosine,
                              double* out) {
  const int64_t ld = n - r0;
#pragma omp parallel for schedule(dynamic, 16) if ((r1 - r0) * ld > (int64_t(1) << 18))
  for (int64_t r = r0; r < r1; ++r) {
    const G_t* g = G + (r - r0) * ld + (r + 1 - r0);  // g[c - r - 1] = <y_r, y_c>
    gram_row_dissimilarities(g, sq, r, n - r - 1, cosine, out + condensed_index(n, r, r + 1));
  }
}

void condensed_from_gram(const float* G, const double* sq, int64_t r0, int64_t r1, int64_t n, bool cosine,
                         double* out) {
  condensed_from_gram_impl(G, sq, r0, r1, n, cosine, out);
}

void condensed_from_gram(const double* G, const double* sq, int64_t r0, int64_t r1, int64_t n, bool cosine,
                         double* out) {
  condensed_from_gram_impl(G, sq, r0, r1, n, cosine, out);
}

}  // namespace fastmlem
