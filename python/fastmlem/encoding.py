"""Input checking and encoding: theoretical features -> numeric matrix, neural data -> 2-D array.

Every estimator goes through these two functions, so every bad input gets the same clear error.
Inputs are never modified: each function returns new arrays.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from . import _backend, _validate

MIN_STIMULI = 3


class ConstantFeatureWarning(UserWarning):
    """A feature takes a single value among the stimuli given to ``fit`` (e.g. within a training fold):
    it is kept, with weight 0 and importance 0, so that loops over folds finish."""


def _is_numeric_series(s: pd.Series) -> bool:
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return False
    return pd.api.types.is_numeric_dtype(dtype)


def _check_finite_or_nan(a: np.ndarray, what: str) -> None:
    if np.isinf(a).any():
        raise ValueError(f"{what} contains infinite values; replace them (or drop those stimuli) "
                         "before fitting.")


def encode_features(X, feature_names=None, *, precomputed: bool = False, encoding=None,
                    return_encoding: bool = False):
    """Encode theoretical features as a float64 matrix whose pairwise |differences| are distances.

    Parameters
    ----------
    X : pandas.DataFrame (n, m) or array-like (n, m); (n, n, m) feature distances if ``precomputed``.
        DataFrame columns: numeric columns are min-max scaled to [0, 1]; categorical, string,
        object and bool columns become integer category codes (missing -> NaN), so two stimuli
        are at distance 1 when they differ and 0 when they agree. Arrays are taken as numeric.
    feature_names : sequence of m str, optional. Defaults to the DataFrame's columns or
        ``feature_0 ... feature_{m-1}``.
    precomputed : bool. X holds per-feature distance matrices (n, n, m).
    encoding : the encoding returned at fit time (``return_encoding=True``): new stimuli are then
        encoded on the training scale and categories (unseen categories get new codes), and a
        feature may be constant among them.

    Returns
    -------
    X_enc : float64 array (n, m) (or (n, n, m) when precomputed), NaN where a value is missing.
    names : list of m str.
    encoding : (only with ``return_encoding``) per DataFrame column ('numeric', lo, hi) or
        ('categorical', categories); None for array input.
    """
    spec = None
    if isinstance(X, pd.Series):
        X = X.to_frame()
    if isinstance(X, pd.DataFrame):
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"the feature table is empty (shape {X.shape}); it needs at least "
                             f"{MIN_STIMULI} stimuli (rows) and one feature (column).")
        if precomputed:
            raise TypeError("distance='precomputed' needs X as an array of per-feature distance "
                            "matrices of shape (n, n, m), not a DataFrame.")
        names = [str(c) for c in X.columns] if feature_names is None else [str(f) for f in feature_names]
        if len(names) != X.shape[1]:
            raise ValueError(f"got {len(names)} feature names for {X.shape[1]} feature columns.")
        if encoding is not None and len(encoding) != X.shape[1]:
            raise ValueError(f"X has {X.shape[1]} feature columns; the model was fitted on {len(encoding)}.")
        cols, spec = [], []
        for k, (name, (_, s)) in enumerate(zip(names, X.items())):
            kind = ("numeric" if _is_numeric_series(s) else "categorical") if encoding is None else encoding[k][0]
            if kind == "numeric":
                v = s.to_numpy(dtype=np.float64, na_value=np.nan)
                _check_finite_or_nan(v, f"feature {name!r}")
                finite = v[~np.isnan(v)]
                lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
                if encoding is not None:
                    _, lo, hi = encoding[k]
                spec.append(("numeric", lo, hi))
                cols.append((v - lo) / (hi - lo) if hi > lo else v - lo)
            else:
                if encoding is None:  # one hashing pass: the codes of the categories found
                    found = pd.Categorical(s)
                    categories, seen = found.categories, found.codes.astype(np.float64)  # -1: missing
                    unseen = ()
                else:
                    categories = encoding[k][1]
                    seen = pd.Index(categories).get_indexer(s).astype(np.float64)  # -1: missing or unseen
                    unseen = s[(seen < 0) & s.notna().to_numpy()]
                codes = np.where(seen >= 0, seen, np.nan)
                if len(unseen):  # categories not seen at fit time: new codes, so they differ from all
                    extra = {v: len(categories) + t for t, v in enumerate(pd.unique(unseen))}
                    codes = np.where(seen >= 0, seen, [extra.get(v, np.nan) for v in s])
                spec.append(("categorical", categories))
                cols.append(codes.astype(np.float64))
        X_enc = np.column_stack(cols)
    else:
        X_enc = np.ascontiguousarray(_as_float_array(X, "X (features)"), dtype=np.float64)
        if precomputed:
            if X_enc.ndim == 2 and X_enc.shape[0] == X_enc.shape[1]:
                X_enc = X_enc[:, :, None]
            if X_enc.ndim != 3 or X_enc.shape[0] != X_enc.shape[1]:
                raise ValueError("with distance='precomputed', X must hold per-feature distance "
                                 f"matrices of shape (n, n, m); got shape {X_enc.shape}.")
        else:
            if X_enc.ndim == 1:
                X_enc = X_enc[:, None]
            if X_enc.ndim != 2:
                raise ValueError(f"X must be 2-D (n_stimuli, n_features); got shape {X_enc.shape}. "
                                 "For per-feature distance matrices use distance='precomputed'.")
        if X_enc.shape[0] == 0 or X_enc.shape[-1] == 0:
            raise ValueError(f"X is empty (shape {X_enc.shape}).")
        _check_finite_or_nan(X_enc, "X (features)")
        if precomputed and np.nan_to_num(np.diagonal(X_enc, axis1=0, axis2=1)).any():
            raise ValueError("with distance='precomputed', each per-feature distance matrix X[:, :, k] must "
                             "have a zero diagonal (a stimulus does not differ from itself).")
        m = X_enc.shape[-1]
        names = [f"feature_{k}" for k in range(m)] if feature_names is None else [str(f) for f in feature_names]
    if len(names) != X_enc.shape[-1]:
        raise ValueError(f"got {len(names)} feature names for {X_enc.shape[-1]} features.")
    if len(set(names)) != len(names):
        raise ValueError(f"feature names must be unique; got {names}.")
    if X_enc.shape[0] < MIN_STIMULI:
        raise ValueError(f"MLEM needs at least {MIN_STIMULI} stimuli; got {X_enc.shape[0]}.")
    if encoding is None:  # new stimuli scored with a fitted model may agree on a feature
        _check_not_constant(X_enc, names)
    return (X_enc, names, spec) if return_encoding else (X_enc, names)


def constant_features(X_enc):
    """Boolean mask (m,) of the features of ``X_enc`` (n, m) or (n, n, m) with at most one distinct
    non-missing value (all missing included): their distance is 0 on every pair."""
    flat = X_enc.reshape(-1, X_enc.shape[-1])
    # fmax / fmin skip NaN (NaN only when all are missing, and NaN > NaN is False): one pass per column
    return np.array([not np.fmax.reduce(column) > np.fmin.reduce(column) for column in flat.T], dtype=bool)


def _check_not_constant(X_enc, names):
    """Error if every feature is constant; a ConstantFeatureWarning naming each constant one otherwise."""
    constant = constant_features(X_enc)
    if constant.all():
        raise ValueError(f"every feature ({names}) is constant across the {X_enc.shape[0]} stimuli, so nothing "
                         "can explain the neural distances; give features that vary.")
    for name in np.asarray(names, dtype=object)[constant]:
        warnings.warn(f"feature {name!r} is constant across the {X_enc.shape[0]} stimuli given to fit, so it "
                      "cannot explain any neural distance: its weight and importance are 0.", ConstantFeatureWarning,
                      stacklevel=4)


def is_torch(a) -> bool:
    """Whether a is a torch tensor (without importing torch)."""
    return type(a).__module__.split(".")[0] == "torch" and hasattr(a, "detach")


def _as_float_array(a, what: str, allow_gpu: bool = False):
    """Array-like -> float array (float32 and float64 kept, others -> float64); a cupy array stays
    on the GPU when ``allow_gpu``."""
    from ._backend import is_cupy
    if is_torch(a):  # no gradient flows through MLEM: detach (the reference fails on requires_grad)
        a = a.detach()
        if a.device.type != "cpu":
            raise TypeError(f"{what} is a torch tensor on {a.device}; pass it with .cpu() (or as a cupy "
                            "array with device='cuda').")
        a = a.numpy()
    if is_cupy(a) or (hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray)):
        if not (allow_gpu and is_cupy(a)):
            raise TypeError(f"{what} is a GPU array; pass numpy arrays here, or a cupy array with "
                            "device='cuda' (needs cupy and the CUDA module).")
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{what} must be real-valued numbers; got dtype {a.dtype}.")
        return a if a.dtype.name in ("float32", "float64") else a.astype("float64")
    arr = np.asarray(a)
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise TypeError(f"{what} must be numeric; got dtype {arr.dtype}. Encode strings with a "
                        "pandas DataFrame (categorical columns) instead.")
    if arr.dtype.kind == "c":
        raise TypeError(f"{what} must be real-valued; got complex dtype {arr.dtype}.")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


_MAGNITUDE_BITS = {2: (np.uint16, 0x7FFF), 4: (np.uint32, 0x7FFFFFFF), 8: (np.uint64, 0x7FFFFFFFFFFFFFFF)}


def _largest_magnitude(a, xp=np):
    """max |a| as a float (inf or NaN when a holds one), by one integer pass over the bits: for IEEE
    floats without the sign bit, integer order is magnitude order and inf / NaN come last. (numpy
    reduces float16 arrays element by element in software; this is as fast for every width.)"""
    if a.size == 0:
        return 0.0
    uint, mask = _MAGNITUDE_BITS[a.dtype.itemsize]
    if xp is np and a.ndim == 2 and (a.shape[1] <= 1 or a.strides[1] == a.itemsize) and a.strides[0] >= 0 \
            and a.strides[0] % a.itemsize == 0 and _backend.core is not None:  # one compiled, threaded read
        return float(np.array([_backend.core.largest_magnitude_bits(a)], dtype=uint).view(a.dtype)[0])
    bits = xp.ascontiguousarray(a).view(uint) & uint(mask)
    return float(bits.max().reshape(1).view(a.dtype)[0])


def prepare_representations(Y, n: int, *, precomputed: bool = False, allow_gpu: bool = False,
                            rescale: bool = False):
    """Check neural data and return them as the kernels read them, without copying large inputs.

    Parameters
    ----------
    Y : array-like or DataFrame (n, ...) of representations (any trailing shape, flattened to
        (n, h)); or (n, n) neural distances when ``precomputed``. float16, float32 and float64
        arrays (``numpy.memmap`` included) are kept as they are and checked in row chunks, so a
        memmap larger than memory is never read whole; other dtypes become float64. A cupy array
        is accepted (and checked and returned on the GPU) when ``allow_gpu``.
    n : expected number of stimuli.

    Returns
    -------
    array (n, h) (or (n, n)) of Y's float dtype with unit column stride (a view of Y when it had
    one); numpy, or cupy for cupy input. With ``rescale`` (for rank-based models, whose results do
    not depend on the scale of Y), float64 values beyond 2^±500 are rescaled by a power of two
    (exact) so that squared distances cannot overflow.
    """
    from ._backend import get_array_module
    if isinstance(Y, (pd.DataFrame, pd.Series)):
        Y = Y.to_numpy()
    if isinstance(Y, np.ndarray) and Y.dtype == np.float16:
        Y = np.asarray(Y)
    else:
        Y = _as_float_array(Y, "Y (neural representations)", allow_gpu)
    xp = get_array_module(Y)
    if Y.ndim == 0 or Y.shape[0] != n:
        got = "a scalar" if Y.ndim == 0 else f"{Y.shape[0]} rows"
        raise ValueError(f"X describes {n} stimuli but Y has {got}; both must have one row per stimulus.")
    if precomputed:
        if not bool(xp.isfinite(Y).all()):
            raise ValueError("Y (neural distances) contains NaN or infinite values; remove or impute them.")
        if Y.shape != (n, n):
            raise ValueError(f"with distance='precomputed', Y must be an (n, n) distance matrix; got {Y.shape}.")
        scale = float(xp.abs(Y).max())
        if float(xp.abs(Y.diagonal()).max()) > 1e-6 * scale:
            raise ValueError("with distance='precomputed', Y must be a distance matrix with a zero diagonal "
                             f"(each stimulus is at distance 0 from itself); its diagonal reaches "
                             f"{float(xp.abs(Y.diagonal()).max()):.3g}. For a similarity matrix S, pass a "
                             "dissimilarity such as 1 - S.")
        if scale == 0:
            raise ValueError("the precomputed neural distances are all 0: there is nothing to explain.")
        if not bool(xp.allclose(Y, Y.T, rtol=1e-5, atol=1e-8 * max(1.0, scale))):
            raise ValueError("with distance='precomputed', Y must be a symmetric distance matrix; "
                             "symmetrise it, e.g. (Y + Y.T) / 2.")
        return xp.ascontiguousarray(Y)
    Y = Y.reshape(n, -1) if Y.ndim != 1 else Y[:, None]
    if Y.shape[1] == 0:
        raise ValueError("Y has no dimensions per stimulus.")
    largest, varies = 0.0, False
    rows = max(1, 2**26 // (Y.shape[1] * Y.itemsize))  # 64 MB chunks: no full-size temporaries
    for r0 in range(0, n, rows):
        chunk = Y[r0:r0 + rows]
        top = _largest_magnitude(chunk, xp)
        if not np.isfinite(top):
            raise ValueError("Y (neural representations) contains NaN or infinite values; remove or "
                             "impute them before fitting.")
        largest = max(largest, top)
        varies = varies or bool((chunk != Y[:1]).any())  # usually settled by the first chunk
    if not varies:
        raise ValueError("Y is the same for every stimulus: all neural distances are 0, so there is "
                         "nothing to explain.")
    if Y.shape[1] > 1 and Y.strides[1] != Y.itemsize:
        Y = xp.ascontiguousarray(Y)
    if rescale and Y.dtype == np.float64 and not 2.0**-500 < largest < 2.0**500:
        Y = Y * 2.0 ** -int(np.round(np.log2(largest)))
    return Y


def interaction_names(names):
    """Names of the lower-triangle interaction columns (a >= b, row-major): 'A', 'B x A', 'B', ..."""
    return [names[a] if a == b else f"{names[a]} x {names[b]}" for a, b in zip(*np.tril_indices(len(names)))]


check_positive_int = _validate.positive_int  # the one integer check (fastmlem._validate), kept under this name
