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
// (latency 4, two per cycle), so the loop runs L sums side by side, at any vector width.
constexpr int kLanes = 32;

template <Metric M, typename Acc = double>
struct PairSums {
  static constexpr int L = kLanes * static_cast<int>(sizeof(double) / sizeof(Acc));  // float: twice as many
  Acc s[L] = {}, ab[L] = {}, aa[L] = {}, bb[L] = {};

  template <typename T>
  inline void add(const T* a, const T* b, int64_t p) {  // p a multiple of L
    for (int64_t k = 0; k < p; k += L) {
#pragma omp simd
      for (int l = 0; l < L; ++l)
        accumulate<M, Acc>(static_cast<Acc>(load(a + k + l)), static_cast<Acc>(load(b + k + l)), s[l], ab[l], aa[l], bb[l]);
    }
  }

  // t (s, ab, aa, bb) += the lanes, added in double by vector reductions (a chain of 4 x L
  // dependent adds would cost as much as a 768-wide row)
  inline void add_to(double* t) const {
    double S = 0, AB = 0, AA = 0, BB = 0;
    if constexpr (M == Metric::euclidean || M == Metric::manhattan) {
#pragma omp simd reduction(+ : S)
      for (int l = 0; l < L; ++l) S += s[l];
    } else {
#pragma omp simd reduction(+ : AB, AA, BB)
      for (int l = 0; l < L; ++l) { AB += ab[l]; AA += aa[l]; BB += bb[l]; }
    }
    t[0] += S; t[1] += AB; t[2] += AA; t[3] += BB;
  }
};

// Rows are summed in blocks of kBlock elements, each block in fresh lanes (a lane sums at most
// kBlock / L terms, so the rounding error does not grow with p), blocks and the tail in double.
constexpr int64_t kBlock = 1024;

// t (s, ab, aa, bb) = the sums of rows a, b (unit stride), lanes of type Acc; add_block(sums, a', b',
// len) adds one block (len a multiple of L) to sums.
template <Metric M, typename Acc, typename T, typename AddBlock>
inline void blocked_totals(const T* a, const T* b, int64_t p, AddBlock&& add_block, double* t) {
  const int64_t body = p - p % PairSums<M, Acc>::L;
  for (int64_t k0 = 0; k0 < body; k0 += kBlock) {
    PairSums<M, Acc> sums;
    add_block(sums, a + k0, b + k0, std::min(kBlock, body - k0));
    sums.add_to(t);
  }
  for (int64_t k = body; k < p; ++k) accumulate<M, double>(load(a + k), load(b + k), t[0], t[1], t[2], t[3]);
}

constexpr auto kPlainAdd = [](auto& sums, const auto* a, const auto* b, int64_t len) { sums.add(a, b, len); };

// One pass over rows a and b, in double.
template <Metric M, typename T>
double pair_distance(const T* a, const T* b, int64_t p) {
  double t[4] = {};
  blocked_totals<M, double>(a, b, p, kPlainAdd, t);
  return finish<M>(t[0], t[1], t[2], t[3]);
}

// float16/float32 rows, euclidean or manhattan (sums of non-negative terms): the terms in float,
// twice the lanes of double per vector op and no conversion to double: relative error <= (kBlock /
// 64 + 3) * 2^-24 on the sum (tests: 1e-6 on the distance). A total outside [kFloatSumMin,
// kFloatSumMax] is taken again in double (terms that underflowed then weigh < p * 2^-40 of it; inf
// when one overflowed), so results do not depend on Y's scale.
constexpr double kFloatSumMin = 0x1p-110, kFloatSumMax = 0x1p120;
template <Metric M>
constexpr bool kFloatSums = M == Metric::euclidean || M == Metric::manhattan;

template <Metric M, typename T, typename AddBlock>
inline double float_pair_distance(const T* a, const T* b, int64_t p, AddBlock&& add_block) {
  double t[4] = {};
  blocked_totals<M, float>(a, b, p, add_block, t);
  if (!(t[0] >= kFloatSumMin && t[0] <= kFloatSumMax)) return pair_distance<M>(a, b, p);
  return finish<M>(t[0], 0, 0, 0);
}

