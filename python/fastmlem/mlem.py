"""MLEM: Metric Learning Encoding Models (Jalouzot et al.), drop-in for the authors' ``mlem.MLEM``.

Learns weights over feature distances (a positive vector, or an SPD matrix with interactions) so
that predicted distances rank-correlate with neural distances, then measures permutation feature
importance. Differences from the reference on purpose: the truly best weights are kept, exact
Spearman uses average ranks for ties, pandas >= 3 string columns work, and ``spd=False`` gives
the paper's FR-RSA-I.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.spatial.distance import squareform
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from . import numpy_backend as nb
from . import _shared
from . import ops
from ._backend import require_cuda, to_numpy
from .encoding import check_positive_int, encode_features, interaction_names, is_torch, prepare_representations

_MAX_RDM_PAIRS = 50_000_000  # precompute the condensed neural RDM when it has at most this many pairs


def _condensed_rdm(Y, metric):
    """Condensed neural RDM (n(n-1)/2,), order of all_pairs: by Gram products for euclidean and
    cosine (_shared.condensed_rdm_gram, the definition the GPU shares), else the pairwise kernel."""
    if metric not in ("euclidean", "cosine"):
        return ops.neural_distances(Y, *nb.all_pairs(Y.shape[0]), metric)
    return _shared.condensed_rdm_gram(Y, metric)


_MEMORY_BYTES = {"low": 2**28, "medium": 2**30, "high": 2**32,  # per full batch / importance chunk
                 "auto": 2**30}  # the reference README's default name; its code runs it as 'medium'


def pair_rows(X_enc, Y, distance, interactions, nan_to_num, gpu=False):
    """Predictor rows and neural distances of pairs of stimuli, the one place both are computed.

    X_enc: (n, m) encoded features (or (n, n, m) when precomputed); Y: (n, p) representations
    (or (n, n) when precomputed). Returns rows(i, j) -> (F (B, q), y (B,) raw neural distances)
    for int64 index arrays i, j (B,). The condensed neural RDM is computed once when it fits.
    With ``gpu`` everything lives on the GPU (cupy arrays, fastmlem.cuda_ops kernels).
    The function carries what the training loop needs: ``rows.rdm`` (the condensed RDM or None),
    ``rows.X`` (features on the device), ``rows.xp`` (numpy or cupy), ``rows.sample_pairs`` and
    ``rows.all_pairs`` (on the device).
    """
    n = X_enc.shape[0]
    precomputed = distance == "precomputed"
    small = not callable(distance) and n * (n - 1) // 2 <= _MAX_RDM_PAIRS
    if gpu:
        from . import cuda_ops as kernels
        xp, _ = require_cuda()
        X_enc, Y = xp.asarray(X_enc), xp.asarray(Y)
        condensed, lookup, gather = kernels.condensed_rdm, kernels.rdm_lookup, kernels.neural_distances
        sample, every_pair = kernels.sample_pairs, kernels.all_pairs
    else:
        xp, kernels = np, ops
        condensed, lookup, gather, sample, every_pair = _condensed_rdm, nb.rdm_lookup, ops.neural_distances, \
            ops.sample_pairs, nb.all_pairs
    features = kernels.feature_distances_precomputed if precomputed else kernels.feature_distances
    if precomputed:  # the upper triangle of the (symmetric, checked) matrix that is already in memory
        D = squareform(Y, checks=False).astype(np.float64) if xp is np else \
            Y[xp.triu(xp.ones((n, n), dtype=bool), 1)].astype(xp.float64)
    else:
        D = condensed(Y, distance) if small else None

    def rows(i, j):
        F = features(X_enc, i, j, interactions, nan_to_num)
        if D is not None:
            y = lookup(D, n, i, j)
        elif callable(distance):
            y = xp.asarray(distance(Y[i], Y[j]), dtype=xp.float64)
            if y.shape != (len(i),):
                raise ValueError(f"the distance callable must return one value per pair, shape ({len(i)},); "
                                 f"got shape {y.shape}.")
        else:
            y = gather(Y, i, j, distance)
        return F, xp.nan_to_num(y, nan=nan_to_num)
    rows.rdm, rows.X, rows.xp, rows.sample_pairs, rows.all_pairs = D, X_enc, xp, sample, every_pair
    return rows


def _torch_distance(distance, torch_inputs: bool):
    """A distance callable that takes torch tensors, as in the reference, when the representations
    were torch tensors or the callable is torch's (defined in torch, or its code names ``torch``);
    the rows are handed over without a copy and the result is detached. Else ``distance``."""
    code = getattr(distance, "__code__", None)
    code_names = getattr(code, "co_names", ()) + getattr(code, "co_freevars", ())
    torch_function = (getattr(distance, "__module__", None) or "").split(".")[0] == "torch" or "torch" in code_names
    if not callable(distance) or not (torch_inputs or torch_function):
        return distance
    import torch

    def call(a, b):
        out = distance(torch.as_tensor(a), torch.as_tensor(b))
        return out.detach() if isinstance(out, torch.Tensor) else out
    return call


class PairwiseModel(BaseEstimator):
    """What MLEM and FRRSA share: input checks, pair rows, the weights table and permutation importance.

    Subclasses set ``weights_`` (q,), ``feature_names_in_``, ``n_features_in_``, ``X_``, ``Y_`` and
    ``batch_size_`` in ``fit`` and have the parameters interactions, distance, nan_to_num,
    n_permutations, memory, verbose, random_seed/random_state.
    """

    def _seed(self):
        seed = self.random_state if self.random_state is not None else self.random_seed
        if isinstance(seed, (np.random.RandomState, np.random.Generator)):  # scikit-learn style
            if not hasattr(self, "_drawn_seed"):  # drawn once, so fit and score agree
                self._drawn_seed = int(seed.integers(2**63) if isinstance(seed, np.random.Generator)
                                       else seed.randint(2**31))
            seed = self._drawn_seed
        return int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])

    def _check_distance(self):
        if not (callable(self.distance) or self.distance in nb.METRICS + ("precomputed",)):
            raise ValueError(f"unknown distance {self.distance!r}; use one of "
                             f"{nb.METRICS + ('precomputed',)} or a callable (Y1, Y2) -> (B,).")
        if self.memory not in _MEMORY_BYTES:
            raise ValueError(f"memory must be one of {tuple(_MEMORY_BYTES)}; got {self.memory!r}.")

    def _on_gpu(self):
        return str(getattr(self, "device", "cpu")).startswith("cuda")

    def _data(self, X, Y, feature_names=None, new_stimuli=False):
        """Encoded features, names, checked representations. ``new_stimuli``: encode with the
        training scale and categories (score on held-out data)."""
        precomputed = self.distance == "precomputed"
        encoding = getattr(self, "encoding_", None) if new_stimuli else None
        X_enc, names, spec = encode_features(X, feature_names, precomputed=precomputed, encoding=encoding,
                                             return_encoding=True)
        if not new_stimuli:
            self.encoding_ = spec
        self._torch_inputs = is_torch(Y)  # a distance callable then gets torch tensors
        Y_arr = prepare_representations(Y, X_enc.shape[0], precomputed=precomputed, allow_gpu=self._on_gpu())
        return X_enc, names, Y_arr

    def _rows(self, X_enc, Y):
        distance = _torch_distance(self.distance, getattr(self, "_torch_inputs", False))
        return pair_rows(X_enc, Y, distance, self.interactions, self.nan_to_num, self._on_gpu())

    def _set_inputs(self, X_enc, names, Y_arr):
        self.feature_names_in_ = np.array(names, dtype=object)
        self.n_features_in_ = X_enc.shape[-1]
        self.X_, self.Y_ = X_enc, Y_arr

    def _check_fitted(self):
        if not hasattr(self, "weights_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(X, Y) before score() or "
                               "get_weights().")

    def _column_names(self):
        names = list(self.feature_names_in_)
        return interaction_names(names) if self.interactions else names

    def get_weights(self):
        """Learned weights: DataFrame (m, 1) 'Weight', or (m, m) lower triangle with interactions."""
        self._check_fitted()
        names = list(self.feature_names_in_)
        if not self.interactions:
            return pd.DataFrame(self.weights_, index=names, columns=["Weight"])
        W = np.full((len(names),) * 2, np.nan)
        W[np.tril_indices(len(names))] = self.weights_
        return pd.DataFrame(W, index=names, columns=names)

    def _permutation_spearman(self, rows, n, size, q, seed, perm_seed):
        """(base, permuted) Spearman of the q * n_permutations importance tasks, composed from
        array kernels (the twin of ops.permutation_importance, for every device and distance)."""
        xp, P, w = rows.xp, self.n_permutations, rows.xp.asarray(self.weights_)
        chunk = {"low": 1, "medium": P, "auto": P,
                 "high": max(1, _MEMORY_BYTES["high"] // (3 * 8 * size))}[self.memory]
        base, permuted = np.empty(q * P), np.empty(q * P)
        bar = tqdm(total=q * P, desc="Permutation importance", disable=not self.verbose)
        for start in range(0, q * P, chunk):
            preds, moved, ys = [], [], []
            for t in range(start, min(start + chunk, q * P)):
                F, y = rows(*rows.sample_pairs(n, size, seed, 2**32 + t))
                perm = xp.asarray(_shared.random_permutations(size, 1, perm_seed, t)[0])
                preds.append(nb.predict(F, w))
                moved.append(nb.predict(nb.permuted_rows(F, t // P, perm), w))
                ys.append(y)
            b, p = ops.permutation_spearman(xp.stack(preds), xp.stack(moved), xp.stack(ys))
            base[start:start + len(ys)], permuted[start:start + len(ys)] = to_numpy(b), to_numpy(p)
            bar.update(len(ys))
        bar.close()
        return base, permuted

    def score(self, X=None, Y=None, warning_threshold=0.05, batch_size=None, tidy=False):
        """Permutation feature importance with exact Spearman (average ranks for ties).

        For each predictor column and each of ``n_permutations``: a fresh batch of pairs, its
        baseline Spearman, and the drop when that column is permuted across pairs. The neural
        distances of a batch are ranked once; only the permuted predictions are re-ranked.
        With the condensed RDM on the CPU the whole loop is one C++ call (OpenMP over tasks);
        otherwise ``memory`` sets how many batches are ranked together ('low': one, 'medium': one
        column's permutations, 'high': as many as fit in 4 GiB).
        Returns (importances DataFrame (n_permutations, q), Series 'spearman' of the q * n_permutations
        baselines), or with ``tidy=True`` one long DataFrame (feature, permutation, importance, baseline).
        """
        self._check_fitted()
        self._check_distance()
        if (X is None) != (Y is None):
            raise ValueError("give both X and Y, or neither (then the training data are used).")
        if X is None:
            X_enc, Y_arr = self.X_, self.Y_
        else:
            X_enc, _, Y_arr = self._data(X, Y, new_stimuli=True)
            if X_enc.shape[-1] != self.n_features_in_:
                raise ValueError(f"X has {X_enc.shape[-1]} features; the model was fitted on {self.n_features_in_}.")
        size = check_positive_int(self.batch_size_ if batch_size is None else batch_size, "batch_size", 3)
        rows = self._rows(X_enc, Y_arr)
        n, cols, P = X_enc.shape[0], self._column_names(), self.n_permutations
        seed, perm_seed = self._seed(), (self._seed() + 1) % 2**64
        if rows.rdm is not None and rows.xp is np:  # the whole loop in C++
            base, permuted = ops.permutation_importance(X_enc, rows.rdm, self.weights_, self.interactions,
                                                        self.nan_to_num, size, seed, 2**32, perm_seed, P)
        else:
            base, permuted = self._permutation_spearman(rows, n, size, len(cols), seed, perm_seed)
        imp = (base - permuted).reshape(len(cols), P)
        baseline = pd.Series(base, name="spearman")
        if baseline.std() > warning_threshold:
            warnings.warn(f"high variability of the baseline score between batches (std={baseline.std():.3f} > "
                          f"{warning_threshold}); increase batch_size or lower threshold.", UserWarning)
        if tidy:
            return pd.DataFrame({"feature": np.repeat(cols, P), "permutation": np.tile(np.arange(P), len(cols)),
                                 "importance": imp.ravel(), "baseline": base})
        return pd.DataFrame(imp.T, columns=cols), baseline


class MLEM(PairwiseModel):
    """Metric Learning Encoding Model with permutation feature importance.

    Parameters follow the reference package; additions: ``spd`` (False: unconstrained weights,
    FR-RSA-I with interactions), ``spd_form`` (with interactions: 'reference' = the package's
    prediction sum_{a>=b} W_ab d_a d_b, i.e. the quadratic form (W + diag W)/2; 'quadratic' = the
    paper's d'W d with W itself SPD; ``weights_`` are the column coefficients either way and
    ``get_weights()`` shows the SPD matrix W), ``soft_rank_strength`` (1.0 = reference, where the
    loss equals plain Pearson; 'auto' = per vector, the largest strength whose soft ranks
    correlate >= 0.999 with the hard ranks, so the loss tracks Spearman),
    ``soft_rank_regularization``, ``random_state`` (alias of ``random_seed``). The reference's
    ``memory='auto'`` runs as 'medium'; its attribute names ``feature_names`` and
    ``batch_size_fit_`` are properties here.

    fit(X (n, m) features, Y (n, ...) representations) -> self
    score(X=None, Y=None) -> (importances DataFrame (n_permutations, q), baseline Series)
    get_weights() -> DataFrame (m, 1) or (m, m) lower triangle with interactions.
    """

    def __init__(self, interactions=False, n_permutations=5, distance="euclidean", nan_to_num=0.0,
                 batch_size=None, n_trials=16, threshold=0.01, factor=1.2, batch_size_min=256,
                 batch_size_max=2**20, max_steps=1000, lr=0.1, weight_decay=0.0, patience=50,
                 device="cpu", verbose=False, memory="medium", random_seed=None,
                 corr_warning_threshold=0.5, spd=True, soft_rank_strength=1.0,
                 soft_rank_regularization="l2", random_state=None, spd_form="reference"):
        self.interactions = interactions
        self.n_permutations = n_permutations
        self.distance = distance
        self.nan_to_num = nan_to_num
        self.batch_size = batch_size
        self.n_trials = n_trials
        self.threshold = threshold
        self.factor = factor
        self.batch_size_min = batch_size_min
        self.batch_size_max = batch_size_max
        self.max_steps = max_steps
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.device = device
        self.verbose = verbose
        self.memory = memory
        self.random_seed = random_seed
        self.corr_warning_threshold = corr_warning_threshold
        self.spd = spd
        self.soft_rank_strength = soft_rank_strength
        self.soft_rank_regularization = soft_rank_regularization
        self.random_state = random_state
        self.spd_form = spd_form

    def _kind(self):
        if self.spd_form not in ("reference", "quadratic"):
            raise ValueError(f"spd_form must be 'reference' or 'quadratic'; got {self.spd_form!r}.")
        if not self.spd:
            return "free"
        if not self.interactions:
            return "diag"
        return "spd" if self.spd_form == "reference" else "spd_quadratic"

    def _check_params(self):
        if self.device != "cpu" and not str(self.device).startswith("cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda'; got {self.device!r}.")
        if self._on_gpu():
            cp, _ = require_cuda()
            index = str(self.device).partition(":")[2]
            if index and not index.isdigit():
                raise ValueError(f"device must be 'cuda' or 'cuda:<index>'; got {self.device!r}.")
            cp.cuda.Device(int(index) if index else 0).use()
        self._check_distance()
        check_positive_int(self.max_steps, "max_steps")
        check_positive_int(self.n_permutations, "n_permutations")
        if not self.factor > 1:
            raise ValueError(f"factor must be > 1; got {self.factor}.")
        check_positive_int(self.n_trials, "n_trials", 2)
        check_positive_int(self.batch_size_min, "batch_size_min", 3)
        if check_positive_int(self.batch_size_max, "batch_size_max", 3) < self.batch_size_min:
            raise ValueError(f"batch_size_max ({self.batch_size_max}) must be >= batch_size_min "
                             f"({self.batch_size_min}).")
        if not self.threshold > 0 or not self.lr > 0:
            raise ValueError(f"threshold and lr must be positive; got {self.threshold} and {self.lr}.")
        check_positive_int(self.patience, "patience")

    def _train_step(self, rows, n):
        """step(stream, w (q,), lo, hi) -> (score, grad_w (q,), lo, hi), host floats and numpy.

        The objective of ops.rank_loss_grad on batch ``stream``, with the running min-max of the
        raw neural distances. One fused call (C++ or CUDA) when the condensed RDM is precomputed;
        otherwise rows are drawn (or all pairs reused with batch_size='all') and the objective is
        composed. On the GPU, one small device-to-host copy per step (score, lo, hi, grad_w) feeds
        the early stopping; everything else stays on the device.
        """
        xp, seed = rows.xp, self._seed()
        strength, regularization = self.soft_rank_strength, self.soft_rank_regularization
        if rows.rdm is not None and self.batch_size != "all":
            fused = ops.mlem_step(rows.X, rows.rdm, self.interactions, self.nan_to_num, self.batch_size_, seed,
                                  strength, regularization)
            if xp is np:
                return fused

            def gpu_step(stream, w, lo, hi):
                score, grad, lo, hi = fused(stream, xp.asarray(w), lo, hi)
                host = to_numpy(xp.concatenate([xp.stack([score, xp.asarray(lo), xp.asarray(hi)]).astype(xp.float64),
                                                grad]))
                return float(host[0]), host[3:], float(host[1]), float(host[2])
            return gpu_step

        if self.batch_size == "all":
            full = rows(*rows.all_pairs(n))  # every pair i < j, computed once
            batch = lambda stream: full  # noqa: E731
        else:
            batch = lambda stream: rows(*rows.sample_pairs(n, self.batch_size_, seed, stream))  # noqa: E731

        def composed_step(stream, w, lo, hi):
            F, y = batch(stream)
            lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))  # running min-max, as the reference
            score, grad = ops.rank_loss_grad(F, xp.asarray(w), ((y - lo) / (hi - lo + 1e-8)) ** 2, strength,
                                             regularization)
            return float(score), to_numpy(grad), lo, hi
        return composed_step

    # ------------------------------------------------------------------ API
    def get_weights(self):
        """Learned weights: DataFrame (m, 1) 'Weight', or (m, m) lower triangle of the SPD matrix W
        with interactions (with spd_form='quadratic' W is the quadratic form, and the coefficient
        of the column d_a d_b, a > b, is 2 W_ab)."""
        table = super().get_weights()
        if self.interactions and self._kind() == "spd_quadratic":
            table = table / (2.0 - np.eye(len(table)))
        return table

    def estimate_batch_size(self, X, feature_names=None):
        """Smallest batch (pairs) whose feature-distance correlations are stable across trials."""
        X_enc, _ = encode_features(X, feature_names, precomputed=self.distance == "precomputed")
        return self._estimate_batch_size(X_enc)

    def _estimate_batch_size(self, X_enc):
        m, n = X_enc.shape[-1], X_enc.shape[0]
        if m < 2:
            return int(self.batch_size_min)
        seed, stream = self._seed(), 10**9
        a, b = np.triu_indices(m, 1)
        size = int(self.batch_size_min)
        features = ops.feature_distances_precomputed if X_enc.ndim == 3 else ops.feature_distances
        while size < self.batch_size_max:
            stream += 1
            i, j = ops.sample_pairs(n, size * self.n_trials, seed, stream)
            F = features(X_enc, i, j, False, self.nan_to_num)
            F = F.reshape(self.n_trials, size, m)
            mean = np.ones(size) @ F / size  # (trials, m); all trials' correlations at once, by BLAS
            cov = np.transpose(F, (0, 2, 1)) @ F / size - mean[:, :, None] * mean[:, None, :]
            sd = np.sqrt(np.einsum("tii->ti", cov))
            with np.errstate(invalid="ignore", divide="ignore"):  # constant column in a batch -> 0
                corr = np.nan_to_num((cov / (sd[:, :, None] * sd[:, None, :]))[:, a, b])
            if corr.std(0).max() < self.threshold:
                break
            size = int(size * self.factor)
        if np.abs(corr.mean(0)).max() > self.corr_warning_threshold:
            warnings.warn(f"largest absolute correlation between feature distances is "
                          f"{np.abs(corr.mean(0)).max():.2g} > {self.corr_warning_threshold}: be cautious "
                          "interpreting feature importance; consider balancing the features.", UserWarning)
        if size >= self.batch_size_max:
            warnings.warn(f"batch_size_max ({self.batch_size_max}) reached while estimating the batch size.",
                          UserWarning)
            size = int(self.batch_size_max)
        return size

    def fit(self, X, Y, feature_names=None):
        """Learn the metric. X: (n, m) features (DataFrame or array); Y: (n, ...) representations."""
        self._check_params()
        X_enc, names, Y_arr = self._data(X, Y, feature_names)
        self._set_inputs(X_enc, names, Y_arr)
        n, m = X_enc.shape[0], X_enc.shape[-1]
        kind = self._kind()
        q = m * (m + 1) // 2 if self.interactions else m
        n_pairs = n * (n - 1) // 2
        if self.batch_size == "all" and n_pairs * (q + 4) * 8 > _MEMORY_BYTES[self.memory]:
            raise ValueError(f"batch_size='all' needs {n_pairs:,} pairs x {q} columns "
                             f"({n_pairs * (q + 4) * 8 / 2**30:.1f} GiB), more than memory={self.memory!r} "
                             "allows; give an integer batch_size, or memory='high'.")
        if self.batch_size == "all":
            self.batch_size_ = n_pairs
        else:
            self.batch_size_ = (self._estimate_batch_size(X_enc) if self.batch_size is None
                                else check_positive_int(self.batch_size, "batch_size", 3))
        train_step = self._train_step(self._rows(X_enc, Y_arr), n)
        rng = np.random.default_rng(self._seed())
        params = rng.uniform(0, 1, q) if kind == "diag" else rng.uniform(-1, 1, q)
        mom, vel = np.zeros(q), np.zeros(q)
        best, best_params, since_best, lo, hi = -np.inf, params.copy(), 0, np.inf, -np.inf
        history = []
        bar = tqdm(range(self.max_steps), desc=f"Fitting MLEM (batch {self.batch_size_})", disable=not self.verbose)
        for step in bar:
            score, grad_w, lo, hi = train_step(step, _shared.weights(params, m, kind), lo, hi)
            grad = _shared.weights_vjp(params, m, kind, grad_w)
            history.append(score)
            if score > best:
                best, best_params, since_best = score, params.copy(), 0  # a copy: the truly best weights
            else:
                since_best += 1
            if since_best >= self.patience:
                break
            # AdamW, maximising
            t = step + 1
            params = params * (1 - self.lr * self.weight_decay)
            mom = 0.9 * mom + 0.1 * (-grad)
            vel = 0.999 * vel + 0.001 * grad * grad
            params = params - self.lr * (mom / (1 - 0.9 ** t)) / (np.sqrt(vel / (1 - 0.999 ** t)) + 1e-8)
            bar.set_postfix(score=f"{best:.4f}")
        self.params_ = best_params
        self.weights_ = _shared.weights(best_params, m, kind)
        self.best_score_ = float(best)
        self.n_steps_ = len(history)
        self.history_ = np.array(history)
        return self

    # ------------------------------------------------- the reference's attribute names
    @property
    def feature_names(self):
        """The reference's name for the feature names: list of str (None before fit)."""
        return list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else None

    @property
    def batch_size_fit_(self):
        """The reference's name for ``batch_size_``, the batch size used by fit (None before fit)."""
        return getattr(self, "batch_size_", None)

    @property
    def model_(self):
        raise AttributeError("fastmlem's MLEM holds no torch model (the reference's model_): the learned weights "
                             "are weights_ (column coefficients) and get_weights().")

    @property
    def rng_(self):
        raise AttributeError("fastmlem's MLEM holds no torch Generator (the reference's rng_): its random streams "
                             "are counter-based and derived from random_state / random_seed.")
