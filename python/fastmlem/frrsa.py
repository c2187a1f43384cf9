"""Classic feature-reweighted RSA (Kaniuth & Hebart 2022), the regression baseline of MLEM.

The neural RDM's upper triangle is regressed on per-feature distance columns (and optionally their
pairwise products) with fractional ridge or non-negative ridge regression. Cross-validation is
over stimuli, never over pairs: a pair is in the training set when both of its stimuli are, in the
test set when both are held out. An inner cross-validation on the training stimuli chooses the
ridge fraction; outer test correlations are averaged in Fisher z.

FR-RSA-I as the MLEM paper uses it (unconstrained interaction weights trained with MLEM's rank
loss) is ``MLEM(interactions=True, spd=False)``, not this class.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from sklearn.model_selection import RepeatedKFold
from ._progress import progress

from ._shared import pearson
from . import _validate as check
from . import ops
from .encoding import check_positive_int
from .mlem import PairwiseModel

_EIG_FLOOR = 1e-10  # eigenvalues below this fraction of the largest count as zero (collinear columns)


def _ridge_path(F, y, fractions, nonnegative):
    """Coefficients (len(fractions), q) and intercepts along a fractional ridge path.

    Fraction f is the ratio of the coefficient norm to the (minimum-norm) least-squares norm,
    so f = 1 is least squares and small f is strong shrinkage. The penalty alpha of each fraction
    is found on the unconstrained path; ``nonnegative`` then solves the same penalised problem
    with coefficients >= 0 (non-negative least squares on the Cholesky factor of F'F + alpha I).
    """
    mean_F, mean_y = F.mean(0), y.mean()
    Fc, yc = F - mean_F, y - mean_y
    G, b = Fc.T @ Fc, Fc.T @ yc
    s2, V = np.linalg.eigh(G)
    keep = s2 > _EIG_FLOOR * max(s2.max(), 1e-300)
    if not keep.any():  # every column constant within these pairs: predict the mean
        return np.zeros((len(fractions), F.shape[1])), np.full(len(fractions), mean_y)
    s2, V = s2[keep], V[:, keep]
    z = V.T @ b
    norm_ols = np.sqrt(np.sum((z / s2) ** 2))
    coefs = np.zeros((len(fractions), F.shape[1]))
    for k, f in enumerate(fractions):
        alpha = 0.0
        if f < 1 and norm_ols > 0:  # ||w(alpha)|| decreases in alpha: bisect on log alpha
            lo, hi = np.log(s2.min()) - 30, np.log(s2.max()) + 30
            for _ in range(80):
                mid = 0.5 * (lo + hi)
                if np.sqrt(np.sum((z / (s2 + np.exp(mid))) ** 2)) > f * norm_ols:
                    lo = mid
                else:
                    hi = mid
            alpha = np.exp(0.5 * (lo + hi))
        if nonnegative:
            R = np.linalg.cholesky(G + (alpha + _EIG_FLOOR * s2.max()) * np.eye(len(G))).T
            coefs[k] = nnls(R, np.linalg.solve(R.T, b))[0]
        else:
            coefs[k] = V @ (z / (s2 + alpha))
    return coefs, mean_y - coefs @ mean_F


def _pairs_within(stimuli, n, i, j):
    """Indices of the pairs (i, j) whose two stimuli both belong to ``stimuli``."""
    member = np.zeros(n, dtype=bool)
    member[stimuli] = True
    return np.flatnonzero(member[i] & member[j])


def _fisher_z(r):
    return np.arctanh(np.clip(r, -0.999999, 0.999999))


class FRRSA(PairwiseModel):
    """Feature-reweighted RSA with nested cross-validation over stimuli.

    Parameters
    ----------
    interactions : bool. Add the products d_a * d_b (a > b) to the per-feature columns.
    nonnegative : bool. Non-negative ridge (weights >= 0) instead of fractional ridge.
    fractions : sequence of floats in (0, 1], the fractional-ridge grid searched in the inner CV.
    n_outer_splits, n_outer_repeats, n_inner_splits, n_inner_repeats : the nested CV over stimuli
        (defaults 5 x 10 outer, 5 x 5 inner, as Kaniuth & Hebart).
    scoring : 'pearson' or 'spearman' between predicted and neural distances of held-out pairs.
    max_pairs : use every pair i < j up to this many, else this many sampled pairs.
    distance, nan_to_num, n_permutations, memory, verbose, random_state: as :class:`fastmlem.MLEM`.

    fit(X (n, m) features, Y (n, ...) representations) -> self. Fitted: ``coef_`` (q,) mean outer
    coefficients, ``intercept_``, ``weights_`` = coef_ / ||coef_|| (comparable with MLEM's),
    ``cv_scores_`` (outer folds,), ``cv_score_`` (Fisher-z mean, back-transformed), ``fractions_``
    chosen per outer fold. score() and get_weights() as MLEM (permutation importance).
    """

    def __init__(self, interactions=False, nonnegative=False, fractions=tuple(np.arange(1, 11) / 10),
                 n_outer_splits=5, n_outer_repeats=10, n_inner_splits=5, n_inner_repeats=5,
                 scoring="pearson", max_pairs=2_000_000, distance="euclidean", nan_to_num=0.0,
                 n_permutations=5, batch_size=None, memory="medium", verbose=False, random_seed=None,
                 random_state=None):
        self.interactions = interactions
        self.nonnegative = nonnegative
        self.fractions = fractions
        self.n_outer_splits = n_outer_splits
        self.n_outer_repeats = n_outer_repeats
        self.n_inner_splits = n_inner_splits
        self.n_inner_repeats = n_inner_repeats
        self.scoring = scoring
        self.max_pairs = max_pairs
        self.distance = distance
        self.nan_to_num = nan_to_num
        self.n_permutations = n_permutations
        self.batch_size = batch_size
        self.memory = memory
        self.verbose = verbose
        self.random_seed = random_seed
        self.random_state = random_state

    def _check_params(self, n):
        self._check_common()
        check.boolean(self.nonnegative, "nonnegative")
        try:
            fractions = np.asarray(self.fractions, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            fractions = np.array([np.nan])
        if fractions.size == 0 or not np.all((fractions > 0) & (fractions <= 1)):
            raise ValueError(f"fractions must be a non-empty sequence of values in (0, 1]; got {self.fractions!r}.")
        if self.scoring not in ("pearson", "spearman"):
            raise ValueError(f"scoring must be 'pearson' or 'spearman'; got {self.scoring!r}.")
        for name in ("n_outer_splits", "n_inner_splits"):
            check_positive_int(getattr(self, name), name, 2)
        for name in ("n_outer_repeats", "n_inner_repeats", "n_permutations", "max_pairs"):
            check_positive_int(getattr(self, name), name)
        # each outer and inner test fold needs >= 2 stimuli (one pair)
        smallest_inner = n * (1 - 1 / self.n_outer_splits) / self.n_inner_splits
        if smallest_inner < 2 or n // self.n_outer_splits < 2:
            raise ValueError(f"{n} stimuli are too few for {self.n_outer_splits} outer x {self.n_inner_splits} "
                             "inner folds (each held-out fold needs at least 2 stimuli); lower the splits.")
        return fractions

    def _score_pairs(self, pred, y):
        if self.scoring == "spearman":
            return float(ops.spearman(pred, y))
        return float(pearson(pred, y))

    def _cv_fraction(self, F, y, n, i, j, train, fractions, seed):
        """Fraction with the best mean Fisher-z test correlation over inner folds of ``train``."""
        z = np.zeros(len(fractions))
        inner = RepeatedKFold(n_splits=self.n_inner_splits, n_repeats=self.n_inner_repeats, random_state=seed)
        for fit_idx, val_idx in inner.split(train):
            fit_pairs, val_pairs = _pairs_within(train[fit_idx], n, i, j), _pairs_within(train[val_idx], n, i, j)
            coefs, icpts = _ridge_path(F[fit_pairs], y[fit_pairs], fractions, self.nonnegative)
            preds = F[val_pairs] @ coefs.T + icpts
            z += [_fisher_z(self._score_pairs(preds[:, k], y[val_pairs])) for k in range(len(fractions))]
        return fractions[int(np.argmax(z))]

    def fit(self, X, Y, feature_names=None):
        """Nested-CV feature-reweighted RSA. X: (n, m) features; Y: (n, ...) representations."""
        X_enc, names, Y_arr = self._data(X, Y, feature_names)
        n = X_enc.shape[0]
        fractions = self._check_params(n)
        q = X_enc.shape[-1] * (X_enc.shape[-1] + 1) // 2 if self.interactions else X_enc.shape[-1]
        check.check_memory(4 * ops.batch_bytes(min(n * (n - 1) // 2, self.max_pairs), q),
                           f"FR-RSA on {min(n * (n - 1) // 2, self.max_pairs):,} pairs x {q} columns", "lower max_pairs")
        self._set_inputs(X_enc, names, Y_arr)
        seed = self._seed()
        n_pairs = n * (n - 1) // 2
        if n_pairs <= self.max_pairs:
            i, j = ops.all_pairs(n)
        else:
            i, j = ops.sample_pairs(n, self.max_pairs, seed, 0)
            keep = i != j
            i, j = i[keep], j[keep]
        # Regress on distances of order 1: with Y near 1e154 the distances (a Gram matrix) and their
        # sums of squares overflow (NaN weights). The built-in distances are proportional to the
        # scale of Y (cosine: invariant), so Y is divided by its largest |value| and the
        # coefficients multiplied back; a callable's distances are rescaled after the fact.
        scale_Y = 1.0 if callable(self.distance) else float(np.abs(Y_arr).max()) or 1.0
        F, y = self._source(X_enc, Y_arr / scale_Y).rows(i, j)
        scale_y = float(np.abs(y).max()) or 1.0
        y = y / scale_y
        scale = scale_y * (1.0 if self.distance == "cosine" else scale_Y)
        outer = RepeatedKFold(n_splits=self.n_outer_splits, n_repeats=self.n_outer_repeats,
                              random_state=seed % 2**32)
        coefs, icpts, scores, chosen = [], [], [], []
        splits = list(outer.split(np.arange(n)))
        for k, (train, test) in enumerate(progress(splits, desc="FR-RSA outer folds", verbose=self.verbose)):
            f = self._cv_fraction(F, y, n, i, j, train, fractions, (seed + k) % 2**32)
            tr, te = _pairs_within(train, n, i, j), _pairs_within(test, n, i, j)
            c, b = _ridge_path(F[tr], y[tr], [f], self.nonnegative)
            coefs.append(c[0]); icpts.append(b[0]); chosen.append(f)
            scores.append(self._score_pairs(F[te] @ c[0] + b[0], y[te]))
        coef = np.where(self._constant_columns(), 0.0, np.mean(coefs, axis=0))
        norm = np.linalg.norm(coef)  # of the rescaled coefficients: coef_ itself may overflow a norm
        self.weights_ = coef / norm if norm > 0 else coef.copy()
        self.coef_ = coef * scale
        self.intercept_ = float(np.mean(icpts)) * scale
        self.cv_scores_ = np.array(scores)
        self.cv_score_ = float(np.tanh(np.mean(_fisher_z(self.cv_scores_))))
        self.fractions_ = np.array(chosen)
        self.batch_size_ = (min(len(i), 2**16) if self.batch_size is None
                            else check_positive_int(self.batch_size, "batch_size", 3))
        return self
