#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.hpp"
#include "omp_guard.hpp"
#include "radix.hpp"

namespace fastmlem {

void permutation_importance(const double* X, int64_t n, int64_t m, bool precomputed, bool interactions,
                            double nan_to_num,
                            const NeuralSource& targets, const double* w, int64_t B, uint64_t seed, uint64_t stream0,
                            uint64_t perm_seed, int64_t n_tasks, int64_t P, double* base, double* permuted) {
  const int64_t q = interactions ? m * (m + 1) / 2 : m;
  NeuralSource source = targets;
  std::vector<double> norms;
  if (n <= n_tasks * 2 * B) source.cache_norms(norms);  // when the tasks would read more rows than Y has
  OmpGuard guard;
#pragma omp parallel if (n_tasks > 1)
  {
    RankBuffers buffers;
    std::vector<int64_t> i, j, order, itmp;
    std::vector<uint32_t> keys, ktmp;
    std::vector<double> F, y, pred, moved, rank_y, rank_x, perm_keys;
    const bool ready = guard.run([&] {
      for (auto* v : {&i, &j}) v->resize(B);
      for (auto* v : {&y, &pred, &moved, &rank_y, &rank_x, &perm_keys}) v->resize(B);
      F.resize(B * q);
    });
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < n_tasks; ++t) guard.run([&] {
      if (!ready) return;
      const int64_t column = t / P;
      sample_pairs(n, B, seed, stream0 + static_cast<uint64_t>(t), i.data(), j.data());
      feature_distances(X, n, m, precomputed, i.data(), j.data(), B, interactions, nan_to_num, F.data());
      source.distances(i.data(), j.data(), B, nan_to_num, false, y.data());
      // the permutation of numpy_backend.random_permutations: stable argsort of 53-bit keys
      const uint64_t key = stream_key(perm_seed, static_cast<uint64_t>(t));
      for (int64_t k = 0; k < B; ++k)
        perm_keys[k] = static_cast<double>(splitmix64(key + static_cast<uint64_t>(k)) >> 11);
      radix_argsort(perm_keys.data(), B, false, order, keys, ktmp, itmp);
      for (int64_t k = 0; k < B; ++k) {
        const double* f = &F[k * q];
        double s = 0.0, s_moved = 0.0;
        for (int64_t c = 0; c < q; ++c) {
          s += f[c] * w[c];
          s_moved += (c == column ? F[order[k] * q + c] : f[c]) * w[c];
        }
        pred[k] = s;
        moved[k] = s_moved;
      }
      rank_row(y.data(), B, rank_y.data(), buffers);
      rank_row(pred.data(), B, rank_x.data(), buffers);
      base[t] = pearson_row(rank_x.data(), rank_y.data(), B);
      rank_row(moved.data(), B, rank_x.data(), buffers);
      permuted[t] = pearson_row(rank_x.data(), rank_y.data(), B);
    });
  }
  guard.rethrow();
}

}  // namespace fastmlem
