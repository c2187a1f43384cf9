"""The MLEM paper's synthetic benchmark: does a method recover a known feature metric?

Protocol (Jalouzot et al., MLEM paper, "synthetic" simulations): n = 256 stimuli with p = 16
binary features; a ground-truth SPD matrix ``W_GT`` (p, p) with unit Frobenius norm; stimulus
dissimilarities ``D_ij = d_ij' W_GT d_ij`` with d_ij = |x_i - x_j|; D embedded in 768 dimensions by
metric MDS; ``Y = embedding + sigma * N(0, 1)``. The embedding is scaled to unit mean variance per
dimension, so sigma is a noise-to-signal ratio per dimension (unscaled, MDS coordinates of D have a
total variance near 1 and every sigma >= 0.5 would bury the signal in 768 dimensions). Each method is fitted on 80 % of the stimuli;
reported are the Frobenius distance between its unit-norm weight matrix and ``W_GT``, its steps
to convergence, and the Spearman correlation on the pairs of the held-out 20 %.

``embedding="none"`` is a control outside the paper: the methods get the ground-truth dissimilarities
themselves as a precomputed neural RDM (``D + sigma * sd(D) * E``, E symmetric standard normal),
so that what the MDS step loses (D with a dense W_GT is far from Euclidean) is separated from what
the estimators do.

Methods compared: MLEM (SPD interactions) and FR-RSA-I (``MLEM(interactions=True, spd=False)``:
unconstrained interaction weights, same loss, optimiser and batches), optionally classic FR-RSA
with interactions (:class:`fastmlem.FRRSA`) and two MLEM variants: ``MLEM-quadratic``
(``spd_form="quadratic"``, the paper's SPD quadratic form) and ``MLEM-auto``
(``soft_rank_strength="auto"``).

Two weight errors are reported for every fit (:func:`weight_error`): ``invariant`` compares the
quadratic forms the models predict (what a recovery of ``W_GT`` means), ``authors`` reproduces
the flat-vector comparison of the authors' research code, under which even a perfect recovery has
a non-zero error that differs between methods (:func:`perfect_recovery_error`).
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
from scipy.spatial.distance import squareform
from ._progress import progress

from . import _validate as check
from . import ops

NOISE_LEVELS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
QUICK = dict(noise_levels=(0.0, 1.0, 2.0, 3.0, 5.0), seeds=(0, 1, 2), n_stimuli=256, n_features=16)
METHODS = ("MLEM", "FR-RSA-I", "FR-RSA", "MLEM-quadratic", "MLEM-auto")
EMBEDDINGS = ("mds", "none")
GROUND_TRUTHS = ("wishart", "sklearn")
ERRORS = ("invariant", "authors")


def random_spd(p: int, rng: np.random.Generator, kind: str = "wishart") -> np.ndarray:
    """A random SPD matrix (p, p) with unit Frobenius norm.

    kind 'wishart': A A' + 1e-3 I, A (p, p) standard normal; 'sklearn': scikit-learn's
    ``make_spd_matrix`` (eigenvalues in [1, 2], nearly diagonal), the generator of the authors'
    research code, seeded from ``rng``.
    """
    p = check.positive_int(p, "p")
    if kind == "wishart":
        A = rng.standard_normal((p, p))
        W = A @ A.T + 1e-3 * np.eye(p)
    elif kind == "sklearn":
        from sklearn.datasets import make_spd_matrix
        W = make_spd_matrix(p, random_state=int(rng.integers(2**31)))
    else:
        raise ValueError(f"ground truth must be one of {GROUND_TRUTHS}; got {kind!r}.")
    return W / np.linalg.norm(W)


def quadratic_form(weights: np.ndarray, m: int) -> np.ndarray:
    """Symmetric unit-Frobenius matrix Q (m, m) of a prediction over interaction columns.

    ``weights`` are the coefficients of the columns d_a * d_b, a >= b (row-major lower triangle),
    so the prediction is d' Q d with Q_aa = w_aa and Q_ab = Q_ba = w_ab / 2; this is the matrix
    that is comparable with a ground truth W in D = d' W d.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (m * (m + 1) // 2,):
        raise ValueError(f"weights must have the m(m+1)/2 = {m * (m + 1) // 2} interaction coefficients of "
                         f"m = {m} features; got shape {weights.shape}.")
    a, b = np.tril_indices(m)
    Q = np.zeros((m, m))
    Q[a, b] = weights
    Q = (Q + Q.T) / 2  # off-diagonal coefficients split over (a, b) and (b, a); diagonal kept
    norm = np.linalg.norm(Q)
    return Q / norm if norm > 0 else Q


