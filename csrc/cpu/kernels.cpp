#include "kernels.hpp"
#include "omp_guard.hpp"
#include "radix.hpp"
#include "rng.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace fastmlem {

uint64_t splitmix64(uint64_t x) { return rng::splitmix64(x); }

uint64_t stream_key(uint64_t seed, uint64_t stream) { return rng::stream_key(seed, stream); }

void sample_pairs(int64_t n, int64_t B, uint64_t seed, uint64_t stream, int64_t* i, int64_t* j) {
  const uint64_t key = stream_key(seed, stream), un = static_cast<uint64_t>(n);
#pragma omp parallel for schedule(static) if (B > 262144)
  for (int64_t k = 0; k < B; ++k) rng::pair(key, static_cast<uint64_t>(k), un, i + k, j + k);
}

void feature_distances(const double* X, int64_t n, int64_t m, bool precomputed, const int64_t* i, const int64_t* j,
                       int64_t B, bool interactions, double nan_to_num, double* out) {
  const int64_t q = interactions ? m * (m + 1) / 2 : m;
  OmpGuard guard;
  // rows of an X beyond a core's cache are misses (one per stimulus): they are prefetched, and threads
  // pay off from a few thousand pairs
  const bool misses = n * (precomputed ? n : 1) * m * static_cast<int64_t>(sizeof(double)) > kCoreCacheBytes;
  constexpr int64_t kAhead = 8;
#pragma omp parallel if (B > 262144 || (misses && B > 8192))
  {
    std::vector<double> d;
    const bool ready = guard.run([&] { d.resize(m); });
#pragma omp for schedule(static)
    for (int64_t k = 0; k < B; ++k) {
      if (!ready) continue;
      if (misses && k + kAhead < B) {
        __builtin_prefetch(precomputed ? X + (i[k + kAhead] * n + j[k + kAhead]) * m : X + i[k + kAhead] * m);
        __builtin_prefetch(X + j[k + kAhead] * m);
      }
      const double* a = precomputed ? X + (i[k] * n + j[k]) * m : X + i[k] * m;
      const double* b = X + j[k] * m;
      for (int64_t f = 0; f < m; ++f) d[f] = clip_feature(precomputed ? a[f] : std::fabs(a[f] - b[f]), nan_to_num);
      double* row = out + k * q;
      if (interactions) {
        int64_t c = 0;
        for (int64_t r = 0; r < m; ++r)
          for (int64_t s = 0; s <= r; ++s) row[c++] = d[r] * d[s];
      } else {
        for (int64_t f = 0; f < m; ++f) row[f] = d[f] * d[f];
      }
    }
  }
  guard.rethrow();
}

void rank_row(const double* x, int64_t B, double* out, RankBuffers& b) {
  radix_argsort(x, B, false, b.idx, b.keys, b.ktmp, b.itmp, B >= 65536);  // affine keys for RDM-size vectors
  const auto& idx = b.idx;
  const auto& key = b.keys;  // sorted; equal values have equal keys, so x is read only on a key tie
  for (int64_t s = 0; s < B;) {
    int64_t e = s + 1;
    while (e < B && key[e] == key[s] && x[idx[e]] == x[idx[s]]) ++e;
    const double r = 0.5 * static_cast<double>(s + e + 1);  // average of ranks s+1 .. e
    for (int64_t t = s; t < e; ++t) out[idx[t]] = r;
    s = e;
  }
}

void rank_average(const double* x, int64_t T, int64_t B, double* out) {
  OmpGuard guard;
#pragma omp parallel if (T > 1)
  {
    RankBuffers idx;
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < T; ++t) guard.run([&] { rank_row(x + t * B, B, out + t * B, idx); });
  }
  guard.rethrow();
}

double pearson_row(const double* a, const double* b, int64_t B) {
  double ma = 0, mb = 0;
  for (int64_t k = 0; k < B; ++k) { ma += a[k]; mb += b[k]; }
  ma /= B; mb /= B;
  double sab = 0, saa = 0, sbb = 0;
  for (int64_t k = 0; k < B; ++k) {
    const double da = a[k] - ma, db = b[k] - mb;
    sab += da * db; saa += da * da; sbb += db * db;
  }
  const double den = std::sqrt(saa * sbb);
  return den > 0 ? sab / den : 0.0;
}

void spearman(const double* x, const double* y, int64_t T, int64_t B, double* out) {
  permutation_spearman(x, nullptr, y, 0, T, B, out, nullptr);  // no permuted predictions
}

void permutation_spearman(const double* pred, const double* permuted, const double* y, int64_t K, int64_t T,
                          int64_t B, double* base, double* permuted_out) {
  OmpGuard guard;
#pragma omp parallel if (T > 1)
  {
    RankBuffers idx;
    std::vector<double> ry, rx;
    const bool ready = guard.run([&] { ry.resize(B); rx.resize(B); });
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < T; ++t) guard.run([&] {
      if (!ready) return;
      rank_row(y + t * B, B, ry.data(), idx);
      rank_row(pred + t * B, B, rx.data(), idx);
      base[t] = pearson_row(rx.data(), ry.data(), B);
      for (int64_t k = 0; k < K; ++k) {
        rank_row(permuted + (k * T + t) * B, B, rx.data(), idx);
        permuted_out[k * T + t] = pearson_row(rx.data(), ry.data(), B);
      }
    });
  }
  guard.rethrow();
}

}  // namespace fastmlem
