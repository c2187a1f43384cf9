"""Input checks and centring shared by every similarity measure (one place for both).

Inputs are never modified: every function returns new arrays (or the caller's own array when it
is already float64, which nothing downstream writes into).
"""
from __future__ import annotations

import pandas as pd

from .._backend import get_array_module


def to_float_array(a, xp, what: str):
    """Array-like (numpy, cupy, DataFrame, nested lists) -> float64 array of ``xp``."""
    if isinstance(a, (pd.DataFrame, pd.Series)):
        a = a.to_numpy()
    dtype = getattr(a, "dtype", None)
    if dtype is not None and (dtype == object or dtype.kind in "USVc"):
        raise TypeError(f"{what} must hold real numbers; got dtype {dtype}.")
    try:
        return xp.asarray(a, dtype=xp.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} could not be read as a float array: {exc}") from exc


def as_matrix(a, what: str, xp):
    """Check one representation and return it as a float64 (n, d) array of ``xp``.

    Parameters
    ----------
    a : array-like (n, d): numpy, cupy, pandas DataFrame or nested lists.
    what : how error messages name the array, e.g. "X".
    xp : numpy or cupy.
    """
    arr = to_float_array(a, xp, what)
    if arr.ndim == 1:
        raise ValueError(f"{what} is 1-D (shape {arr.shape}); pass a 2-D array (n_stimuli, "
                         "n_units), e.g. a.reshape(-1, 1) for a single unit.")
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n_stimuli, n_units); got shape "
                         f"{arr.shape}. Flatten trailing axes first: a.reshape(len(a), -1).")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {arr.shape}).")
    finite = xp.isfinite(arr)
    if not bool(finite.all()):
        n_nan = int(xp.isnan(arr).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise ValueError(f"{what} contains {n_nan} NaN and {n_inf} infinite values; drop or "
                         "impute those stimuli (rows) or units (columns) first.")
    if bool((arr == arr[:1]).all()):
        raise ValueError(f"{what} is the same for every stimulus (all rows equal), so it carries "
                         "no representational structure to compare.")
    return arr


def as_pair(X, Y, *, min_n: int = 2, name: str = "this measure"):
    """Check a pair of representations of the same n stimuli.

    Parameters
    ----------
    X : array-like (n, p), the reference / target.
    Y : array-like (n, q), the compared (optimised) representation.
    min_n : smallest number of stimuli the measure accepts.
    name : how errors name the measure.

    Returns
    -------
    X (n, p), Y (n, q) float64 arrays, and xp: cupy when either input is a cupy array, else numpy.
    """
    xp = get_array_module(X, Y)
    X = as_matrix(X, "X", xp)
    Y = as_matrix(Y, "Y", xp)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must describe the same stimuli (one row each, same order); "
                         f"got {X.shape[0]} rows in X and {Y.shape[0]} in Y.")
    if X.shape[0] < min_n:
        raise ValueError(f"{name} needs at least {min_n} stimuli (rows); got {X.shape[0]}.")
    return X, Y, xp


def center(A):
    """A minus its column means, (n, d) -> (n, d), a new array.

    Centring is a linear projection H = I - 11ᵀ/n, so the same function maps a gradient with
    respect to centred data back to a gradient with respect to the raw data.
    """
    return A - A.mean(axis=0, keepdims=True)


def sq(A) -> float:
    """Squared Frobenius norm of A as a Python float."""
    return float((A * A).sum())