def coefficients(Q: np.ndarray) -> np.ndarray:
    """Coefficients (m(m+1)/2,) of the columns d_a * d_b, a >= b (row-major lower triangle), of the
    prediction d' Q d for a symmetric Q (m, m): Q_aa on the diagonal, 2 Q_ab off it. The inverse of
    :func:`quadratic_form` up to scale."""
    C = 2 * Q - np.diag(np.diag(Q))
    return C[np.tril_indices(len(Q))]


def _convention(method: str) -> str:
    """How the authors' research code scales a method's weights: 'spd' (the SPD quadratic form has
    unit Frobenius norm: MLEM) or 'coefficients' (the column coefficients have unit norm: FR-RSA-I,
    and classic FR-RSA, which has no counterpart there)."""
    return "spd" if method.startswith("MLEM") else "coefficients"


def weight_error(weights: np.ndarray, W_gt: np.ndarray, method: str = "MLEM", error: str = "invariant") -> float:
    """Distance between a fit's weights and the ground truth.

    Parameters
    ----------
    weights : (m(m+1)/2,) coefficients of the interaction columns d_a * d_b, a >= b (``weights_``).
    W_gt : (m, m) ground-truth SPD matrix, unit Frobenius norm, ``D = d' W_gt d``.
    method : name in :data:`METHODS`; only matters for ``error='authors'``.
    error : 'invariant': ``||Q_hat - W_gt||_F`` with ``Q_hat`` the unit-norm quadratic form the
        model predicts (:func:`quadratic_form`); 0 for a perfect recovery whatever the method.
        'authors': the comparison of the authors' research code (LouisJalouzot/MLEM_method,
        ``SPDMatrixLearner.get_flat_W`` and the ``L2`` column of ``FeatureImportance.compute``):
        the Euclidean distance between the upper triangle of ``W_gt`` and the estimate's flat
        vector, whose off-diagonal entries are doubled (``W += W.tril(-1).T``) while the ground
        truth's are not. The estimate is scaled as that code scales it: for MLEM the SPD quadratic
        form has unit Frobenius norm, so its flat vector is the column coefficients (off-diagonals
        2 Q_ab); for FR-RSA-I the triangular coefficient matrix has unit Frobenius norm and its
        off-diagonals are doubled once more.

    Returns
    -------
    float
    """
    if error == "invariant":
        return float(np.linalg.norm(quadratic_form(weights, len(W_gt)) - W_gt))
    if error != "authors":
        raise ValueError(f"error must be one of {ERRORS}; got {error!r}.")
    m = len(W_gt)
    a, b = np.tril_indices(m)
    c = np.asarray(weights, dtype=np.float64)
    if _convention(method) == "spd":
        Q = np.zeros((m, m))
        Q[a, b] = c
        Q = (Q + Q.T) / 2  # quadratic form, unnormalised; its Frobenius norm sets the scale
        flat = c / np.linalg.norm(Q)
    else:
        flat = np.where(a == b, 1.0, 2.0) * c / np.linalg.norm(c)
    # the same entries in the ground truth (a >= b here is b <= a of its upper triangle)
    return float(np.linalg.norm(flat - W_gt[a, b]))


def perfect_recovery_error(W_gt: np.ndarray, method: str = "MLEM", error: str = "authors") -> float:
    """The error (:func:`weight_error`) of a fit whose prediction is exactly ``d' W_gt d``: a floor.
    0 under 'invariant'; under 'authors' about 0.48 (MLEM) and 1.11 (FR-RSA-I) for 16 features
    with the 'wishart' ground truth, 0.62 and 1.25 with the authors' 'sklearn' one."""
    return weight_error(coefficients(W_gt), W_gt, method, error)


def chance_frobenius(n_features: int, n_draws: int = 1000, seed: int = 0) -> float:
    """Mean ||W1 - W2||_F between independent draws of :func:`random_spd`: the error of a guess."""
    rng = np.random.default_rng(seed)
    return float(np.mean([np.linalg.norm(random_spd(n_features, rng) - random_spd(n_features, rng))
                          for _ in range(n_draws)]))


