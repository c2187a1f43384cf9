// Argument checks of the pybind11 bindings: fastmlem._core is importable directly, so every
// binding checks the shapes and index ranges it is handed (ValueError / IndexError) before a
// kernel reads a buffer. ops.py checks the same things earlier, with messages in its own terms.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace fastmlem {
namespace checks {

namespace py = pybind11;

inline std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}

inline void at_least(int64_t value, int64_t minimum, const char* name) {
  require(value >= minimum, std::string(name) + " must be >= " + std::to_string(minimum) + "; got " +
                                std::to_string(value));
}

// a has exactly the given shape.
inline void shape(const py::array& a, const std::vector<int64_t>& want, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(want.size());
  for (size_t d = 0; ok && d < want.size(); ++d) ok = a.shape(d) == want[d];
  std::string w = "(";
  for (size_t d = 0; d < want.size(); ++d) w += (d ? ", " : "") + std::to_string(want[d]);
  require(ok, std::string(name) + " must have shape " + w + (want.size() == 1 ? ",)" : ")") + "; got " +
                  shape_of(a));
}

inline void ndim(const py::array& a, py::ssize_t d, const char* name) {
  require(a.ndim() == d, std::string(name) + " must be " + std::to_string(d) + "-D; got shape " + shape_of(a));
}

// Features: (n, m) encoded, or (n, n, m) per-feature distances.
inline void features(const py::array& X) {
  require((X.ndim() == 2 || (X.ndim() == 3 && X.shape(0) == X.shape(1))) && X.shape(0) >= 1,
          "X must be (n, m) encoded features or (n, n, m) per-feature distances with n >= 1; got shape " +
              shape_of(X));
}

// Condensed RDM of n stimuli.
inline void condensed(const py::array& D, int64_t n) { shape(D, {n * (n - 1) / 2}, "D (condensed RDM)"); }

// Index arrays i, j: 1-D, same length, values in [0, n).
inline void pairs(const py::array_t<int64_t>& i, const py::array_t<int64_t>& j, int64_t n) {
  require(i.ndim() == 1 && j.ndim() == 1 && i.shape(0) == j.shape(0),
          "i and j must be 1-D index arrays of the same length; got shapes " + shape_of(i) + " and " + shape_of(j));
  for (const auto* a : {&i, &j}) {
    const int64_t* p = a->data();
    for (py::ssize_t k = 0; k < a->shape(0); ++k)
      if (p[k] < 0 || p[k] >= n)
        throw py::index_error("pair index " + std::to_string(p[k]) + " out of range [0, " + std::to_string(n) + ")");
  }
}

// (The messages are built only on failure: built per element, they cost 300 ns each.)
inline void no_nan(const py::array_t<double>& a, const char* name) {
  const double* p = a.data();
  for (py::ssize_t k = 0; k < a.size(); ++k)
    if (std::isnan(p[k])) throw py::value_error(std::string("cannot rank NaN values (in ") + name + ")");
}

inline void finite(const py::array_t<double>& a, const char* name) {
  const double* p = a.data();
  for (py::ssize_t k = 0; k < a.size(); ++k)
    if (!std::isfinite(p[k]))
      throw py::value_error(std::string(name) + " must be finite; got " + std::to_string(p[k]) + " at flat index " +
                            std::to_string(k));
}

// The forward record of soft_rank for T rows of length B: each perm row a permutation of
// 0..B-1, block_start[t, k] the start of the pooled block of sorted position k (0 at k = 0, then
// k or the previous start).
inline void soft_rank_record(const py::array_t<int64_t>& perm, const py::array_t<int64_t>& block, int64_t T,
                             int64_t B) {
  std::vector<char> seen(static_cast<size_t>(B));
  const int64_t *p = perm.data(), *b = block.data();
  for (int64_t t = 0; t < T; ++t) {
    std::fill(seen.begin(), seen.end(), 0);
    for (int64_t k = 0; k < B; ++k) {
      const int64_t v = p[t * B + k], s = b[t * B + k];
      if (v < 0 || v >= B || seen[v])
        throw py::index_error("state.perm row " + std::to_string(t) + " is not a permutation of 0.." +
                              std::to_string(B - 1) + " (entry " + std::to_string(v) + "): pass the state "
                              "soft_rank returned, unmodified");
      seen[v] = 1;
      if (s != k && !(k > 0 && s == b[t * B + k - 1]))
        throw py::index_error("state.block_start row " + std::to_string(t) + " is not a valid block record: "
                              "pass the state soft_rank returned, unmodified");
    }
  }
}

}  // namespace checks
}  // namespace fastmlem
