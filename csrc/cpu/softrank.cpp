#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "kernels.hpp"
#include "omp_guard.hpp"
#include "radix.hpp"

namespace fastmlem {

static double logaddexp(double a, double b) {
  const double mx = std::max(a, b);
  return mx + std::log(std::exp(a - mx) + std::exp(b - mx));
}

// PAV onto non-increasing sequences for sorted s (descending) and weights w = rho or log(rho).
static void soft_rank_row(const double* x, double eps, int64_t B, bool kl, double* ranks,
                          int64_t* perm, int64_t* block_start, std::vector<double>& s,
                          std::vector<double>& v, std::vector<double>& s1, std::vector<double>& s2,
                          std::vector<int64_t>& start, std::vector<int64_t>& order,
                          std::vector<uint32_t>& keys, std::vector<uint32_t>& ktmp,
                          std::vector<int64_t>& itmp) {
  if (!kl && B > 0) {
    // Exact shortcut: when the scaled range is <= 1, every consecutive pair of sorted values
    // violates the ordering against rho = (B, ..., 1), so PAV pools everything into one block
    // and the soft rank is affine: x/eps - mean(x/eps) + (B+1)/2. (MLEM's default strength 1.0
    // on min-max-scaled distances is always in this regime.) One block needs no sort order.
    const auto [lo, hi] = std::minmax_element(x, x + B);
    if ((*hi - *lo) / eps <= 1.0) {
      double mean = 0.0;
      for (int64_t k = 0; k < B; ++k) mean += x[k] / eps;
      mean /= static_cast<double>(B);
      const double centre = 0.5 * static_cast<double>(B + 1);
      for (int64_t k = 0; k < B; ++k) {
        ranks[k] = x[k] / eps - mean + centre;
        perm[k] = k;
        block_start[k] = 0;
      }
      return;
    }
  }
  radix_argsort(x, B, true, order, keys, ktmp, itmp);  // descending, ties in index order
  std::copy(order.begin(), order.end(), perm);
  s.resize(B); v.resize(B); s1.resize(B); s2.resize(B); start.resize(B + 1);
  for (int64_t k = 0; k < B; ++k) s[k] = x[perm[k]] / eps;
  int64_t top = 0;  // number of pooled blocks; block b has start[b], sums s1[b], s2[b], value v[b]
  for (int64_t k = 0; k < B; ++k) {
    const double rho = static_cast<double>(B - k);
    start[top] = k;
    if (kl) { s1[top] = s[k]; s2[top] = std::log(rho); v[top] = s[k] - s2[top]; }
    else { s1[top] = s[k] - rho; s2[top] = 1.0; v[top] = s1[top]; }
    ++top;
    while (top > 1 && v[top - 2] <= v[top - 1]) {
      const int64_t t = top - 2;
      if (kl) { s1[t] = logaddexp(s1[t], s1[t + 1]); s2[t] = logaddexp(s2[t], s2[t + 1]); v[t] = s1[t] - s2[t]; }
      else { s1[t] += s1[t + 1]; s2[t] += s2[t + 1]; v[t] = s1[t] / s2[t]; }
      --top;
    }
  }
  start[top] = B;
  for (int64_t b = 0; b < top; ++b)
    for (int64_t k = start[b]; k < start[b + 1]; ++k) {
      const double primal = s[k] - v[b];
      ranks[perm[k]] = kl ? std::exp(primal) : primal;
      block_start[k] = start[b];
    }
}

void soft_rank(const double* x, const double* eps, int64_t T, int64_t B, bool kl, double* ranks,
               int64_t* perm, int64_t* block_start) {
  OmpGuard guard;
#pragma omp parallel if (T > 1)
  {
    // per-thread scratch kept between calls: the training loop ranks same-sized batches every step
    static thread_local std::vector<double> s, v, s1, s2;
    static thread_local std::vector<int64_t> start, order, itmp;
    static thread_local std::vector<uint32_t> keys, ktmp;
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < T; ++t) guard.run([&] {
      soft_rank_row(x + t * B, eps[t], B, kl, ranks + t * B, perm + t * B, block_start + t * B, s, v,
                    s1, s2, start, order, keys, ktmp, itmp);
    });
  }
  guard.rethrow();
}