def make_dataset(n_stimuli: int = 256, n_features: int = 16, noise: float = 0.0, n_dims: int = 768,
                 seed: int = 0, embedding: str = "mds", ground_truth: str = "wishart"):
    """One synthetic dataset of the protocol.

    Returns a dict: X (n, p) DataFrame of 0/1 features ``f0..f{p-1}``, W (p, p) ground truth,
    D (n, n) ground-truth dissimilarities, and Y: with ``embedding="mds"`` the representations
    (n, n_dims) float64 = ``embedding`` (n, n_dims; noise-free MDS coordinates scaled to unit mean
    variance per dimension) + noise; with ``embedding="none"`` the noisy dissimilarity matrix (n, n)
    ``D + noise * sd(D) * E`` (symmetric, zero diagonal), to be fitted with distance='precomputed'.
    ``ground_truth``: how W is drawn (:func:`random_spd`).
    The features, W and the embedding depend only on ``seed``; the noise on (seed, noise).
    """
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}; got {embedding!r}.")
    check.positive_int(n_stimuli, "n_stimuli", 3)
    check.positive_int(n_features, "n_features")
    check.finite_float(noise, "noise", 0.0)
    check.positive_int(n_dims, "n_dims")
    check.positive_int(seed, "seed", 0)
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, size=(n_stimuli, n_features)).astype(np.float64)
    W = random_spd(n_features, rng, ground_truth)
    i, j = ops.all_pairs(n_stimuli)
    d = np.abs(X[i] - X[j])
    D_condensed = np.einsum("ka,ab,kb->k", d, W, d)
    D = squareform(D_condensed)
    names = [f"f{k}" for k in range(n_features)]
    data = dict(X=pd.DataFrame(X, columns=names), W=W, D=D)
    noise_rng = np.random.default_rng([seed, int(round(noise * 1000))])
    if embedding == "none":
        data["Y"] = squareform(D_condensed + noise * D_condensed.std() * noise_rng.standard_normal(len(i)))
        return data
    from sklearn.manifold import MDS
    with warnings.catch_warnings():  # sklearn's FutureWarnings about changing MDS defaults
        warnings.simplefilter("ignore", FutureWarning)
        coords = MDS(n_components=n_dims, metric=True, dissimilarity="precomputed", n_init=1,
                     random_state=seed).fit_transform(D)
    coords *= np.sqrt(n_dims / np.mean(np.sum(coords ** 2, axis=1)))
    data.update(embedding=coords, Y=coords + noise * noise_rng.standard_normal(coords.shape))
    return data


def _fit_inputs(data, idx, embedding):
    """(X, Y, distance) of the stimuli ``idx`` as the estimators take them."""
    if embedding == "mds":
        return data["X"].iloc[idx], data["Y"][idx], "euclidean"
    X = data["X"].to_numpy()[idx]
    return np.abs(X[:, None, :] - X[None, :, :]), data["Y"][np.ix_(idx, idx)], "precomputed"


def _model(method: str, seed: int, max_steps: int, fast_cv: bool, distance: str = "euclidean"):
    from .frrsa import FRRSA
    from .mlem import MLEM
    if method == "MLEM":
        return MLEM(interactions=True, spd=True, max_steps=max_steps, random_state=seed, distance=distance)
    if method == "MLEM-quadratic":
        return MLEM(interactions=True, spd_form="quadratic", max_steps=max_steps, random_state=seed,
                    distance=distance)
    if method == "MLEM-auto":
        return MLEM(interactions=True, soft_rank_strength="auto", max_steps=max_steps, random_state=seed,
                    distance=distance)
    if method == "FR-RSA-I":
        return MLEM(interactions=True, spd=False, max_steps=max_steps, random_state=seed, distance=distance)
    if method == "FR-RSA":
        reps = (1, 1) if fast_cv else (10, 5)
        return FRRSA(interactions=True, n_outer_repeats=reps[0], n_inner_repeats=reps[1], random_state=seed,
                     distance=distance)
    raise ValueError(f"unknown method {method!r}; use one of {METHODS}.")


def _test_spearman(model, X_test, Y_test) -> float:
    """Exact Spearman between the model's prediction and neural distances over all held-out pairs.

    The 0/1 features are used as they are (a feature may be constant among few held-out stimuli).
    """
    from ._shared import predict
    from .mlem import PairSource
    X_enc = np.asarray(X_test, dtype=np.float64)
    source = PairSource(X_enc, np.asarray(Y_test), model.distance, model.interactions, model.nan_to_num)
    F, y = source.rows(*source.all_pairs())
    return float(ops.spearman(predict(F, model.weights_), y))


