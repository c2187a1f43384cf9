// pybind11 bindings of the CPU kernels: fastmlem._core. Shapes and indices are checked here (binding_checks.hpp)
// and, with messages in the user's terms, in Python (ops.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "binding_checks.hpp"
#include "kernels.hpp"
#include "mlem_step.hpp"

namespace py = pybind11;
using dArr = py::array_t<double, py::array::c_style | py::array::forcecast>;
using iArr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
namespace check = fastmlem::checks;

// Features X: (n, m) encoded, or (n, n, m) per-feature distance matrices (precomputed).
static bool precomputed(const dArr& X) {
  if (X.ndim() == 3 && X.shape(0) != X.shape(1)) throw py::value_error("per-feature distances must be (n, n, m)");
  return X.ndim() == 3;
}
static int64_t n_columns(const dArr& X) { return X.shape(X.ndim() - 1); }

static fastmlem::Metric parse_metric(const std::string& name) {
  for (int k = 0; k < fastmlem::kMetricCount; ++k)
    if (name == fastmlem::kMetricNames[k]) return static_cast<fastmlem::Metric>(k);
  throw py::value_error("unknown metric '" + name + "'");
}

// MLEM's neural targets for n stimuli: a condensed RDM (1-D, n(n-1)/2, as float64), or the
// representations Y (n, p) of float16/float32/float64 with unit column stride, read in place.
// `keep` holds the array so the raw pointers stay valid.
struct HeldSource {
  py::array keep;
  fastmlem::NeuralSource source;
};
static HeldSource neural_source(const py::array& targets, const std::string& metric, int64_t n) {
  HeldSource h;
  h.source.n = n;
  if (targets.ndim() == 1) {
    dArr D = dArr::ensure(targets);
    if (!D || D.shape(0) != n * (n - 1) / 2)
      throw py::value_error("the condensed RDM must have n(n-1)/2 = " + std::to_string(n * (n - 1) / 2) + " entries");
    h.keep = D;
    h.source.rdm = D.data();
    return h;
  }
  if (targets.ndim() != 2 || targets.shape(0) != n)
    throw py::value_error("Y must be (n, p) with n = " + std::to_string(n) + " rows");
  const auto kind = targets.dtype().kind();
  const py::ssize_t size = targets.itemsize();
  if (kind != 'f' || (size != 2 && size != 4 && size != 8))
    throw py::type_error("Y must be float16, float32 or float64");
  if ((targets.shape(1) > 1 && targets.strides(1) != size) || targets.strides(0) < 0 || targets.strides(0) % size)
    throw py::value_error("Y must have unit column stride and a non-negative row stride (np.ascontiguousarray)");
  h.keep = targets;
  h.source.Y = targets.data();
  h.source.itemsize = static_cast<int>(size);
  h.source.p = targets.shape(1);
  h.source.ld = targets.strides(0) / size;
  h.source.metric = parse_metric(metric);
  return h;
}

