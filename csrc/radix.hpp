// Stable radix argsort of doubles (float keys, 8-bit digits, up to 4 passes, then an exact fix-up): the sort under
// every rank kernel. Several times faster than comparison sorts for the 10^3-10^7 keys we rank.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace fastmlem {

// Order-preserving map float -> uint32 (-0.0 and 0.0 map alike; NaN is rejected upstream).
inline uint32_t order_key(float v) {
  if (v == 0.0f) v = 0.0f;
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x80000000U) ? ~u : (u | 0x80000000U);
}

// Nearest float, monotone in v (out-of-range doubles go to +-inf instead of undefined behaviour).
inline float coarse(double v) {
  constexpr double top = std::numeric_limits<float>::max();
  return v > top ? std::numeric_limits<float>::infinity() : v < -top ? -std::numeric_limits<float>::infinity()
                                                                       : static_cast<float>(v);
}

// Fills idx with the permutation sorting x ascending (descending if `descending`), ties in index
// order. Two stages: a stable LSD radix sort on the float nearest each value (a monotone
// coarsening, so 4 passes instead of 8), then runs of equal float keys whose doubles differ
// (|relative difference| < 2^-24: rare, except for exact ties, which are already in index order)
// are put in order by the doubles themselves, stably. 8-bit digits with all histograms taken in
// one read pass; passes whose digit is the same for every key are skipped. keys/tmp buffers are
// reused between calls; on return keys holds the sorted keys (equal values have equal keys).
// `spread`: the keys are instead an affine map of [min x, max x] onto the 2^32 integers (also
// monotone), which leaves far fewer runs to fix up when 10^7 values crowd a narrow range (float
// keys then collide for most of them); it falls back to float keys when the range is not finite
// or an eighth of the values share one top digit (an outlier-stretched range).
inline void radix_argsort(const double* x, int64_t B, bool descending, std::vector<int64_t>& idx,
                          std::vector<uint32_t>& keys, std::vector<uint32_t>& ktmp,
                          std::vector<int64_t>& itmp, bool spread = false) {
  idx.resize(B); itmp.resize(B); keys.resize(B); ktmp.resize(B);
  if (B == 0) return;
  int64_t hist[4][256] = {};
  double lo = x[0], hi = x[0], scale = 0;
  if (spread) {
    for (int64_t k = 1; k < B; ++k) { lo = std::min(lo, x[k]); hi = std::max(hi, x[k]); }
    if (hi > lo && hi - lo <= std::numeric_limits<double>::max()) scale = 4294967295.0 / (hi - lo);
  }
  const auto fill = [&](bool affine) {
    std::memset(hist, 0, sizeof hist);
    for (int64_t k = 0; k < B; ++k) {
      const uint32_t up = affine ? static_cast<uint32_t>(std::min((x[k] - lo) * scale, 4294967295.0))
                                 : order_key(coarse(x[k]));
      const uint32_t key = descending ? ~up : up;
      keys[k] = key;
      idx[k] = k;
      for (int d = 0; d < 4; ++d) ++hist[d][(key >> (8 * d)) & 255];
    }
  };
  fill(scale > 0);
  if (scale > 0 && *std::max_element(hist[3], hist[3] + 256) > B / 8 + 256) fill(false);
  for (int d = 0; d < 4; ++d) {
    int64_t* count = hist[d];
    const int shift = 8 * d;
    if (count[(keys[0] >> shift) & 255] == B) continue;  // digit constant: skip pass
    int64_t sum = 0;
    for (int b = 0; b < 256; ++b) { const int64_t t = count[b]; count[b] = sum; sum += t; }
    for (int64_t k = 0; k < B; ++k) {
      const int64_t pos = count[(keys[k] >> shift) & 255]++;
      ktmp[pos] = keys[k];
      itmp[pos] = idx[k];
    }
    keys.swap(ktmp);
    idx.swap(itmp);
  }
  const auto before = [x, descending](int64_t a, int64_t b) { return descending ? x[a] > x[b] : x[a] < x[b]; };
  for (int64_t s = 0; s < B;) {
    int64_t e = s + 1;
    while (e < B && keys[e] == keys[s]) ++e;
    for (int64_t t = s + 1; t < e; ++t)
      if (before(idx[t], idx[t - 1])) {
        std::stable_sort(idx.begin() + s, idx.begin() + e, before);
        break;
      }
    s = e;
  }
}

}  // namespace fastmlem