def run(noise_levels=NOISE_LEVELS, seeds=range(5), n_stimuli: int = 256, n_features: int = 16,
        n_dims: int = 768, methods=("MLEM", "FR-RSA-I"), max_steps: int = 1000, test_size: float = 0.2,
        verbose: bool = True, embedding: str = "mds", ground_truth: str = "wishart") -> pd.DataFrame:
    """Run the grid noise_levels x seeds x methods (``embedding``, ``ground_truth``: see
    :func:`make_dataset`).

    Returns a DataFrame with one row per fit: method, noise, seed, frobenius (the 'invariant'
    error ||Q_hat - W_GT||_F, both unit norm), frobenius_authors (the 'authors' error of
    :func:`weight_error`, same fit), floor_authors (that error for a perfect recovery,
    :func:`perfect_recovery_error`), steps (steps to the best score; NaN for FR-RSA),
    test_spearman, seconds.
    """
    from sklearn.model_selection import train_test_split
    if len(methods) == 0:
        raise ValueError(f"methods must name at least one of {METHODS}; got {methods!r}.")
    check.finite_float(test_size, "test_size", 0.0, 1.0, low_open=True, high_open=True)
    for method in methods:
        _model(method, 0, 1, True)  # unknown names fail before any work
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}; got {embedding!r}.")
    if ground_truth not in GROUND_TRUTHS:
        raise ValueError(f"ground_truth must be one of {GROUND_TRUTHS}; got {ground_truth!r}.")
    rows = []
    grid = [(s, z, meth) for s in seeds for z in noise_levels for meth in methods]
    for seed, noise, method in progress(grid, desc="Simulation", verbose=verbose):
        data = make_dataset(n_stimuli, n_features, noise, n_dims, seed, embedding, ground_truth)
        train, test = train_test_split(np.arange(n_stimuli), test_size=test_size, random_state=seed)
        X, Y, distance = _fit_inputs(data, train, embedding)
        model = _model(method, seed, max_steps, fast_cv=True, distance=distance)
        start = time.perf_counter()
        with warnings.catch_warnings():  # correlated-feature / baseline-variance warnings are expected here
            warnings.simplefilter("ignore", UserWarning)
            model.fit(X, Y, feature_names=list(data["X"].columns))
        seconds = time.perf_counter() - start
        steps = int(np.argmax(model.history_)) + 1 if hasattr(model, "history_") else np.nan
        rows.append(dict(method=method, noise=noise, seed=seed,
                         frobenius=weight_error(model.weights_, data["W"], method, "invariant"),
                         frobenius_authors=weight_error(model.weights_, data["W"], method, "authors"),
                         floor_authors=perfect_recovery_error(data["W"], method, "authors"), steps=steps,
                         test_spearman=_test_spearman(model, *_fit_inputs(data, test, embedding)[:2]),
                         seconds=seconds))
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (noise, method) of frobenius (and frobenius_authors when
    present), steps, test_spearman, seconds."""
    cols = [c for c in ("frobenius", "frobenius_authors", "steps", "test_spearman", "seconds") if c in results]
    return results.groupby(["noise", "method"])[cols].agg(["mean", "std"])


def mlem_wins(results: pd.DataFrame, error: str = "invariant") -> pd.DataFrame:
    """Per noise level: is MLEM's mean weight error (``error``: 'invariant' or 'authors', see
    :func:`weight_error`) lower, and its mean steps fewer, than FR-RSA-I's?"""
    if error not in ERRORS:
        raise ValueError(f"error must be one of {ERRORS}; got {error!r}.")
    col = "frobenius" if error == "invariant" else "frobenius_authors"
    means = results.groupby(["noise", "method"])[[col, "steps"]].mean().unstack("method")
    return pd.DataFrame({"MLEM frobenius": means[col]["MLEM"],
                         "FR-RSA-I frobenius": means[col]["FR-RSA-I"],
                         "lower error": means[col]["MLEM"] < means[col]["FR-RSA-I"],
                         "MLEM steps": means["steps"]["MLEM"], "FR-RSA-I steps": means["steps"]["FR-RSA-I"],
                         "fewer steps": means["steps"]["MLEM"] < means["steps"]["FR-RSA-I"]})
