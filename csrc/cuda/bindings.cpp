// pybind11 bindings of the CUDA kernels: fastmlem._cuda. Arrays travel as raw device pointers
// (Python ints, e.g. cupy_array.data.ptr), streams as cudaStream_t handles
// (cupy.cuda.get_current_stream().ptr), workspaces as (pointer, bytes). Shapes, dtypes, bounds and
// contiguity are checked in python/fastmlem/cuda_ops.py; every call only enqueues work on `stream`.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "kernels.hpp"

namespace py = pybind11;
namespace fc = fastmlem::cuda;
using ptr = std::uintptr_t;

namespace {
template <typename T>
T* P(ptr p) { return reinterpret_cast<T*>(p); }
cudaStream_t S(ptr s) { return reinterpret_cast<cudaStream_t>(s); }
const auto nogil = py::call_guard<py::gil_scoped_release>();
}  // namespace

PYBIND11_MODULE(_cuda, mod) {
  mod.doc() = "fastmlem CUDA kernels on raw device pointers (see fastmlem.cuda_ops)";
  py::dict metrics;  // name -> enum value, the names of ../pair_math.hpp
  for (int k = 0; k < fastmlem::kMetricCount; ++k) metrics[fastmlem::kMetricNames[k]] = k;
  mod.attr("METRICS") = metrics;

  mod.def("sample_pairs", [](int64_t n, int64_t B, uint64_t seed, uint64_t rng_stream, ptr i, ptr j, ptr s) {
    fc::sample_pairs(n, B, seed, rng_stream, P<int64_t>(i), P<int64_t>(j), S(s));
  }, nogil);
  mod.def("feature_distances", [](ptr X, int64_t n, int64_t m, bool precomputed, ptr i, ptr j, int64_t B,
                                  bool interactions, double nan_to_num, ptr F, ptr s) {
    fc::feature_distances(P<const double>(X), n, m, precomputed, P<const int64_t>(i), P<const int64_t>(j), B,
                          interactions, nan_to_num, P<double>(F), S(s));
  }, nogil);
  mod.def("fused_supported", &fc::fused_supported);
  mod.def("predict_pairs", [](ptr X, int64_t n, int64_t m, bool precomputed, bool interactions, double nan_to_num,
                              ptr w, bool generate, uint64_t seed, uint64_t rng_stream, ptr i, ptr j, int64_t B,
                              ptr pred, ptr s) {
    fc::predict_pairs(P<const double>(X), n, m, precomputed, interactions, nan_to_num, P<const double>(w), generate,
                      seed, rng_stream, P<int64_t>(i), P<int64_t>(j), B, P<double>(pred), S(s));
  }, nogil);
  mod.def("features_vjp_workspace", &fc::features_vjp_workspace);
  mod.def("features_vjp", [](ptr X, int64_t n, int64_t m, bool precomputed, bool interactions, double nan_to_num,
                             ptr i, ptr j, int64_t B, ptr g, ptr grad, ptr work, size_t work_bytes, ptr s) {
    fc::features_vjp(P<const double>(X), n, m, precomputed, interactions, nan_to_num, P<const int64_t>(i),
                     P<const int64_t>(j), B, P<const double>(g), P<double>(grad), P<void>(work), work_bytes, S(s));
  }, nogil);

  mod.def("neural_distances", [](ptr Y, int itemsize, int64_t p, ptr i, ptr j, int64_t B, int metric, ptr out, ptr s) {
    fc::neural_distances(P<const void>(Y), itemsize, p, P<const int64_t>(i), P<const int64_t>(j), B, metric,
                         P<double>(out), S(s));
  }, nogil);
  mod.def("lookup_condensed", [](ptr D, int64_t n, ptr i, ptr j, int64_t B, ptr out, ptr s) {
    fc::lookup_condensed(P<const double>(D), n, P<const int64_t>(i), P<const int64_t>(j), B, P<double>(out), S(s));
  }, nogil);
  mod.def("condensed_from_gram", [](ptr G, int64_t ld, ptr sq, int64_t r0, int64_t r1, int64_t n, int metric, ptr out,
                                    ptr s) {
    fc::condensed_from_gram(P<const double>(G), ld, P<const double>(sq), r0, r1, n, metric, P<double>(out), S(s));
  }, nogil);

  mod.def("rank_workspace", &fc::rank_workspace);
  mod.def("rank_average", [](ptr x, int64_t T, int64_t B, ptr out, ptr work, size_t work_bytes, ptr s) {
    fc::rank_average(P<const double>(x), T, B, P<double>(out), P<void>(work), work_bytes, S(s));
  }, nogil);
  mod.def("pearson_workspace", &fc::pearson_workspace);
  mod.def("pearson_rows", [](ptr x, ptr y, int64_t y_stride, int64_t T, int64_t B, ptr out, ptr work,
                             size_t work_bytes, ptr s) {
    fc::pearson_rows(P<const double>(x), P<const double>(y), y_stride, T, B, P<double>(out), P<void>(work),
                     work_bytes, S(s));
  }, nogil);
  mod.def("spearman_workspace", &fc::spearman_workspace);
  mod.def("spearman", [](ptr x, ptr y, int64_t T, int64_t B, ptr out, ptr work, size_t work_bytes, ptr s) {
    fc::spearman(P<const double>(x), P<const double>(y), T, B, P<double>(out), P<void>(work), work_bytes, S(s));
  }, nogil);

  mod.def("soft_rank_workspace", &fc::soft_rank_workspace);
  mod.def("soft_rank", [](ptr x, ptr eps, int64_t T, int64_t B, bool kl, ptr ranks, ptr perm, ptr block, ptr work,
                          size_t work_bytes, ptr s) {
    fc::soft_rank(P<const double>(x), P<const double>(eps), T, B, kl, P<double>(ranks), P<int32_t>(perm),
                  P<int64_t>(block), P<void>(work), work_bytes, S(s));
  }, nogil);
  mod.def("soft_rank_vjp_workspace", &fc::soft_rank_vjp_workspace);
  mod.def("soft_rank_vjp", [](ptr g, ptr x, ptr ranks, ptr perm, ptr block, ptr eps, int64_t T, int64_t B, bool kl,
                              ptr out, ptr work, size_t work_bytes, ptr s) {
    fc::soft_rank_vjp(P<const double>(g), P<const double>(x), P<const double>(ranks), P<const int32_t>(perm),
                      P<const int64_t>(block), P<const double>(eps), T, B, kl, P<double>(out), P<void>(work),
                      work_bytes, S(s));
  }, nogil);
}