PYBIND11_MODULE(_core, mod) {
  mod.doc() = "fastmlem compiled CPU kernels";
  mod.def("sample_pairs", [](int64_t n, int64_t B, uint64_t seed, uint64_t stream) {
    check::at_least(n, 1, "n");
    check::at_least(B, 0, "size");
    iArr i(B), j(B);
    { py::gil_scoped_release r; fastmlem::sample_pairs(n, B, seed, stream, i.mutable_data(), j.mutable_data()); }
    return py::make_tuple(i, j);
  });
  mod.def("feature_distances", [](dArr X, iArr i, iArr j, bool interactions, double nan_to_num) {
    check::features(X);
    check::pairs(i, j, X.shape(0));
    const int64_t m = n_columns(X), B = i.shape(0), q = interactions ? m * (m + 1) / 2 : m;
    dArr out({B, q});
    { py::gil_scoped_release r;
      fastmlem::feature_distances(X.data(), X.shape(0), m, precomputed(X), i.data(), j.data(), B, interactions,
                                  nan_to_num, out.mutable_data()); }
    return out;
  });
  mod.def("rank_average", [](dArr x) {
    check::require(x.ndim() >= 1, "x must have at least one axis; got a 0-d array");
    check::no_nan(x, "x");
    const int64_t B = x.shape(x.ndim() - 1), T = B ? x.size() / B : 0;
    dArr out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    { py::gil_scoped_release r; fastmlem::rank_average(x.data(), T, B, out.mutable_data()); }
    return out;
  });
  mod.def("spearman", [](dArr x, dArr y) {
    check::require(x.ndim() >= 1 && x.shape(x.ndim() - 1) >= 1, "x must be non-empty with at least one axis; got "
                   "shape " + check::shape_of(x));
    check::shape(y, std::vector<int64_t>(x.shape(), x.shape() + x.ndim()), "y");
    check::no_nan(x, "x");
    check::no_nan(y, "y");
    const int64_t B = x.shape(x.ndim() - 1), T = B ? x.size() / B : 0;
    dArr out(T);
    { py::gil_scoped_release r; fastmlem::spearman(x.data(), y.data(), T, B, out.mutable_data()); }
    return out;
  });
  mod.def("kendall_tau_a", [](dArr x, dArr y) {
    check::require(x.ndim() >= 1 && x.shape(x.ndim() - 1) >= 2, "x must have at least one axis of length >= 2 "
                   "(tau-a needs a pair); got shape " + check::shape_of(x));
    check::require(x.shape(x.ndim() - 1) < (int64_t(1) << 32), "rows of 2^32 or more values are not supported");
    check::shape(y, std::vector<int64_t>(x.shape(), x.shape() + x.ndim()), "y");
    check::no_nan(x, "x");
    check::no_nan(y, "y");
    const int64_t B = x.shape(x.ndim() - 1), T = x.size() / B;
    dArr out(T);
    { py::gil_scoped_release r; fastmlem::kendall_tau_a(x.data(), y.data(), T, B, out.mutable_data()); }
    return out;
  });
  mod.def("soft_rank", [](dArr x, dArr eps, bool kl) {
    check::ndim(x, 2, "x");
    check::at_least(x.shape(1), 1, "B (row length of x)");
    check::finite(x, "x");
    check::shape(eps, {x.shape(0)}, "eps");
    check::finite(eps, "eps");
    for (py::ssize_t t = 0; t < eps.size(); ++t) check::require(eps.data()[t] > 0, "eps must be positive");
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
    check::ndim(x, 2, "x");
    for (const auto& [a, name] : {std::pair<const py::array*, const char*>{&g, "g"}, {&ranks, "ranks"}, {&perm, "perm"},
                                  {&block, "block_start"}})
      check::shape(*a, {x.shape(0), x.shape(1)}, name);
    check::shape(eps, {x.shape(0)}, "eps");
    for (py::ssize_t t = 0; t < eps.size(); ++t) check::require(eps.data()[t] > 0, "eps must be positive");
    check::soft_rank_record(perm, block, x.shape(0), x.shape(1));
    const int64_t B = x.shape(1), T = x.shape(0);
    dArr out({T, B});
    { py::gil_scoped_release r;
      fastmlem::soft_rank_vjp(g.data(), x.data(), ranks.data(), perm.data(), block.data(), eps.data(), T, B, kl, out.mutable_data()); }
    return out;
  });
  // Holds numpy references to X and the targets so the raw pointers stay valid for the object's lifetime.
  struct PyMlemStep {
    dArr X;
    HeldSource targets;
    fastmlem::MlemStep impl;
    static dArr checked(dArr X, int64_t batch) {
      check::features(X);
      check::at_least(batch, 1, "batch_size");
      return X;
    }
    PyMlemStep(dArr X_, py::array targets_, const std::string& metric, bool interactions, double nan_to_num,
               int64_t batch, uint64_t seed, double strength, bool kl)
        : X(checked(X_, batch)), targets(neural_source(targets_, metric, X_.shape(0))),
          impl(X.data(), targets.source, X.shape(0), n_columns(X), precomputed(X), interactions, nan_to_num, batch,
               seed, strength, kl) {}
  };
  py::class_<PyMlemStep>(mod, "MlemStep")
      .def(py::init<dArr, py::array, std::string, bool, double, int64_t, uint64_t, double, bool>())
      .def("step", [](PyMlemStep& self, uint64_t stream, dArr w, double lo, double hi) {
        check::shape(w, {self.impl.columns()}, "w");
        check::finite(w, "w");
        dArr grad(self.impl.columns());
        double score;
        { py::gil_scoped_release r; score = self.impl.step(stream, w.data(), &lo, &hi, grad.mutable_data()); }
        return py::make_tuple(score, grad, lo, hi);
      });
  mod.def("permutation_spearman", [](dArr pred, dArr permuted, dArr y) {  // (T, B), (K, T, B), (T, B)
    check::ndim(y, 2, "y");
    check::shape(pred, {y.shape(0), y.shape(1)}, "pred");
    check::ndim(permuted, 3, "permuted");
    check::shape(permuted, {permuted.shape(0), y.shape(0), y.shape(1)}, "permuted");
    for (const auto* a : {&pred, &permuted, &y}) check::no_nan(*a, "pred, permuted or y");
    const int64_t K = permuted.shape(0), T = y.shape(0), B = y.shape(1);
    dArr base(T), perm({K, T});
    { py::gil_scoped_release r;
      fastmlem::permutation_spearman(pred.data(), permuted.data(), y.data(), K, T, B, base.mutable_data(),
                                     perm.mutable_data()); }
    return py::make_tuple(base, perm);
  });
  // Distances of pairs from `targets`: a condensed RDM of n stimuli, or the rows of Y (n, p) taken as
  // they come (float16/32/64, any row stride, unit column stride).
  mod.def("neural_distances", [](py::array targets, int64_t n, iArr i, iArr j, const std::string& metric) {
    const HeldSource h = neural_source(targets, metric, n);
    check::pairs(i, j, n);
    const int64_t B = i.shape(0);
    dArr out(B);
    { py::gil_scoped_release r; h.source.distances(i.data(), j.data(), B, std::nan(""), true, out.mutable_data()); }
    return out;
  });
  mod.def("largest_magnitude_bits", [](py::array Y) {
    const auto size = Y.itemsize();
    check::ndim(Y, 2, "Y");
    check::require(Y.dtype().kind() == 'f' && (size == 2 || size == 4 || size == 8),
                   "largest_magnitude_bits: Y must be float16, float32 or float64");
    const int64_t rows = Y.shape(0), cols = Y.shape(1);
    check::require((cols <= 1 || Y.strides(1) == size) && Y.strides(0) >= 0 && Y.strides(0) % size == 0,
                   "largest_magnitude_bits: Y needs unit column stride and a non-negative row stride");
    const int64_t ld = Y.strides(0) / size;
    const void* data = Y.data();
    py::gil_scoped_release r;
    if (size == 2) return fastmlem::largest_magnitude_bits(static_cast<const uint16_t*>(data), rows, cols, ld);
    if (size == 4) return fastmlem::largest_magnitude_bits(static_cast<const uint32_t*>(data), rows, cols, ld);
    return fastmlem::largest_magnitude_bits(static_cast<const uint64_t*>(data), rows, cols, ld);
  });
  mod.def("condensed_from_gram", [](py::array G, dArr sq, int64_t r0, bool cosine,
                                    py::array_t<double, py::array::c_style> out) {
    const int64_t n = sq.shape(0), rows = G.ndim() == 2 ? G.shape(0) : -1;
    if (G.ndim() != 2 || r0 < 0 || r0 + rows > n || G.shape(1) != n - r0 || out.size() != n * (n - 1) / 2)
      throw py::value_error("condensed_from_gram: need G (rows, n - r0), sq (n,), out (n(n-1)/2,)");
    double* dst = out.mutable_data();
    if (G.dtype().is(py::dtype::of<float>())) {
      auto g = py::array_t<float, py::array::c_style>::ensure(G);
      py::gil_scoped_release r;
      fastmlem::condensed_from_gram(g.data(), sq.data(), r0, r0 + rows, n, cosine, dst);
    } else {
      dArr g = dArr::ensure(G);
      py::gil_scoped_release r;
      fastmlem::condensed_from_gram(g.data(), sq.data(), r0, r0 + rows, n, cosine, dst);
    }
  });
  mod.def("rdm_moments", [](py::array Gx, dArr sqx, py::array Gy, dArr sqy, int64_t r0, bool cosine,
                            py::array_t<double, py::array::c_style> stats) {
    const int64_t n = sqx.shape(0), rows = Gx.ndim() == 2 ? Gx.shape(0) : -1;
    check::require(Gx.ndim() == 2 && r0 >= 0 && r0 + rows <= n && Gx.shape(1) == n - r0 && sqx.ndim() == 1,
                   "rdm_moments: need Gx (rows, n - r0) and sqx (n,)");
    check::shape(Gy, {rows, n - r0}, "Gy");
    check::shape(sqy, {n}, "sqy");
    check::shape(stats, {6}, "stats");
    check::require(Gx.dtype().is(Gy.dtype()), "Gx and Gy must have one dtype");
    double* st = stats.mutable_data();
    if (Gx.dtype().is(py::dtype::of<float>())) {
      using fArr = py::array_t<float, py::array::c_style>;
      auto gx = fArr::ensure(Gx), gy = fArr::ensure(Gy);
      py::gil_scoped_release r;
      fastmlem::rdm_moments(gx.data(), sqx.data(), gy.data(), sqy.data(), r0, r0 + rows, n, cosine, st);
    } else {
      dArr gx = dArr::ensure(Gx), gy = dArr::ensure(Gy);
      check::require(gx && gy, "Gx and Gy must be float32 or float64");
      py::gil_scoped_release r;
      fastmlem::rdm_moments(gx.data(), sqx.data(), gy.data(), sqy.data(), r0, r0 + rows, n, cosine, st);
    }
  });
  mod.def("permutation_importance", [](dArr X, py::array targets, const std::string& metric, dArr w, bool interactions,
                                       double nan_to_num, int64_t B, uint64_t seed, uint64_t stream0, uint64_t perm_seed,
                                       int64_t n_tasks, int64_t P) {
    check::features(X);
    const HeldSource h = neural_source(targets, metric, X.shape(0));
    const int64_t m = n_columns(X), q = interactions ? m * (m + 1) / 2 : m;
    check::shape(w, {q}, "w");
    check::finite(w, "w");
    check::at_least(B, 1, "batch_size");
    check::at_least(P, 1, "n_permutations");
    check::require(n_tasks >= 0 && n_tasks <= q * P, "n_tasks must lie in [0, q * n_permutations]");
    dArr base(n_tasks), permuted(n_tasks);
    { py::gil_scoped_release r;
      fastmlem::permutation_importance(X.data(), X.shape(0), n_columns(X), precomputed(X), interactions, nan_to_num,
                                       h.source, w.data(), B, seed, stream0, perm_seed, n_tasks, P,
                                       base.mutable_data(), permuted.mutable_data()); }
    return py::make_tuple(base, permuted);
  });
  py::tuple names(fastmlem::kMetricCount);
  for (int k = 0; k < fastmlem::kMetricCount; ++k) names[k] = fastmlem::kMetricNames[k];
  mod.attr("METRICS") = names;
}
