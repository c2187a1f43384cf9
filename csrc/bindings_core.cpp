// pybind11 bindings of the CPU kernels: fastmlem._core. Shapes are checked in Python (ops.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <map>
#include <string>

#include "kernels.hpp"
#include "mlem_step.hpp"

namespace py = pybind11;
using dArr = py::array_t<double, py::array::c_style | py::array::forcecast>;
using iArr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// Features X: (n, m) encoded, or (n, n, m) per-feature distance matrices (precomputed).
static bool precomputed(const dArr& X) {
  if (X.ndim() == 3 && X.shape(0) != X.shape(1)) throw py::value_error("per-feature distances must be (n, n, m)");
  return X.ndim() == 3;
}
static int64_t n_columns(const dArr& X) { return X.shape(X.ndim() - 1); }

PYBIND11_MODULE(_core, mod) {
  mod.doc() = "fastmlem compiled CPU kernels";
  mod.def("sample_pairs", [](int64_t n, int64_t B, uint64_t seed, uint64_t stream) {
    iArr i(B), j(B);
    { py::gil_scoped_release r; fastmlem::sample_pairs(n, B, seed, stream, i.mutable_data(), j.mutable_data()); }
    return py::make_tuple(i, j);
  });
  mod.def("feature_distances", [](dArr X, iArr i, iArr j, bool interactions, double nan_to_num) {
    const int64_t m = n_columns(X), B = i.shape(0), q = interactions ? m * (m + 1) / 2 : m;
    dArr out({B, q});
    { py::gil_scoped_release r;
      fastmlem::feature_distances(X.data(), X.shape(0), m, precomputed(X), i.data(), j.data(), B, interactions,
                                  nan_to_num, out.mutable_data()); }
    return out;
  });
  mod.def("rank_average", [](dArr x) {
    const int64_t B = x.shape(x.ndim() - 1), T = B ? x.size() / B : 0;
    dArr out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    { py::gil_scoped_release r; fastmlem::rank_average(x.data(), T, B, out.mutable_data()); }
    return out;
  });
  mod.def("spearman", [](dArr x, dArr y) {
    const int64_t B = x.shape(x.ndim() - 1), T = B ? x.size() / B : 0;
    dArr out(T);
    { py::gil_scoped_release r; fastmlem::spearman(x.data(), y.data(), T, B, out.mutable_data()); }
    return out;
  });
  mod.def("soft_rank", [](dArr x, dArr eps, bool kl) {
    const int64_t B = x.shape(1), T = x.shape(0);
    dArr ranks({T, B}); iArr perm({T, B}), block({T, B});
    { py::gil_scoped_release r;
      fastmlem::soft_rank(x.data(), eps.data(), T, B, kl, ranks.mutable_data(), perm.mutable_data(), block.mutable_data()); }
    return py::make_tuple(ranks, perm, block);
  });
  mod.def("auto_strength", [](dArr x) {
    py::gil_scoped_release r;
    return fastmlem::auto_strength(x.data(), x.size());
  });
  mod.def("soft_rank_vjp", [](dArr g, dArr x, dArr ranks, iArr perm, iArr block, dArr eps, bool kl) {
    const int64_t B = x.shape(1), T = x.shape(0);
    dArr out({T, B});
    { py::gil_scoped_release r;
      fastmlem::soft_rank_vjp(g.data(), x.data(), ranks.data(), perm.data(), block.data(), eps.data(), T, B, kl, out.mutable_data()); }
    return out;
  });
  // Holds numpy references to X and D so the raw pointers stay valid for the object's lifetime.
  struct PyMlemStep {
    dArr X, D;
    fastmlem::MlemStep impl;
    PyMlemStep(dArr X_, dArr D_, bool interactions, double nan_to_num, int64_t batch, uint64_t seed,
               double strength, bool kl)
        : X(X_), D(D_), impl(X.data(), D.data(), X.shape(0), n_columns(X), precomputed(X), interactions,
                             nan_to_num, batch, seed, strength, kl) {}
  };
  py::class_<PyMlemStep>(mod, "MlemStep")
      .def(py::init<dArr, dArr, bool, double, int64_t, uint64_t, double, bool>())
      .def("step", [](PyMlemStep& self, uint64_t stream, dArr w, double lo, double hi) {
        dArr grad(self.impl.columns());
        double score;
        { py::gil_scoped_release r; score = self.impl.step(stream, w.data(), &lo, &hi, grad.mutable_data()); }
        return py::make_tuple(score, grad, lo, hi);
      });
  mod.def("permutation_spearman", [](dArr pred, dArr permuted, dArr y) {  // (T, B), (K, T, B), (T, B)
    const int64_t K = permuted.shape(0), T = y.shape(0), B = y.shape(1);
    dArr base(T), perm({K, T});
    { py::gil_scoped_release r;
      fastmlem::permutation_spearman(pred.data(), permuted.data(), y.data(), K, T, B, base.mutable_data(),
                                     perm.mutable_data()); }
    return py::make_tuple(base, perm);
  });
  // Y is taken as it comes, float32 or float64 with any row stride (unit column stride: ops.py checks).
  const auto neural = [](auto Y, iArr i, iArr j, const std::string& metric) {
    using T = typename decltype(Y)::value_type;
    static const std::map<std::string, fastmlem::NeuralMetric> metrics = {
        {"euclidean", fastmlem::NeuralMetric::euclidean}, {"manhattan", fastmlem::NeuralMetric::manhattan},
        {"cosine", fastmlem::NeuralMetric::cosine}, {"norm_diff", fastmlem::NeuralMetric::norm_diff}};
    const auto m = metrics.find(metric);
    if (m == metrics.end()) throw py::value_error("unknown metric " + metric);
    const int64_t B = i.shape(0), ld = Y.strides(0) / static_cast<py::ssize_t>(sizeof(T));
    dArr out(B);
    { py::gil_scoped_release r;
      fastmlem::neural_distances(Y.data(), Y.shape(0), Y.shape(1), ld, i.data(), j.data(), B, m->second,
                                 out.mutable_data()); }
    return out;
  };
  mod.def("neural_distances", [neural](py::array_t<float> Y, iArr i, iArr j, const std::string& metric) {
    return neural(Y, i, j, metric);
  });
  mod.def("neural_distances", [neural](py::array_t<double> Y, iArr i, iArr j, const std::string& metric) {
    return neural(Y, i, j, metric);
  });
  mod.def("permutation_importance", [](dArr X, dArr D, dArr w, bool interactions, double nan_to_num, int64_t B,
                                       uint64_t seed, uint64_t stream0, uint64_t perm_seed, int64_t n_tasks, int64_t P) {
    dArr base(n_tasks), permuted(n_tasks);
    { py::gil_scoped_release r;
      fastmlem::permutation_importance(X.data(), X.shape(0), n_columns(X), precomputed(X), interactions, nan_to_num,
                                       D.data(), w.data(), B, seed, stream0, perm_seed, n_tasks, P,
                                       base.mutable_data(), permuted.mutable_data()); }
    return py::make_tuple(base, permuted);
  });
}
