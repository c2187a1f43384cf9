// Kendall's tau-a in O(B log B) (Knight's algorithm) with exact 64-bit pair counts.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels.hpp"
#include "omp_guard.hpp"
#include "radix.hpp"

namespace fastmlem {
namespace {

// t(t - 1) / 2 without overflow for any t < 2^32.
inline int64_t pairs_of(int64_t t) { return t % 2 ? t * ((t - 1) / 2) : (t / 2) * (t - 1); }

// Sorts x (B,) and calls group(order, s, e, r) for each run order[s..e-1] of equal values in the
// sort order, r = 0, 1, ... (buf: the sort buffers, reused between calls). Returns the
// number of tied pairs, sum over runs of t(t - 1) / 2, and the number of runs.
template <typename F>
int64_t equal_runs(const double* x, int64_t B, RankBuffers& buf, int64_t* runs, F&& group) {
  radix_argsort(x, B, false, buf.idx, buf.keys, buf.ktmp, buf.itmp, true);
  const int64_t* idx = buf.idx.data();
  const uint32_t* key = buf.keys.data();  // equal values have equal keys: x is read only on a key tie
  int64_t tied = 0, r = 0;
  for (int64_t s = 0; s < B; ++r) {
    int64_t e = s + 1;
    while (e < B && key[e] == key[s] && x[idx[e]] == x[idx[s]]) ++e;
    tied += pairs_of(e - s);
    group(idx, s, e, static_cast<uint32_t>(r));
    s = e;
  }
  *runs = r;
  return tied;
}

// Merges the sorted runs a (na) and b (nb) into out; returns the pairs (a_i, b_j) with b_j < a_i.
int64_t merge_counting(const uint32_t* a, int64_t na, const uint32_t* b, int64_t nb, uint32_t* out) {
  int64_t i = 0, j = 0, k = 0, inv = 0;
  while (i < na && j < nb) {
    const bool right = b[j] < a[i];
    out[k++] = right ? b[j] : a[i];
    inv += right ? na - i : 0;
    j += right;
    i += !right;
  }
  std::copy(a + i, a + na, out + k);
  std::copy(b + j, b + nb, out + k + (na - i));
  return inv;
}

// Number of pairs k < l with y[k] > y[l] (strict inversions), by a bottom-up merge sort of y
// (sorted on return; tmp is scratch of the same length). `parallel`: OpenMP over the merges.
int64_t inversions(uint32_t* y, uint32_t* tmp, int64_t B, bool parallel) {
  constexpr int64_t run = 32;  // insertion-sorted first: each shift is one inversion
  int64_t inv = 0;
  const int64_t blocks = (B + run - 1) / run;
#pragma omp parallel for schedule(static) reduction(+ : inv) if (parallel && blocks >= 4096)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t s = blk * run, e = std::min(B, s + run);
    for (int64_t k = s + 1; k < e; ++k) {
      const uint32_t v = y[k];
      int64_t j = k;
      while (j > s && y[j - 1] > v) { y[j] = y[j - 1]; --j; }
      inv += k - j;
      y[j] = v;
    }
  }
  uint32_t *src = y, *dst = tmp;
  for (int64_t width = run; width < B; width *= 2) {
    const int64_t merges = (B + 2 * width - 1) / (2 * width);
#pragma omp parallel for schedule(dynamic) reduction(+ : inv) if (parallel && merges >= 2 && B >= 65536)
    for (int64_t g = 0; g < merges; ++g) {
      const int64_t lo = g * 2 * width, mid = std::min(B, lo + width), hi = std::min(B, lo + 2 * width);
      inv += merge_counting(src + lo, mid - lo, src + mid, hi - mid, dst + lo);
    }
    std::swap(src, dst);
  }
  if (src != y) std::copy(src, src + B, y);
  return inv;
}

// Stable LSD radix sort of v (B,) by bits 32 and up, 8 at a time, up to the highest set one
// (`top`); tmp is scratch of the same length.
void sort_high_words(std::vector<uint64_t>& v, std::vector<uint64_t>& tmp, uint64_t top) {
  const int64_t B = static_cast<int64_t>(v.size());
  for (int shift = 32; shift < 64 && (top >> shift); shift += 8) {
    int64_t count[257] = {};
    for (int64_t k = 0; k < B; ++k) ++count[((v[k] >> shift) & 255) + 1];
    for (int d = 0; d < 256; ++d) count[d + 1] += count[d];
    for (int64_t k = 0; k < B; ++k) tmp[count[(v[k] >> shift) & 255]++] = v[k];
    v.swap(tmp);
  }
}

struct TauBuffers {
  RankBuffers sort;
  std::vector<uint32_t> ra, tmp;
  std::vector<uint64_t> ab, abtmp;
};

// tau-a of one row pair a, b (B >= 2): (concordant - discordant) / (B(B-1)/2).
double tau_a_row(const double* a, const double* b, int64_t B, bool parallel, TauBuffers& w) {
  w.ra.resize(B); w.tmp.resize(B); w.ab.resize(B); w.abtmp.resize(B);
  int64_t ka, kb;
  uint32_t* ra = w.ra.data();
  const int64_t tied_a = equal_runs(a, B, w.sort, &ka, [&](const int64_t* idx, int64_t s, int64_t e, uint32_t r) {
    for (int64_t t = s; t < e; ++t) ra[idx[t]] = r;  // dense ranks of a
  });
  // (rank of a, rank of b) packed in one word, in b's order, then sorted by the rank of a, stably:
  // the pairs in (a, b) order
  uint64_t* ab = w.ab.data();
  const int64_t tied_b = equal_runs(b, B, w.sort, &kb, [&](const int64_t* idx, int64_t s, int64_t e, uint32_t r) {
    for (int64_t t = s; t < e; ++t) ab[t] = (static_cast<uint64_t>(ra[idx[t]]) << 32) | r;
  });
  sort_high_words(w.ab, w.abtmp, static_cast<uint64_t>(ka - 1) << 32);
  ab = w.ab.data();
  // pairs tied in both: runs of equal words; y (reusing ra): the ranks of b in (a, b) order
  int64_t tied_ab = 0;
  uint32_t* y = ra;
  for (int64_t s = 0; s < B;) {
    int64_t e = s + 1;
    while (e < B && ab[e] == ab[s]) ++e;
    tied_ab += pairs_of(e - s);
    for (int64_t t = s; t < e; ++t) y[t] = static_cast<uint32_t>(ab[t]);
    s = e;
  }
  // in (a, b) order an inversion of y is a pair with a_k < a_l and b_k > b_l: a discordant one
  const int64_t discordant = inversions(y, w.tmp.data(), B, parallel);
  const int64_t total = pairs_of(B);
  const int64_t concordant = total - tied_a - tied_b + tied_ab - discordant;
  return static_cast<double>(concordant - discordant) / static_cast<double>(total);
}

}  // namespace

void kendall_tau_a(const double* x, const double* y, int64_t T, int64_t B, double* out) {
  OmpGuard guard;
#pragma omp parallel if (T > 1)
  {
    TauBuffers w;
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < T; ++t)
      guard.run([&] { out[t] = tau_a_row(x + t * B, y + t * B, B, T == 1, w); });
  }
  guard.rethrow();
}

}  // namespace fastmlem
