"""Input checks for the alignment tools: every bad input gets one clear error here.

Inputs are never modified: the arrays returned may be the caller's own (when already float64),
so nothing downstream writes into them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .._backend import get_array_module
from ..similarity._validate import as_matrix  # the one float-array reader of the package

__all__ = ["as_matrix", "as_models", "as_index"]

MIN_STIMULI = 2


def as_models(models, min_models: int = 2):
    """Check K representations of the same n stimuli.

    Parameters
    ----------
    models : list/tuple of K array-likes (n, d_k), dict name -> array-like (n, d_k), or one array
        (K, n, d). numpy or cupy, pandas DataFrames, CPU torch tensors; d_k may differ.
    min_models : smallest K accepted.

    Returns
    -------
    arrays : list of K float64 arrays (n, d_k), numpy, or cupy when any input is cupy.
    names : list of K str (dict keys, else ``model_0 ... model_{K-1}``).
    stimuli : pandas.Index of n labels (the first DataFrame's index, else 0 .. n-1).
    """
    if isinstance(models, dict):
        names, arrays = [str(k) for k in models], list(models.values())
    elif hasattr(models, "ndim") and hasattr(models, "shape"):
        if models.ndim != 3:
            raise ValueError(f"models given as one array must be 3-D (n_models, n_stimuli, n_units); "
                             f"got shape {models.shape}. Pass a list of 2-D arrays instead.")
        arrays = list(models)
        names = [f"model_{k}" for k in range(len(arrays))]
    elif isinstance(models, (list, tuple)):
        arrays = list(models)
        names = [f"model_{k}" for k in range(len(arrays))]
    else:
        raise TypeError("models must be a list (or dict name -> array) of 2-D arrays "
                        f"(n_stimuli, n_units); got {type(models).__name__}.")
    if len(arrays) < min_models:
        raise ValueError(f"alignment needs at least {min_models} models; got {len(arrays)}. Pass a "
                         "list (or dict) of arrays of shape (n_stimuli, n_units), one per model.")
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique; got {names}.")
    stimuli = next((a.index for a in arrays if isinstance(a, (pd.DataFrame, pd.Series))), None)
    xp = get_array_module(*arrays)
    arrays = [as_matrix(a, f"model {name!r}", xp) for name, a in zip(names, arrays)]
    rows = {name: a.shape[0] for name, a in zip(names, arrays)}
    if len(set(rows.values())) > 1:
        raise ValueError("all models must describe the same stimuli (one row per stimulus, same "
                         f"order), but their numbers of rows differ: {rows}.")
    n = arrays[0].shape[0]
    if n < MIN_STIMULI:
        raise ValueError(f"alignment needs at least {MIN_STIMULI} stimuli; got {n}.")
    stimuli = pd.RangeIndex(n, name="stimulus") if stimuli is None else pd.Index(stimuli)
    return arrays, names, stimuli


def as_index(idx, n: int, what: str) -> np.ndarray:
    """Integer indices or a boolean mask over n stimuli -> sorted-as-given int64 numpy indices."""
    idx = np.asarray(idx)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"{what} as a boolean mask must have length {n}; got shape {idx.shape}.")
        idx = np.flatnonzero(idx)
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise ValueError(f"{what} must be a non-empty 1-D array of integer indices (or a boolean "
                         f"mask); got dtype {idx.dtype}, shape {idx.shape}.")
    if idx.min() < -n or idx.max() >= n:
        raise ValueError(f"{what} has indices outside 0..{n - 1}.")
    return idx.astype(np.int64) % n
