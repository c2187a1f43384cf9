"""BarycentricAlignment: one shared space for K models of the same stimuli."""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

from .._backend import get_array_module, to_numpy
from ..encoding import check_positive_int
from . import _agreement as agr
from ._solve import (GROUPS, SCALES, aligned_rows, best_group_element, fit_preprocessing,
                     random_group_elements, solve)
from ._validate import as_matrix, as_models

NULLS = ("shuffle", "rotation")


class BarycentricAlignment(BaseEstimator):
    """Align K models' representations of the same n stimuli to a common barycenter.

    Each model X_k (n, d_k) is centred (and optionally scaled), brought to a common dimension k
    (zero-padding or per-model PCA), then the nuisance symmetry is quotiented out by alternating
    R_k = argmin_{R in group} |Z_k R - B|_F and B = mean_k Z_k R_k until B stops changing.
    numpy inputs run on the CPU; cupy inputs run on the GPU (batched SVDs).  Inputs are never
    modified.

    Parameters
    ----------
    group : "orth" (rotations and reflections; orthogonal Procrustes by SVD), "perm" (unit
        permutations; linear assignment) or "identity" (no alignment: B is the plain mean).
    dim : "pad" (zero-pad every model to k = max d_k) or int k (PCA of each model to its top k
        components, k <= n; models with fewer than k units are zero-padded).
    center : bool, subtract each model's mean row.
    scale : None, "frobenius" (each centred model scaled to unit Frobenius norm, so models weigh
        equally) or "standardize" (each unit scaled to unit variance).
    init : "first" (B starts as the first model: the barycenter lives in its frame), "random"
        (B starts as mean_k Z_k Q_k with random group elements Q_k drawn from ``random_state``), or
        an (n, k) array.
    tol : stop when |B_new - B|_F / |B|_F < tol.
    max_iter : int, most alternating iterations (a ConvergenceWarning is raised if reached).
    random_state : None, int or numpy Generator, used by init="random".

    Attributes
    ----------
    model_names_ : list of K str.  stimuli_ : pandas.Index of the n stimuli.
    dim_ : int, the common dimension k.
    means_, scales_ : lists of K arrays, (d_k,) and () or (d_k,).
    projections_ : list of K arrays (d_k, k) (PCA axes), or None where a model was zero-padded.
    rotations_ : (K, k, k) group elements R_k.
    barycenter_ : (n, k).  aligned_ : (K, n, k), aligned_[m] = Z_m R_m.
    history_ : DataFrame (iteration, loss, rel_change), loss = (1/K) sum_k |Z_k R_k - B|_F^2.
    n_iter_ : int.  converged_ : bool.
    """

    def __init__(self, group="orth", dim="pad", center=True, scale=None, init="first",
                 tol=1e-6, max_iter=200, random_state=None):
        self.group = group
        self.dim = dim
        self.center = center
        self.scale = scale
        self.init = init
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def fit(self, models, y=None):
        """Fit the shared space.

        Parameters
        ----------
        models : list of K arrays (n, d_k), dict name -> array, or one (K, n, d) array (numpy or
            cupy; DataFrames allowed, the first one's index names the stimuli).  K >= 2.
        y : ignored.

        Returns
        -------
        self
        """
        arrays, names, stimuli = as_models(models)
        self._check_params()
        xp = get_array_module(*arrays)
        n = arrays[0].shape[0]
        pca = not isinstance(self.dim, str)
        k = self._common_dim(n) if pca else max(a.shape[1] for a in arrays)
        preps = [fit_preprocessing(a, name, center=self.center, scale=self.scale, k=k, pca=pca)
                 for a, name in zip(arrays, names)]
        self._Z = xp.empty((n, len(arrays), k), dtype=xp.float64)  # (n, K, k)
        for j, (prep, a) in enumerate(zip(preps, arrays)):
            self._Z[:, j] = prep.apply(a)
        self._preps, self.model_names_, self.stimuli_, self.dim_ = preps, names, stimuli, k
        R, B, history, converged = solve(self._Z, self.group, self._initial_barycenter(),
                                         tol=self.tol, max_iter=self.max_iter)
        if not converged:
            warnings.warn(f"barycentric alignment stopped after max_iter={self.max_iter} "
                          f"iterations with relative change {history[-1][1]:.2g} > tol={self.tol}; "
                          "raise max_iter or tol.", ConvergenceWarning, stacklevel=2)
        self.rotations_, self.barycenter_ = R, B
        self.aligned_ = aligned_rows(self._Z, R)
        self.history_ = pd.DataFrame(history, columns=["loss", "rel_change"])
        self.history_.insert(0, "iteration", np.arange(1, len(history) + 1))
        self.n_iter_, self.converged_ = len(history), converged
        return self

    def _check_params(self):
        if self.group not in GROUPS:
            raise ValueError(f"unknown group {self.group!r}; choose one of {GROUPS}.")
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; choose one of {SCALES}.")
        if isinstance(self.dim, str) and self.dim != "pad":
            raise ValueError(f"dim must be 'pad' or an int (PCA dimension); got {self.dim!r}.")
        if not (isinstance(self.tol, numbers.Real) and self.tol >= 0):
            raise ValueError(f"tol must be a number >= 0; got {self.tol!r}.")
        check_positive_int(self.max_iter, "max_iter")
        if not (isinstance(self.init, str) and self.init in ("first", "random")
                or hasattr(self.init, "shape")):
            raise ValueError(f"init must be 'first', 'random' or an (n, k) array; got {self.init!r}.")

    def _common_dim(self, n: int) -> int:
        k = check_positive_int(self.dim, "dim")
        if k > n:
            raise ValueError(f"dim={k} PCA components requested, but there are only n={n} stimuli "
                             f"and PCA keeps at most n; use dim <= {n} or dim='pad'.")
        return k

    def _initial_barycenter(self):
        n, K, k = self._Z.shape
        xp = get_array_module(self._Z)
        if isinstance(self.init, str) and self.init == "first":
            return self._Z[:, 0].copy()
        if isinstance(self.init, str):  # "random"
            Q = random_group_elements(self.group, K, k, np.random.default_rng(self.random_state), xp)
            return aligned_rows(self._Z, Q).mean(axis=0)
        B = as_matrix(self.init, "init", xp, n_units=k)
        if B.shape[0] != n:
            raise ValueError(f"init has {B.shape[0]} rows but the models have n={n} stimuli.")
        return B

    # ------------------------------------------------------------------ mapping
    @property
    def means_(self):
        return [p.mean for p in self._preps]

    @property
    def scales_(self):
        return [p.scale for p in self._preps]

    @property
    def projections_(self):
        return [p.projection for p in self._preps]

    def _check_fitted(self):
        if not hasattr(self, "barycenter_"):
            raise RuntimeError("this BarycentricAlignment is not fitted yet; call fit(models) first.")

    def _model_index(self, model) -> int:
        self._check_fitted()
        if isinstance(model, str):
            if model not in self.model_names_:
                raise ValueError(f"unknown model {model!r}; fitted models are {self.model_names_}.")
            return self.model_names_.index(model)
        K = len(self.model_names_)
        if isinstance(model, bool) or not isinstance(model, numbers.Integral) or not -K <= model < K:
            raise ValueError(f"model must be a name in {self.model_names_} or an index in "
                             f"0..{K - 1}; got {model!r}.")
        return int(model) % K

    def transform(self, X_new, model=0):
        """Map stimuli of one fitted model into the shared space.

        Parameters
        ----------
        X_new : (m, d_k) array (numpy or cupy) with the same units as that model's training data.
        model : int index or name of the model.

        Returns
        -------
        (m, k) array, ((X_new - mean_k) / scale_k) @ projection_k @ R_k.  For the training rows
        this equals ``aligned_[model]``.
        """
        j = self._model_index(model)
        prep = self._preps[j]
        xp = get_array_module(self.barycenter_)
        X = as_matrix(X_new, f"X_new for model {self.model_names_[j]!r}", xp, prep.mean.shape[0])
        return prep.apply(X, self.rotations_[j])

    def add_model(self, X, name=None):
        """Align one more model (n, d) of the same n stimuli to the fitted barycenter.

        Only the new model's mean, scale, projection and R are learnt; the barycenter and the
        other models stay as they are (refit to let the new model move the barycenter).
        Agreement statistics afterwards include the new model.

        Returns
        -------
        self
        """
        self._check_fitted()
        K = len(self.model_names_)
        name = f"model_{K}" if name is None else str(name)
        if name in self.model_names_:
            raise ValueError(f"a model named {name!r} is already fitted; pass another name.")
        xp = get_array_module(self.barycenter_)
        X = as_matrix(X, f"model {name!r}", xp)
        n, k = self.barycenter_.shape
        if X.shape[0] != n:
            raise ValueError(f"model {name!r} has {X.shape[0]} rows but the alignment was fitted on "
                             f"n={n} stimuli; add_model needs the same stimuli in the same order.")
        prep = fit_preprocessing(X, name, center=self.center, scale=self.scale, k=k,
                                 pca=not isinstance(self.dim, str))
        Z = prep.apply(X)
        R = best_group_element((Z.T @ self.barycenter_)[None], self.group)
        self._preps.append(prep)
        self.model_names_ = [*self.model_names_, name]
        self._Z = xp.concatenate([self._Z, Z[:, None]], axis=1)
        self.rotations_ = xp.concatenate([self.rotations_, R])
        self.aligned_ = xp.concatenate([self.aligned_, (Z @ R[0])[None]])
        return self

    # ------------------------------------------------------------------ agreement
    def stimulus_agreement(self, kind="cosine", metric="cosine"):
        """Per-stimulus agreement of the aligned models.

        Parameters
        ----------
        kind : "dispersion" (mean squared distance of the aligned rows to the barycenter; lower =
            more convergent), "cosine" (mean pairwise cosine of the aligned rows), or
            "identification" (fraction of ordered model pairs in which the stimulus's row in one
            model is nearest, by ``metric``, to its own row in the other among all n stimuli).
        metric : "cosine" or "euclidean" (identification only).

        Returns
        -------
        pandas Series (n,) indexed by stimulus, named ``kind``.
        """
        self._check_fitted()
        values = agr.agreement(self.aligned_, self.barycenter_, kind, metric)
        return pd.Series(to_numpy(values), index=self.stimuli_, name=kind)

    def rank_stimuli(self, kind="cosine", top=10, metric="cosine"):
        """The ``top`` most convergent and most divergent stimuli.

        Returns
        -------
        DataFrame (2 * top rows) with columns direction ("convergent" / "divergent"), rank
        (1 = most extreme), stimulus, kind and score.
        """
        top = check_positive_int(top, "top")
        scores = self.stimulus_agreement(kind, metric)
        order = scores.sort_values(ascending=not agr.HIGHER_IS_CONVERGENT[kind], kind="stable")
        parts = [(direction, s.iloc[:top]) for direction, s in
                 (("convergent", order), ("divergent", order.iloc[::-1]))]
        return pd.concat([pd.DataFrame({"direction": direction, "rank": np.arange(1, len(s) + 1),
                                        "stimulus": s.index, "kind": kind, "score": s.to_numpy()})
                          for direction, s in parts], ignore_index=True)

    def agreement_null(self, kind="cosine", n_null=100, null="shuffle", random_state=None,
                       metric="cosine", return_null=False):
        """Per-stimulus null distribution of the agreement, and one-sided p-values.

        null="shuffle": rows of every model but the first are shuffled (independently), breaking
            the stimulus correspondence, and the alignment is refitted each time (same group,
            tol and max_iter, starting from the first model); the null at row i keeps stimulus i
            of the first model.  Costs ``n_null`` fits.
        null="rotation": every model but the first is moved by a random group element (Haar
            rotation, or random permutation for group="perm") from its fitted position, with no
            refit: the agreement expected from representations that are not aligned.  Cheap.

        Returns
        -------
        DataFrame indexed by stimulus with columns observed, null_mean, null_std and p_value =
        (1 + #{null draws at least as convergent as observed}) / (1 + n_null).
        With ``return_null``: (that DataFrame, (n_null, n) array of the null draws).
        """
        agr.check_kind(kind, metric)
        n_null = check_positive_int(n_null, "n_null")
        if null not in NULLS:
            raise ValueError(f"unknown null {null!r}; choose one of {NULLS}.")
        observed = self.stimulus_agreement(kind, metric)
        rng = np.random.default_rng(random_state)
        xp = get_array_module(self._Z)
        n, K, k = self._Z.shape
        draws = np.empty((n_null, n))
        for t in range(n_null):
            if null == "shuffle":
                perms = [np.arange(n)] + [rng.permutation(n) for _ in range(K - 1)]
                Z = xp.stack([self._Z[xp.asarray(p), j] for j, p in enumerate(perms)], axis=1)
                R, B, _, _ = solve(Z, self.group, Z[:, 0].copy(), tol=self.tol,
                                   max_iter=self.max_iter)
                A = aligned_rows(Z, R)
            else:
                Q = random_group_elements(self.group, K, k, rng, xp)
                Q[0] = xp.eye(k)
                A = self.aligned_ @ Q
                B = A.mean(axis=0)
            draws[t] = to_numpy(agr.agreement(A, B, kind, metric))
        obs = observed.to_numpy()
        as_good = draws >= obs if agr.HIGHER_IS_CONVERGENT[kind] else draws <= obs
        table = pd.DataFrame({"observed": obs, "null_mean": draws.mean(axis=0),
                              "null_std": draws.std(axis=0, ddof=1) if n_null > 1 else np.nan,
                              "p_value": (1 + as_good.sum(axis=0)) / (1 + n_null)},
                             index=self.stimuli_)
        return (table, draws) if return_null else table

    def model_similarity(self):
        """(K, K) DataFrame of cosine similarities <A_a, A_b>_F / (|A_a| |A_b|) of aligned models."""
        self._check_fitted()
        xp = get_array_module(self.aligned_)
        K = self.aligned_.shape[0]
        flat = self.aligned_.reshape(K, -1)
        norms = xp.linalg.norm(flat, axis=1)
        norms = xp.where(norms > 0, norms, 1.0)
        sim = to_numpy((flat @ flat.T) / (norms[:, None] * norms[None, :]))
        return pd.DataFrame(sim, index=self.model_names_, columns=self.model_names_)

    def summary(self):
        """Set-level summary as a pandas Series.

        n_models, n_stimuli, dim, n_iter, converged, loss (mean squared distance of a model to the
        barycenter, summed over stimuli), barycenter_r2 (1 - sum_k |A_k - B|^2 / sum_k |A_k -
        column means|^2: share of the aligned variance the barycenter explains), mean_dispersion,
        mean_cosine (mean per-stimulus pairwise cosine) and mean_model_similarity (mean
        off-diagonal of ``model_similarity()``).
        """
        self._check_fitted()
        xp = get_array_module(self.aligned_)
        A, B = self.aligned_, self.barycenter_
        K, n, k = A.shape
        resid = float(((A - B[None]) ** 2).sum())
        total = float(((A - A.mean(axis=1, keepdims=True)) ** 2).sum())
        sim = self.model_similarity().to_numpy()
        return pd.Series({
            "n_models": K, "n_stimuli": n, "dim": k, "n_iter": self.n_iter_,
            "converged": self.converged_, "loss": resid / K,
            "barycenter_r2": 1.0 - resid / total if total > 0 else np.nan,
            "mean_dispersion": float(agr.agreement(A, B, "dispersion").mean()),
            "mean_cosine": float(xp.mean(agr.mean_pairwise_cosine(A))),
            "mean_model_similarity": float(sim[~np.eye(K, dtype=bool)].mean()),
        })
