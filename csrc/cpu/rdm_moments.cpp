// Moments of two RDMs over the stimulus pairs, straight from Gram blocks: RSA's Pearson and cosine
// comparisons without the (n, n) RDMs.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.hpp"
#include "omp_guard.hpp"

namespace fastmlem {
namespace {

// Running moments of pairs (a, b): count, means, centred sums of squares and of products.
struct Moments {
  double m = 0, ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0;
  // Chan et al.'s pairwise update: exact in exact arithmetic, no cancellation between large sums.
  void add(const Moments& o) {
    if (o.m == 0) return;
    const double m2 = m + o.m, da = o.ma - ma, db = o.mb - mb, f = m * o.m / m2;
    saa += o.saa + da * da * f;
    sbb += o.sbb + db * db * f;
    sab += o.sab + da * db * f;
    ma += da * o.m / m2;
    mb += db * o.m / m2;
    m = m2;
  }
};

// Moments of one row's pairs: means, then centred sums (two passes over the row, in cache), with
// four partial sums per quantity so that the loops vectorise.
Moments row_moments(const double* a, const double* b, int64_t len) {
  constexpr int L = 4;
  double sa[L] = {}, sb[L] = {};
  int64_t c = 0;
  for (; c + L <= len; c += L)
    for (int l = 0; l < L; ++l) { sa[l] += a[c + l]; sb[l] += b[c + l]; }
  for (; c < len; ++c) { sa[0] += a[c]; sb[0] += b[c]; }
  Moments mo;
  mo.m = static_cast<double>(len);
  mo.ma = ((sa[0] + sa[1]) + (sa[2] + sa[3])) / mo.m;
  mo.mb = ((sb[0] + sb[1]) + (sb[2] + sb[3])) / mo.m;
  double saa[L] = {}, sbb[L] = {}, sab[L] = {};
  for (c = 0; c + L <= len; c += L)
    for (int l = 0; l < L; ++l) {
      const double da = a[c + l] - mo.ma, db = b[c + l] - mo.mb;
      saa[l] += da * da; sbb[l] += db * db; sab[l] += da * db;
    }
  for (; c < len; ++c) {
    const double da = a[c] - mo.ma, db = b[c] - mo.mb;
    saa[0] += da * da; sbb[0] += db * db; sab[0] += da * db;
  }
  mo.saa = (saa[0] + saa[1]) + (saa[2] + saa[3]);
  mo.sbb = (sbb[0] + sbb[1]) + (sbb[2] + sbb[3]);
  mo.sab = (sab[0] + sab[1]) + (sab[2] + sab[3]);
  return mo;
}

template <typename G_t>
void rdm_moments_impl(const G_t* Gx, const double* sqx, const G_t* Gy, const double* sqy, int64_t r0, int64_t r1,
                      int64_t n, bool cosine, double* stats) {
  const int64_t ld = n - r0;
  std::vector<Moments> rows(r1 - r0);  // one per row, combined in row order: the same sums on any thread count
  OmpGuard guard;
#pragma omp parallel if ((r1 - r0) * ld > (int64_t(1) << 18))
  {
    std::vector<double> a, b;
    const bool ready = guard.run([&] { a.resize(n); b.resize(n); });
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t len = n - r - 1, at = (r - r0) * ld + (r + 1 - r0);
      if (!ready || len == 0) continue;
      gram_row_dissimilarities(Gx + at, sqx, r, len, cosine, a.data());
      gram_row_dissimilarities(Gy + at, sqy, r, len, cosine, b.data());
      rows[r - r0] = row_moments(a.data(), b.data(), len);
    }
  }
  guard.rethrow();
  Moments total{stats[0], stats[1], stats[2], stats[3], stats[4], stats[5]};
  for (const Moments& mo : rows) total.add(mo);
  const double out[6] = {total.m, total.ma, total.mb, total.saa, total.sbb, total.sab};
  std::copy(out, out + 6, stats);
}

}  // namespace

void rdm_moments(const float* Gx, const double* sqx, const float* Gy, const double* sqy, int64_t r0, int64_t r1,
                 int64_t n, bool cosine, double* stats) {
  rdm_moments_impl(Gx, sqx, Gy, sqy, r0, r1, n, cosine, stats);
}

void rdm_moments(const double* Gx, const double* sqx, const double* Gy, const double* sqy, int64_t r0, int64_t r1,
                 int64_t n, bool cosine, double* stats) {
  rdm_moments_impl(Gx, sqx, Gy, sqy, r0, r1, n, cosine, stats);
}

}  // namespace fastmlem