double auto_strength(const double* x, int64_t B) {
  constexpr double kTarget = 0.999, kOctaves = 40.0;
  constexpr int kSteps = 12;
  if (B < 2) return 1.0;
  static thread_local std::vector<double> s, hard, sum, soft;
  static thread_local std::vector<int64_t> cnt, start, order, itmp;
  static thread_local std::vector<uint32_t> keys, ktmp;
  radix_argsort(x, B, true, order, keys, ktmp, itmp);  // descending, as the soft rank sorts
  s.resize(B); hard.resize(B); sum.resize(B); soft.resize(B); cnt.resize(B); start.resize(B + 1);
  for (int64_t k = 0; k < B; ++k) s[k] = x[order[k]];
  const double span = s[0] - s[B - 1];
  if (!(span > 0)) return 1.0;
  for (int64_t k = 0; k < B;) {  // average ranks (ascending) of the sorted values, then centred
    int64_t e = k + 1;
    while (e < B && s[e] == s[k]) ++e;
    const double r = static_cast<double>(B) - 0.5 * static_cast<double>(k + e - 1);
    for (int64_t t = k; t < e; ++t) hard[t] = r;
    k = e;
  }
  double hm = 0.0, hh = 0.0;
  for (int64_t k = 0; k < B; ++k) hm += hard[k];
  hm /= static_cast<double>(B);
  for (int64_t k = 0; k < B; ++k) { hard[k] -= hm; hh += hard[k] * hard[k]; }
  // Soft ranks at eps, times eps: s - PAV_nonincreasing(s - eps * rho) (PAV is scale-equivariant,
  // Pearson scale-free). Blocks compared by cross-multiplied means, no division per element.
  auto rank_corr = [&](double eps) {
    int64_t top = 0;
    for (int64_t k = 0; k < B; ++k) {
      start[top] = k; sum[top] = s[k] - eps * static_cast<double>(B - k); cnt[top] = 1;
      ++top;
      while (top > 1 && sum[top - 2] * static_cast<double>(cnt[top - 1]) <=
                            sum[top - 1] * static_cast<double>(cnt[top - 2])) {
        sum[top - 2] += sum[top - 1]; cnt[top - 2] += cnt[top - 1];
        --top;
      }
    }
    start[top] = B;
    double sm = 0.0;
    for (int64_t b = 0; b < top; ++b) {
      const double v = sum[b] / static_cast<double>(cnt[b]);
      for (int64_t k = start[b]; k < start[b + 1]; ++k) { soft[k] = s[k] - v; sm += soft[k]; }
    }
    sm /= static_cast<double>(B);
    double sh = 0.0, ss = 0.0;
    for (int64_t k = 0; k < B; ++k) { const double c = soft[k] - sm; sh += c * hard[k]; ss += c * c; }
    const double den = std::sqrt(ss * hh);
    return den > 0 ? sh / den : 0.0;
  };
  if (rank_corr(span) >= kTarget) return span;
  double lo = -kOctaves, hi = 0.0;
  for (int it = 0; it < kSteps; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (rank_corr(span * std::exp2(mid)) >= kTarget) lo = mid; else hi = mid;
  }
  return span * std::exp2(lo);
}

void soft_rank_vjp(const double* g, const double* x, const double* ranks, const int64_t* perm,
                   const int64_t* block_start, const double* eps, int64_t T, int64_t B, bool kl,
                   double* out) {
  OmpGuard guard;
#pragma omp parallel if (T > 1)
  {
    static thread_local std::vector<double> u;
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < T; ++t) guard.run([&] {
      const double *gt = g + t * B, *xt = x + t * B, *rt = ranks + t * B;
      const int64_t *pt = perm + t * B, *bt = block_start + t * B;
      u.resize(B);
      for (int64_t k = 0; k < B; ++k) u[k] = kl ? gt[pt[k]] * rt[pt[k]] : gt[pt[k]];
      for (int64_t b0 = 0; b0 < B;) {
        int64_t b1 = b0 + 1;
        while (b1 < B && bt[b1] == b0) ++b1;
        double sum = 0;
        for (int64_t k = b0; k < b1; ++k) sum += u[k];
        if (kl) {  // softmax of the sorted, scaled inputs over the block
          double mx = -INFINITY, z = 0;
          for (int64_t k = b0; k < b1; ++k) mx = std::max(mx, xt[pt[k]] / eps[t]);
          for (int64_t k = b0; k < b1; ++k) z += std::exp(xt[pt[k]] / eps[t] - mx);
          for (int64_t k = b0; k < b1; ++k) out[t * B + pt[k]] = (u[k] - std::exp(xt[pt[k]] / eps[t] - mx) / z * sum) / eps[t];
        } else {
          const double mean = sum / static_cast<double>(b1 - b0);
          for (int64_t k = b0; k < b1; ++k) out[t * B + pt[k]] = (u[k] - mean) / eps[t];
        }
        b0 = b1;
      }
    });
  }
  guard.rethrow();
}

}  // namespace fastmlem
