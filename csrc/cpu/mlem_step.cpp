#include "mlem_step.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "kernels.hpp"
#include "omp_guard.hpp"

namespace fastmlem {

MlemStep::MlemStep(const double* X, const NeuralSource& targets, int64_t n, int64_t m, bool precomputed, bool interactions,
                   double nan_to_num, int64_t batch, uint64_t seed, double strength, bool kl)
    : X_(X), targets_(targets), n_(n), m_(m), q_(interactions ? m * (m + 1) / 2 : m), B_(batch),
      precomputed_(precomputed), interactions_(interactions), kl_(kl), nan_to_num_(nan_to_num), strength_(strength), seed_(seed),
      i_(batch), j_(batch), perm_(batch), block_(batch), perm_y_(batch), block_y_(batch), visit_i_(batch),
      visit_j_(batch), visit_y_(batch), F_(batch * q_), y_(batch), pred_(batch), rank_x_(batch), rank_y_(batch), g_(batch), gx_(batch) {
  targets_.cache_norms(norms_);
}

namespace {
// Pairs per chunk of the neural distances, and the batch from which a step runs on all threads (below
// it the two rankings, ~15 us each, do not pay for waking the threads).
constexpr int64_t kChunk = 1024, kParallelStep = 4096;

double strength_of(const std::vector<double>& v, double strength) {
  return strength > 0 ? strength : auto_strength(v.data(), static_cast<int64_t>(v.size()));
}
}  // namespace

double MlemStep::step(uint64_t stream, const double* w, double* lo, double* hi, double* grad_w) {
  const int64_t B = B_, q = q_;
  sample_pairs(n_, B, seed_, stream, i_.data(), j_.data());
  double eps_x = 0.0, eps_y = 0.0;
  // The predictions and their soft ranks do not depend on the neural distances: one thread computes
  // them while the others (then it too) take chunks of pairs; whichever thread completes the last
  // chunk ranks the targets, so that the two rankings also overlap.
  const auto rank_predictions = [&] {
    feature_distances(X_, n_, m_, precomputed_, i_.data(), j_.data(), B, interactions_, nan_to_num_, F_.data());
    for (int64_t k = 0; k < B; ++k) {
      const double* f = &F_[k * q];
      double s = 0.0;
      for (int64_t c = 0; c < q; ++c) s += f[c] * w[c];
      pred_[k] = s;
    }
    eps_x = strength_of(pred_, strength_);
    soft_rank(pred_.data(), &eps_x, 1, B, kl_, rank_x_.data(), perm_.data(), block_.data());
  };
  const auto rank_targets = [&] {
    const auto [ymin, ymax] = std::minmax_element(y_.begin(), y_.end());
    *lo = std::min(*lo, *ymin);  // running min-max, as the reference
    *hi = std::max(*hi, *ymax);
    const double scale = minmax_scale(*lo, *hi);
    for (int64_t k = 0; k < B; ++k) {
      const double t = (y_[k] - *lo) * scale;
      y_[k] = t * t;
    }
    eps_y = strength_of(y_, strength_);
    soft_rank(y_.data(), &eps_y, 1, B, kl_, rank_y_.data(), perm_y_.data(), block_y_.data());
  };
  // Chunks lose the order in which the source would visit the whole batch: take the pairs in it here.
  const std::vector<int64_t> order = targets_.visit_order(i_.data(), j_.data(), B);
  const bool reordered = !order.empty();
  if (reordered) {
    for (int64_t k = 0; k < B; ++k) { visit_i_[k] = i_[order[k]]; visit_j_[k] = j_[order[k]]; }
  }
  const int64_t* pi = reordered ? visit_i_.data() : i_.data();
  const int64_t* pj = reordered ? visit_j_.data() : j_.data();
  double* py = reordered ? visit_y_.data() : y_.data();
  const int64_t chunks = (B + kChunk - 1) / kChunk;
  std::atomic<int64_t> done{0};
  OmpGuard guard;
#pragma omp parallel if (B >= kParallelStep)
  {
#pragma omp single nowait
    guard.run(rank_predictions);
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t k0 = c * kChunk, len = std::min(kChunk, B - k0);
      guard.run([&] {
        targets_.distances(pi + k0, pj + k0, len, nan_to_num_, false, py + k0);
        if (reordered)
          for (int64_t k = k0; k < k0 + len; ++k) y_[order[k]] = py[k];
      });
      // acq_rel: the thread that completes the count sees every other thread's distances
      if (done.fetch_add(len, std::memory_order_acq_rel) + len == B) guard.run(rank_targets);
    }
  }
  guard.rethrow();
  // Pearson of the two soft-rank vectors and its gradient w.r.t. the first
  double mx = 0.0, my = 0.0;
  for (int64_t k = 0; k < B; ++k) { mx += rank_x_[k]; my += rank_y_[k]; }
  mx /= B; my /= B;
  double sxx = 0.0, syy = 0.0, sxy = 0.0;
  for (int64_t k = 0; k < B; ++k) {
    const double a = rank_x_[k] - mx, b = rank_y_[k] - my;
    sxx += a * a; syy += b * b; sxy += a * b;
  }
  std::fill(grad_w, grad_w + q, 0.0);
  // a constant vector (or one whose spread is rounding noise) scores 0, as _shared.centred
  const auto noise = [B](const std::vector<double>& v, double norm) {
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    const double top = std::max(std::fabs(*lo), std::fabs(*hi));
    return *hi == *lo || norm <= 4 * 2.220446049250313e-16 * std::sqrt(static_cast<double>(B)) * top;
  };
  const double nx = std::sqrt(sxx), ny = std::sqrt(syy);
  if (noise(rank_x_, nx) || noise(rank_y_, ny)) return 0.0;
  const double r = sxy / (nx * ny);
  for (int64_t k = 0; k < B; ++k) g_[k] = (rank_y_[k] - my) / (nx * ny) - r * (rank_x_[k] - mx) / sxx;
  soft_rank_vjp(g_.data(), pred_.data(), rank_x_.data(), perm_.data(), block_.data(), &eps_x, 1, B, kl_, gx_.data());
  for (int64_t k = 0; k < B; ++k) {  // grad_w = F^T gx
    const double* f = &F_[k * q];
    const double gk = gx_[k];
    for (int64_t c = 0; c < q; ++c) grad_w[c] += f[c] * gk;
  }
  return r;
}

}  // namespace fastmlem
