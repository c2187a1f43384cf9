// Neural distances of sampled pairs of rows of Y (n, p), float32 or float64, accumulated in double.
#include "kernels.hpp"

#include <cmath>
#include <vector>

namespace fastmlem {

namespace {

// One pass over rows a and b (unit stride); the simd reductions keep the double sums vectorised.
// (Lambdas rather than function pointers below so that each metric inlines into its loop.)
template <typename T>
double euclidean(const T* a, const T* b, int64_t p) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < p; ++k) {
    const double d = static_cast<double>(a[k]) - static_cast<double>(b[k]);
    s += d * d;
  }
  return std::sqrt(s);
}

template <typename T>
double manhattan(const T* a, const T* b, int64_t p) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < p; ++k) s += std::fabs(static_cast<double>(a[k]) - static_cast<double>(b[k]));
  return s;
}

// 1 - cos(a, b); 1 when either row is zero.
template <typename T>
double cosine(const T* a, const T* b, int64_t p) {
  double ab = 0, aa = 0, bb = 0;
#pragma omp simd reduction(+ : ab, aa, bb)
  for (int64_t k = 0; k < p; ++k) {
    const double x = a[k], y = b[k];
    ab += x * y; aa += x * x; bb += y * y;
  }
  const double den = std::sqrt(aa) * std::sqrt(bb);
  return den > 0 ? 1.0 - ab / den : 1.0;
}

template <typename T>
double norm(const T* a, int64_t p) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < p; ++k) s += static_cast<double>(a[k]) * static_cast<double>(a[k]);
  return std::sqrt(s);
}

constexpr int64_t kParallelWork = int64_t(1) << 22;  // elements read; below this OpenMP costs more

template <typename T, typename F>
void over_pairs(const T* Y, int64_t ld, int64_t p, const int64_t* i, const int64_t* j, int64_t B, double* out, F f) {
#pragma omp parallel for schedule(static) if (B * p > kParallelWork)
  for (int64_t k = 0; k < B; ++k) out[k] = f(Y + i[k] * ld, Y + j[k] * ld, p);
}

template <typename T>
void neural_distances_impl(const T* Y, int64_t n, int64_t p, int64_t ld, const int64_t* i, const int64_t* j,
                           int64_t B, NeuralMetric metric, double* out) {
  const auto run = [&](auto f) { over_pairs(Y, ld, p, i, j, B, out, f); };
  using P = const T*;
  switch (metric) {
    case NeuralMetric::euclidean: return run([](P a, P b, int64_t q) { return euclidean(a, b, q); });
    case NeuralMetric::manhattan: return run([](P a, P b, int64_t q) { return manhattan(a, b, q); });
    case NeuralMetric::cosine: return run([](P a, P b, int64_t q) { return cosine(a, b, q); });
    case NeuralMetric::norm_diff: break;
  }
  // norm_diff: every row norm once when that reads less than the pairs would, else per pair.
  if (n > 2 * B) return run([](P a, P b, int64_t q) { return std::fabs(norm(a, q) - norm(b, q)); });
  std::vector<double> norms(n);
#pragma omp parallel for schedule(static) if (n * p > kParallelWork)
  for (int64_t r = 0; r < n; ++r) norms[r] = norm(Y + r * ld, p);
#pragma omp parallel for schedule(static) if (B > 262144)
  for (int64_t k = 0; k < B; ++k) out[k] = std::fabs(norms[i[k]] - norms[j[k]]);
}

}  // namespace

void neural_distances(const float* Y, int64_t n, int64_t p, int64_t ld, const int64_t* i, const int64_t* j, int64_t B,
                      NeuralMetric metric, double* out) {
  neural_distances_impl(Y, n, p, ld, i, j, B, metric, out);
}

void neural_distances(const double* Y, int64_t n, int64_t p, int64_t ld, const int64_t* i, const int64_t* j, int64_t B,
                      NeuralMetric metric, double* out) {
  neural_distances_impl(Y, n, p, ld, i, j, B, metric, out);
}

}  // namespace fastmlem