template <typename T>
double row_norm(const T* a, int64_t p) {
  double aa = 0;
  for (int64_t k0 = 0; k0 < p; k0 += kBlock) {  // in blocks, as the pairs
    double block = 0;
    const int64_t k1 = std::min(p, k0 + kBlock);
#pragma omp simd reduction(+ : block)
    for (int64_t k = k0; k < k1; ++k) { const double v = load(a + k); block += v * v; }
    aa += block;
  }
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
  return with_metric(metric, [&](auto M) {
    constexpr Metric m = decltype(M)::value;
    if constexpr (kFloatSums<m> && sizeof(T) < 8) return float_pair_distance<m>(a, b, p, kPlainAdd);
    return pair_distance<m>(a, b, p);
  });
}

#if FASTMLEM_X86_DISPATCH
// f[0, len) = the halves h[0, len) as floats, by F16C (len a multiple of 8).
__attribute__((target("arch=x86-64-v3"))) inline void halves_to_floats(const uint16_t* h, int64_t len, float* f) {
  for (int64_t e = 0; e < len; e += 8)
    _mm256_store_ps(f + e, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + e))));
}

template <Metric M>
__attribute__((target("arch=x86-64-v3"), flatten)) double half_pair_f16c(const uint16_t* a, const uint16_t* b, int64_t p) {
  constexpr int64_t kChunk = 256;  // halves converted at a time: the float buffers stay in L1
  alignas(32) float fa[kChunk], fb[kChunk];
  // sums += the pairs a[0, len), b[0, len) (len a multiple of sums.L)
  const auto add_converted = [&](auto& sums, const uint16_t* ha, const uint16_t* hb, int64_t len) {
    for (int64_t k0 = 0; k0 < len; k0 += kChunk) {
      const int64_t chunk = std::min(kChunk, len - k0);
      halves_to_floats(ha + k0, chunk, fa);
      halves_to_floats(hb + k0, chunk, fb);
      sums.add(fa, fb, chunk);
    }
  };
  if constexpr (kFloatSums<M>) return float_pair_distance<M>(a, b, p, add_converted);
  double t[4] = {};  // cosine, norm_diff: the converted floats summed in double
  blocked_totals<M, double>(a, b, p, add_converted, t);
  return finish<M>(t[0], t[1], t[2], t[3]);
}

__attribute__((target("arch=x86-64-v3"), flatten)) double row_distance_f16c(const uint16_t* a, const uint16_t* b, int64_t p,
                                                                   Metric metric) {
  return with_metric(metric, [&](auto M) { return half_pair_f16c<decltype(M)::value>(a, b, p); });
}
const bool kHasF16C = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") &&
                      __builtin_cpu_supports("fma");

// AVX-512: euclidean / manhattan of float16 rows converted in registers, 16 halves per instruction,
// into the same 64 float lanes as PairSums<M, float> (lane l sums the terms l mod 64 of a block), so
// the error bound and the fallback to double are float_pair_distance's. (Through a float buffer the
// conversion bound the whole gather: 20k cache-resident float16 pairs took longer than float32.)
template <Metric M>
__attribute__((target("arch=x86-64-v4"))) inline void add_halves_in_registers(PairSums<M, float>& sums,
                                                                             const uint16_t* a, const uint16_t* b,
                                                                             int64_t len) {
  static_assert(PairSums<M, float>::L == 64, "four vectors of 16 float lanes");
  __m512 acc[4];
  for (int r = 0; r < 4; ++r) acc[r] = _mm512_loadu_ps(sums.s + 16 * r);
  for (int64_t k = 0; k < len; k += 64) {
    for (int r = 0; r < 4; ++r) {
      const __m512 x = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + k + 16 * r)));
      const __m512 y = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k + 16 * r)));
      const __m512 d = _mm512_sub_ps(x, y);
      acc[r] = M == Metric::euclidean ? _mm512_fmadd_ps(d, d, acc[r]) : _mm512_add_ps(acc[r], _mm512_abs_ps(d));
    }
  }
  for (int r = 0; r < 4; ++r) _mm512_storeu_ps(sums.s + 16 * r, acc[r]);
}

