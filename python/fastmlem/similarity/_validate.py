"""Reading and checking representations: one float-array reader for similarity and align.

Inputs are never modified: every function returns new arrays, or the caller's own array when it
already has the wanted dtype, which nothing downstream writes into.

Scale: :func:`prepare` brings each representation to a magnitude near 1 by a power of two (an
exact multiplication) before any product is formed, so squares and Grams neither overflow nor
underflow whatever the units of the data; every measure is invariant to that rescaling (ridge
measures rescale their penalty with it).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .._backend import get_array_module, is_cupy

#: data whose largest magnitude lies in [2^lo, 2^hi] is used as it is; outside, it is rescaled by
#: a power of two first.  Chosen so that Grams and their squared norms stay far inside the range
#: of the working dtype (float32 squares of 2^8-sized values summed over 10^6 rows: ~2^36).
SAFE_EXPONENTS = {np.dtype(np.float32): (-8, 8), np.dtype(np.float64): (-100, 100)}


def _from_torch(a, what: str):
    """A torch tensor as a numpy array (detached; CPU only)."""
    if a.device.type != "cpu":
        raise TypeError(f"{what} is a torch tensor on {a.device}; pass a CPU tensor "
                        "(tensor.cpu()) or a cupy array for the GPU.")
    if a.is_complex():
        raise TypeError(f"{what} must hold real numbers; got torch dtype {a.dtype}.")
    t = a.detach()
    if str(t.dtype) not in ("torch.float32", "torch.float64"):
        t = t.double()  # float16, bfloat16 (which numpy lacks), integers, bool
    return t.numpy()


def _is_torch(a) -> bool:
    return type(a).__module__.split(".")[0] == "torch" and hasattr(a, "detach")


def native_array(a, xp, what: str):
    """Array-like -> real array of ``xp``: float32 stays float32, anything else becomes float64.

    Reads numpy and cupy arrays, pandas objects, CPU torch tensors (detached, also with
    requires_grad=True), nested lists and anything ``numpy.asarray`` reads (``__array__``).
    """
    if _is_torch(a):
        a = _from_torch(a, what)
    elif isinstance(a, (pd.DataFrame, pd.Series)):
        a = a.to_numpy()
    elif not (isinstance(a, np.ndarray) or is_cupy(a)):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{what} could not be read as a float array: {exc}") from exc
    if a.dtype == object or a.dtype.kind in "USVcmM":
        raise TypeError(f"{what} must hold real numbers; got dtype {a.dtype}.")
    dtype = xp.float32 if a.dtype == np.float32 else xp.float64
    try:
        return xp.asarray(a, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} could not be read as a float array: {exc}") from exc


def to_float_array(a, xp, what: str):
    """Array-like -> float64 array of ``xp`` (see :func:`native_array` for what is read)."""
    arr = native_array(a, xp, what)
    return arr if arr.dtype == xp.float64 else arr.astype(xp.float64)


def extremes(arr, what: str):
    """(min, max) of a non-empty array as floats; a clear error if it holds NaN or infinities."""
    xp = get_array_module(arr)
    lo, hi = float(arr.min()), float(arr.max())  # NaN and inf propagate: one cheap pass each
    if not (math.isfinite(lo) and math.isfinite(hi)):
        n_nan = int(xp.isnan(arr).sum())
        n_inf = int(xp.isinf(arr).sum())
        raise ValueError(f"{what} contains {n_nan} NaN and {n_inf} infinite values; drop or "
                         "impute those stimuli (rows) or units (columns) first.")
    return lo, hi


def as_matrix(a, what: str, xp=None, n_units: int | None = None, dtype=np.float64,
              check_finite: bool = True):
    """Check one representation and return it as an (n, d) float array of ``xp``.

    Parameters
    ----------
    a : array-like (n, d): numpy, cupy, pandas DataFrame, CPU torch tensor, nested lists.
    what : how error messages name the array, e.g. "X" or "model 'vgg'".
    xp : numpy or cupy; defaults to the module of ``a``.
    n_units : expected d, if known (e.g. new stimuli of a fitted model).
    dtype : float64 (default), or None to keep float32 input in float32.
    check_finite : raise on NaN / infinite values (False when the caller checks them itself, as
        :func:`prepare` does).

    Returns
    -------
    (n, d) array, finite, of dtype ``dtype`` (or the input's float dtype when None).
    """
    xp = get_array_module(a) if xp is None else xp
    arr = native_array(a, xp, what)
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    if arr.ndim == 1:
        raise ValueError(f"{what} is 1-D (shape {arr.shape}); pass a 2-D array (n_stimuli, "
                         "n_units), e.g. a.reshape(-1, 1) for a single unit.")
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n_stimuli, n_units); got shape "
                         f"{arr.shape}. Flatten trailing axes first: a.reshape(len(a), -1).")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {arr.shape}).")
    if n_units is not None and arr.shape[1] != n_units:
        raise ValueError(f"{what} has {arr.shape[1]} units but was fitted with {n_units}; pass "
                         "the same units (columns) in the same order.")
    if check_finite:
        extremes(arr, what)
    return arr


def as_pair(X, Y, *, min_n: int = 2, name: str = "this measure", float32: bool = False):
    """Check a pair of representations of the same n stimuli.

    Parameters
    ----------
    X : array-like (n, p), the reference / target.
    Y : array-like (n, q), the compared (optimised) representation.
    min_n : smallest number of stimuli the measure accepts.
    name : how errors name the measure.
    float32 : whether the measure may work in float32 (then it does when both inputs are
        float32; otherwise both become float64).

    Returns
    -------
    X (n, p), Y (n, q) arrays of one float dtype, and xp: cupy when either input is a cupy array.
    """
    xp = get_array_module(X, Y)
    X = as_matrix(X, "X", xp, dtype=None)
    Y = as_matrix(Y, "Y", xp, dtype=None)
    if not (float32 and X.dtype == Y.dtype == xp.float32):
        X, Y = X.astype(xp.float64, copy=False), Y.astype(xp.float64, copy=False)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must describe the same stimuli (one row each, same order); "
                         f"got {X.shape[0]} rows in X and {Y.shape[0]} in Y.")
    if X.shape[0] < min_n:
        raise ValueError(f"{name} needs at least {min_n} stimuli (rows); got {X.shape[0]}.")
    return X, Y, xp


def pow2_scale(top: float, dtype) -> float:
    """1.0 when ``top`` (a largest magnitude > 0) is in the safe band of ``dtype``, else the power
    of two s with top * s in [0.5, 1)."""
    lo, hi = SAFE_EXPONENTS[np.dtype(dtype)]
    e = math.frexp(top)[1]
    return 1.0 if lo <= e <= hi else math.ldexp(1.0, -e)


def column_mean(A):
    """Column means (d,) of A (n, d) in float64.  float32 data are summed in blocks of 32 rows in
    float32 (short sums, exact to a few ulps) and the block sums in float64: as accurate as a
    float64 accumulation at a fraction of its cost (no conversion of the whole array)."""
    xp = get_array_module(A)
    n, b = A.shape[0], 32
    if A.dtype == xp.float64 or n < 2 * b:
        return A.mean(axis=0, dtype=xp.float64)
    k = n // b * b
    total = A[:k].reshape(k // b, b, A.shape[1]).sum(axis=1).sum(axis=0, dtype=xp.float64)
    if k < n:
        total += A[k:].sum(axis=0, dtype=xp.float64)
    return total / n


def column_sumsq(A):
    """Column sums of squares (d,) of A (n, d) in float64 (float32: blocks of 32 rows, as in
    :func:`column_mean`)."""
    xp = get_array_module(A)
    n, d = A.shape
    if A.dtype == xp.float64 or n < 64:
        return xp.einsum("ij,ij->j", A, A, dtype=xp.float64)
    k = n // 32 * 32
    B = A[:k].reshape(k // 32, 32, d)
    total = xp.einsum("bij,bij->bj", B, B).sum(axis=0, dtype=xp.float64)
    if k < n:
        total += xp.einsum("ij,ij->j", A[k:], A[k:], dtype=xp.float64)
    return total


def prepare(A, what: str, *, center_columns: bool, lazy: bool = False):
    """Rescale A (n, d) by a power of two s (see :func:`pow2_scale`) and optionally centre its
    columns; a new array unless nothing had to change.

    Returns (A', s) with A' = (A - column means) * s, or A * s.  float32 data too small or too
    large for float32 products (largest magnitude outside [2^-100, 2^100]) come back as float64.
    Raises a clear error when every row of A is the same (nothing to compare).

    ``lazy`` (with ``center_columns``): return (A * s, s, the column means of A * s in float64)
    without centring, for measures that centre their Grams instead of the data (no (n, d) copy;
    see :func:`fastmlem.similarity._linalg.centred_gram`).
    """
    xp = get_array_module(A)
    lo, hi = extremes(A, what)
    top = max(abs(lo), abs(hi))
    if top == 0.0 or (not center_columns and bool((A == A[:1]).all())):
        raise _constant(what)
    if A.dtype == xp.float32 and not -100 <= math.frexp(top)[1] <= 100:
        A = A.astype(xp.float64)
    s = pow2_scale(top, A.dtype)
    if not center_columns or lazy:
        A = A if s == 1.0 else A * A.dtype.type(s)
        return (A, s, column_mean(A)) if lazy else (A, s)
    if s != 1.0:
        A = A * A.dtype.type(s)
    return center_given(A, column_mean(A), what), s


def center_given(A, mean, what: str):
    """A (n, d) minus known column means (d,) (cast to A's dtype), a new array; the
    constant-data error when nothing is left."""
    out = A - mean.astype(A.dtype)
    if not bool(out.any()):
        raise _constant(what)
    return out


def _constant(what: str):
    return ValueError(f"{what} is the same for every stimulus (all rows equal), so it carries "
                      "no representational structure to compare.")


def center(A):
    """A minus its column means, (n, d) -> (n, d), a new array.

    Centring is a linear projection H = I - 11ᵀ/n, so the same function maps a gradient with
    respect to centred data back to a gradient with respect to the raw data.
    """
    return A - A.mean(axis=0, keepdims=True)


def sq(A) -> float:
    """Squared Frobenius norm of A as a Python float (accumulated in float64)."""
    return dot(A, A)


def dot(A, B) -> float:
    """<A, B>_F of two arrays of one shape as a Python float, accumulated in float64.

    float32: products summed in float32 over blocks of 64 (short sums, a few ulps), the block
    sums in float64, without converting the arrays (a float64 accumulation of float32 data
    costs numpy a buffered cast, 5-10x slower).
    """
    xp = get_array_module(A)
    a, b = A.ravel(), B.ravel()
    if a.dtype == xp.float64:
        return float(a @ b)
    k = a.size // 64 * 64
    total = float(xp.einsum("ij,ij->i", a[:k].reshape(-1, 64), b[:k].reshape(-1, 64))
                  .sum(dtype=xp.float64))
    if k < a.size:
        total += float((a[k:].astype(xp.float64) * b[k:]).sum())
    return total