template <Metric M>
__attribute__((target("arch=x86-64-v4"), flatten)) double half_pair_avx512(const uint16_t* a, const uint16_t* b,
                                                                         int64_t p) {
  return float_pair_distance<M>(a, b, p, [](PairSums<M, float>& sums, const uint16_t* ha, const uint16_t* hb,
                                            int64_t len) { add_halves_in_registers<M>(sums, ha, hb, len); });
}

__attribute__((target("arch=x86-64-v4"), flatten)) double row_distance_f16_avx512(const uint16_t* a, const uint16_t* b,
                                                                               int64_t p, Metric metric) {
  return metric == Metric::euclidean ? half_pair_avx512<Metric::euclidean>(a, b, p)
                                     : half_pair_avx512<Metric::manhattan>(a, b, p);
}
const bool kHasAvx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif

double row_distance(const uint16_t* a, const uint16_t* b, int64_t p, Metric metric) {
#if FASTMLEM_X86_DISPATCH
  if (kHasAvx512 && (metric == Metric::euclidean || metric == Metric::manhattan))
    return row_distance_f16_avx512(a, b, p, metric);
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

// The largest magnitude bits of one row. Cloned per instruction set (below) rather than the whole
// loop: an OpenMP region's body is outlined into a function that target_clones does not reach, and
// the baseline build has no unsigned 32/64-bit vector max (it ran at a third of np.max's speed).
template <typename U>
inline U row_largest_bits(const U* row, int64_t cols) {
  constexpr U kMagnitude = static_cast<U>(static_cast<U>(~U(0)) >> 1);  // (~ promotes uint16_t to int)
  constexpr int L = 256 / sizeof(U);  // independent maxima
  U lane[L] = {};
  int64_t c = 0;
  for (; c + L <= cols; c += L) {
#pragma omp simd
    for (int l = 0; l < L; ++l) lane[l] = std::max<U>(lane[l], row[c + l] & kMagnitude);
  }
  U top = 0;
  for (; c < cols; ++c) top = std::max<U>(top, row[c] & kMagnitude);
  for (int l = 0; l < L; ++l) top = std::max(top, lane[l]);
  return top;
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

// Rows past a core's cache are prefetched; their pairs are also taken in row order (pairs_by_row) when
// rows recur within the batch (B >= n) and are wide (float32/64): 17 % off the float32 gather at
// n = 10^4 (2 threads); float16 rows (F16C-bound) and batches with few repeats did not gain (measured).
bool rows_past_core_cache(int64_t n, int64_t ld, int itemsize) { return n * ld * itemsize > kCoreCacheBytes; }
bool pairs_in_row_order(int64_t n, int64_t ld, int itemsize, int64_t B) {
  return rows_past_core_cache(n, ld, itemsize) && itemsize >= 4 && B >= n;
}

template <typename T>
void over_pairs(const T* Y, int64_t n, int64_t ld, int64_t p, const int64_t* i, const int64_t* j, int64_t B,
                Metric metric, bool parallel, double* out) {
  const bool large = rows_past_core_cache(n, ld, sizeof(T));
  std::vector<int64_t> order;
  if (pairs_in_row_order(n, ld, sizeof(T), B)) order = pairs_by_row(n, i, j, B);
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
void row_norms(const T* Y, int64_t n, int64_t p, int64_t ld, bool parallel, double* norms) {
#pragma omp parallel for schedule(static) if (parallel && n * p > kParallelWork)
  for (int64_t r = 0; r < n; ++r) norms[r] = row_norm(Y + r * ld, p);
}

void norm_differences(const double* norms, const int64_t* i, const int64_t* j, int64_t B, double* out) {
  for (int64_t k = 0; k < B; ++k) out[k] = std::fabs(norms[i[k]] - norms[j[k]]);
}

template <typename T>
void neural_distances_impl(const T* Y, int64_t n, int64_t p, int64_t ld, const int64_t* i, const int64_t* j,
                           int64_t B, Metric metric, bool parallel, double* out) {
  // norm_diff: every row norm once when that reads less than the pairs would, else per pair.
  if (metric != Metric::norm_diff || n > 2 * B) return over_pairs(Y, n, ld, p, i, j, B, metric, parallel, out);
  std::vector<double> norms(n);
  row_norms(Y, n, p, ld, parallel, norms.data());
  norm_differences(norms.data(), i, j, B, out);
}

}  // namespace

FASTMLEM_CLONES uint16_t row_largest_bits(const uint16_t* row, int64_t cols) { return row_largest_bits<uint16_t>(row, cols); }
FASTMLEM_CLONES uint32_t row_largest_bits(const uint32_t* row, int64_t cols) { return row_largest_bits<uint32_t>(row, cols); }
FASTMLEM_CLONES uint64_t row_largest_bits(const uint64_t* row, int64_t cols) { return row_largest_bits<uint64_t>(row, cols); }

template <typename U>
uint64_t largest_bits_impl(const U* Y, int64_t rows, int64_t cols, int64_t ld) {
  U best = 0;
#pragma omp parallel for schedule(static) reduction(max : best) if (rows * cols > (int64_t(1) << 22))
  for (int64_t r = 0; r < rows; ++r) best = std::max(best, row_largest_bits(Y + r * ld, cols));
  return best;
}

uint64_t largest_magnitude_bits(const uint16_t* Y, int64_t rows, int64_t cols, int64_t ld) {
  return largest_bits_impl(Y, rows, cols, ld);
}
uint64_t largest_magnitude_bits(const uint32_t* Y, int64_t rows, int64_t cols, int64_t ld) {
  return largest_bits_impl(Y, rows, cols, ld);
}
uint64_t largest_magnitude_bits(const uint64_t* Y, int64_t rows, int64_t cols, int64_t ld) {
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

// f(rows) with Y's rows as the pointer type of its itemsize (float16 bits, float, double).
template <typename F>
void with_rows(const NeuralSource& s, F&& f) {
  if (s.itemsize == 2) f(static_cast<const uint16_t*>(s.Y));
  else if (s.itemsize == 4) f(static_cast<const float*>(s.Y));
  else f(static_cast<const double*>(s.Y));
}

std::vector<int64_t> NeuralSource::visit_order(const int64_t* i, const int64_t* j, int64_t B) const {
  if (rdm != nullptr || norms != nullptr || metric == Metric::norm_diff || !pairs_in_row_order(n, ld, itemsize, B))
    return {};
  return pairs_by_row(n, i, j, B);
}

void NeuralSource::cache_norms(std::vector<double>& store) {
  if (rdm != nullptr || metric != Metric::norm_diff) return;
  store.resize(n);
  with_rows(*this, [&](const auto* rows) { row_norms(rows, n, p, ld, true, store.data()); });
  norms = store.data();
}

void NeuralSource::distances(const int64_t* i, const int64_t* j, int64_t B, double nan_to_num, bool parallel,
                             double* y) const {
  if (norms != nullptr) {
    norm_differences(norms, i, j, B, y);
  } else if (rdm != nullptr) {
    const bool misses = n * (n - 1) / 2 * static_cast<int64_t>(sizeof(double)) > kSharedCacheBytes;
#pragma omp parallel for schedule(static) if (parallel && misses && B > 8192)
    for (int64_t k = 0; k < B; ++k) {  // condensed-RDM lookup, 0 on the diagonal
      const int64_t a = std::min(i[k], j[k]), b = std::max(i[k], j[k]);
      y[k] = a == b ? 0.0 : rdm[condensed_index(n, a, b)];
    }
  } else {
    with_rows(*this, [&](const auto* rows) { neural_distances(rows, n, p, ld, i, j, B, metric, y, parallel); });
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

