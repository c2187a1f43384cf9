"""MLEM: Metric Learning Encoding Models (Jalouzot et al.), drop-in for the authors' ``mlem.MLEM``.

Learns weights over feature distances (a positive vector, or an SPD matrix with interactions) so
that predicted distances rank-correlate with neural distances, then measures permutation feature
importance. Differences from the reference on purpose: the weights are averaged over the last
steps (``weights_from``), exact Spearman uses average ranks for ties, pandas >= 3 string columns
work, and ``spd=False`` gives the paper's FR-RSA-I.
"""
from __future__ import annotations

import collections
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from ._progress import progress

from . import _shared
from . import _validate as check
from . import ops
from ._backend import METRICS, require_cuda, to_numpy
from .solver import AdamW, EarlyStopping
from .encoding import check_positive_int, constant_features, encode_features, interaction_names, is_torch, \
    prepare_representations

_MEMORY_BYTES = {"low": 2**28, "medium": 2**30, "high": 2**32,  # RDM / full batch / importance chunk budget
                 "auto": 2**30}  # the reference README's default name; its code runs it as 'medium'

# Cost model of the two ways to get neural distances (rates measured on a 2-core x86 machine;
# only their ratios matter): BLAS GEMM throughput for the RDM, bandwidth of random row gathers
# (higher while Y fits in the last-level cache), and one cache miss per RDM look-up.
_GEMM_FLOPS = {4: 6e10, 8: 3e10}       # float32 / float64 Gram blocks + the condensed pass + first touch
_GATHER_BYTES_PER_S = (2.5e10, 8e9)    # Y cache-resident (< _CACHE_BYTES) / from memory
_CACHE_BYTES = 2**25
_LOOKUP_SECONDS = 1e-8


def use_rdm(n: int, h: int, itemsize: int, metric: str, expected_pairs: int, memory_bytes: int) -> bool:
    """Whether to build the condensed neural RDM once rather than gather two rows of Y per pair.

    n stimuli of h values of ``itemsize`` bytes; ``expected_pairs``: pairs the fit and the
    importance batches will draw; the RDM (n(n-1)/2 float64) and its build copy of Y must fit in
    ``memory_bytes``. Compares the RDM's build (GEMM for euclidean/cosine, a pass over all pairs
    otherwise) plus look-ups with the gathers it saves.
    """
    n_pairs = n * (n - 1) // 2
    if n_pairs * 8 + n * h * 8 > memory_bytes:
        return False
    bandwidth = _GATHER_BYTES_PER_S[0 if n * h * itemsize <= _CACHE_BYTES else 1]
    gather_seconds = expected_pairs * 2 * h * itemsize / bandwidth
    if metric in ("euclidean", "cosine"):
        work = 4 if itemsize < 8 and metric == "euclidean" else 8
        build_seconds = n_pairs * h * 2 / _GEMM_FLOPS[work]
    else:  # every pair once, rows streamed from cache block by block
        build_seconds = n_pairs * 2 * h * itemsize / _GATHER_BYTES_PER_S[0]
    return build_seconds + expected_pairs * _LOOKUP_SECONDS < gather_seconds


class PairSource:
    """Predictor rows and neural targets of pairs of stimuli: the one place both are computed.

    Parameters
    ----------
    X_enc : (n, m) encoded features, or (n, n, m) per-feature distances (precomputed).
    Y : (n, p) representations (float16/32/64), or (n, n) neural distances when precomputed.
    distance : metric name, 'precomputed', or a callable (Y1 (B, p), Y2 (B, p)) -> (B,).
    interactions, nan_to_num : as MLEM.
    device : 'cpu' or 'cuda[:k]' (arrays are moved there once).
    rdm : the condensed neural RDM (n(n-1)/2,) to reuse, True to build it, None to gather rows.

    Attributes
    ----------
    kernels : the backend module (fastmlem.ops or fastmlem.cuda_ops); xp : numpy or cupy.
    rdm : condensed RDM or None; targets : what the fused kernels read (rdm, else Y), None for a
    callable distance; fused : whether the fused kernels apply (not a callable distance).
    """

    def __init__(self, X_enc, Y, distance, interactions, nan_to_num, device="cpu", rdm=None):
        self.kernels, self.xp = backend(device)
        self.X, self.Y = self.xp.asarray(X_enc), self.xp.asarray(Y)
        self.n, self.distance, self.interactions, self.nan_to_num = X_enc.shape[0], distance, interactions, nan_to_num
        self.fused = not callable(distance)
        if distance == "precomputed":  # the upper triangle of the (symmetric, checked) matrix in memory
            n = self.n
            self.rdm = self.Y[self.xp.triu_indices(n, 1)].astype(self.xp.float64)
        elif rdm is True and self.fused:
            self.rdm = self.kernels.condensed_rdm(self.Y, distance)
        else:
            self.rdm = rdm if self.fused else None
        self.metric = "euclidean" if distance == "precomputed" or not self.fused else distance
        self.targets = (self.rdm if self.rdm is not None else self.Y) if self.fused else None

    def sample(self, size, seed, stream):
        """Pairs (i, j) of batch ``stream``: sample_pairs(n, size, seed, stream) on the device."""
        return self.kernels.sample_pairs(self.n, size, seed, stream)

    def all_pairs(self):
        """Every pair i < j in condensed order, on the device."""
        return self.kernels.all_pairs(self.n)

    def rows(self, i, j):
        """(F (B, q) predictor rows, y (B,) raw neural distances, NaN -> nan_to_num) of pairs (i, j)."""
        k, xp = self.kernels, self.xp
        features = k.feature_distances_precomputed if self.X.ndim == 3 else k.feature_distances
        F = features(self.X, i, j, self.interactions, self.nan_to_num)
        if self.rdm is not None:
            y = k.rdm_lookup(self.rdm, self.n, i, j)
        elif not self.fused:
            y = xp.asarray(self.distance(self.Y[i], self.Y[j]), dtype=xp.float64)
            if y.shape != (len(i),):
                raise ValueError(f"the distance callable must return one value per pair, shape ({len(i)},); "
                                 f"got shape {y.shape}.")
            if bool(xp.isinf(y).any()):
                raise ValueError("the distance callable returned infinite values; it must return finite "
                                 "distances (NaN counts as missing and becomes nan_to_num).")
        else:
            y = k.neural_distances(self.Y, i, j, self.distance)
        return F, xp.nan_to_num(y, nan=self.nan_to_num)


def _norm_factors(m: int, kind: str) -> np.ndarray:
    """Per-entry factors f of the unit norm sum(f * w**2) = 1 that _shared.weights(.., kind) gives:
    1 for 'diag' / 'free'; for the lower triangle of a unit-Frobenius W ('spd') 2 off the diagonal,
    and for its column coefficients 2 W_ab ('spd_quadratic') 1/2 off the diagonal."""
    if kind not in ("spd", "spd_quadratic"):
        return np.ones(1)
    a, b = np.tril_indices(m)
    return np.where(a == b, 1.0, 2.0 if kind == "spd" else 0.5)


def backend(device="cpu"):
    """(kernel module, array module) for ``device``: (fastmlem.ops, numpy) on the CPU,
    (fastmlem.cuda_ops, cupy) on 'cuda[:k]' (a clear error when cupy or fastmlem._cuda is missing)."""
    if str(device).startswith("cuda"):
        cp, _ = require_cuda()
        from . import cuda_ops
        return cuda_ops, cp
    return ops, np


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

    _rank_based = False  # True: results depend on neural distances only through their ranks

    def _seed(self):
        seed = self.random_state if self.random_state is not None else self.random_seed
        if isinstance(seed, (np.random.RandomState, np.random.Generator)):  # scikit-learn style
            if not hasattr(self, "_drawn_seed"):  # drawn once, so fit and score agree
                self._drawn_seed = int(seed.integers(2**63) if isinstance(seed, np.random.Generator)
                                       else seed.randint(2**31))
            seed = self._drawn_seed
        return int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])

    def _check_common(self):
        """Checks of the parameters MLEM and FRRSA share (each named, with what is allowed)."""
        self._check_distance()
        check.boolean(self.interactions, "interactions")
        check.finite_float(self.nan_to_num, "nan_to_num")
        check.positive_int(self.n_permutations, "n_permutations")
        check.boolean(self.verbose, "verbose")
        check.random_state(self.random_seed, "random_seed")
        check.random_state(self.random_state, "random_state")
        if self.batch_size is not None and not (self.batch_size == "all" and isinstance(self, MLEM)):
            check.positive_int(self.batch_size, "batch_size", 3)

    def _check_distance(self):
        if not (callable(self.distance) or self.distance in METRICS + ("precomputed",)):
            raise ValueError(f"unknown distance {self.distance!r}; use one of "
                             f"{METRICS + ('precomputed',)} or a callable (Y1, Y2) -> (B,).")
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
        Y_arr = prepare_representations(Y, X_enc.shape[0], precomputed=precomputed, allow_gpu=self._on_gpu(),
                                        rescale=self._rank_based)
        return X_enc, names, Y_arr

    def _source(self, X_enc, Y, rdm=None):
        """PairSource of these stimuli on the model's device; ``rdm`` as PairSource's."""
        distance = _torch_distance(self.distance, getattr(self, "_torch_inputs", False))
        return PairSource(X_enc, Y, distance, self.interactions, self.nan_to_num, getattr(self, "device", "cpu"), rdm)

    def _expected_pairs(self, batch_size, steps=0):
        """Pairs a fit of ``steps`` steps and the importance batches draw (for use_rdm)."""
        return batch_size * (steps + _shared.n_columns(self.n_features_in_, self.interactions) * self.n_permutations)

    def _training_source(self, steps=0):
        """PairSource of the training data; the RDM, when use_rdm chooses it, is built once per fit
        and kept (``_rdm``) for every later score() on the training data."""
        if not hasattr(self, "_rdm"):
            Y = self.Y_
            choose = (not callable(self.distance) and self.distance != "precomputed"
                      and use_rdm(Y.shape[0], Y.shape[1], Y.dtype.itemsize, self.distance,
                                  self._expected_pairs(self.batch_size_, steps), _MEMORY_BYTES[self.memory]))
            source = self._source(self.X_, Y, True if choose else None)
            self._rdm = source.rdm if choose else None
            return source
        return self._source(self.X_, self.Y_, self._rdm)

    def __getstate__(self):  # the cached RDM is rebuilt on demand, not pickled
        state = super().__getstate__()
        state.pop("_rdm", None)
        return state

    def _set_inputs(self, X_enc, names, Y_arr):
        self.feature_names_in_ = np.array(names, dtype=object)
        self.n_features_in_ = X_enc.shape[-1]
        self.X_, self.Y_ = X_enc, Y_arr

    def _constant_columns(self):
        """Mask (q,) of the predictor columns of a feature constant among the training stimuli: they are
        0 on every training pair, so their weight is set to 0 (and their importance is then 0)."""
        constant = constant_features(self.X_)
        if not self.interactions:
            return constant
        a, b = np.tril_indices(len(constant))
        return constant[a] | constant[b]

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

    def _permutation_spearman(self, source, size, q, seed, perm_seed):
        """(base, permuted) Spearman of the q * n_permutations importance tasks, composed from
        array kernels (the twin of ops.permutation_importance, for every device and distance)."""
        xp, P, w = source.xp, self.n_permutations, source.xp.asarray(self.weights_)
        chunk = {"low": 1, "medium": P, "auto": P, "high": max(1, _MEMORY_BYTES["high"] // (3 * 8 * size))}[self.memory]
        base, permuted = np.empty(q * P), np.empty(q * P)
        bar = progress(total=q * P, desc="Permutation importance", verbose=self.verbose)
        for start in range(0, q * P, chunk):
            preds, moved, ys = [], [], []
            for t in range(start, min(start + chunk, q * P)):
                F, y = source.rows(*source.sample(size, seed, 2**32 + t))
                perm = xp.asarray(_shared.random_permutations(size, 1, perm_seed, t)[0])
                preds.append(_shared.predict(F, w))
                moved.append(_shared.predict(_shared.permuted_rows(F, t // P, perm), w))
                ys.append(y)
            b, p = source.kernels.permutation_spearman(xp.stack(preds), xp.stack(moved), xp.stack(ys))
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
        check.threshold(warning_threshold, "warning_threshold")
        cols, P = self._column_names(), self.n_permutations
        threads = min(check.worker_threads(), len(cols) * P)
        check.check_memory(threads * ops.batch_bytes(size, len(cols)), f"permutation importance on {threads} "
                           f"threads, batches of {size:,} pairs x {len(cols)} columns")
        source = self._training_source() if X is None else self._source(X_enc, Y_arr)
        seed, perm_seed = self._seed(), (self._seed() + 1) % 2**64
        if source.fused and source.xp is np:  # the whole loop in C++
            base, permuted = ops.permutation_importance(source.X, source.targets, self.weights_, self.interactions,
                                                        self.nan_to_num, size, seed, 2**32, perm_seed, P,
                                                        source.metric)
        else:
            base, permuted = self._permutation_spearman(source, size, len(cols), seed, perm_seed)
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

    Learns weights over feature distances (a positive vector, or an SPD matrix over feature pairs
    with ``interactions``) whose predicted distances rank-correlate with the neural distances, then
    measures how much permuting each predictor column lowers the Spearman correlation. A drop-in
    for the reference ``mlem.MLEM`` (same parameters and defaults, first 17 below).

    Parameters
    ----------
    interactions : bool, default False
        Learn an SPD matrix over all feature pairs (columns d_a d_b, a >= b) instead of one weight
        per feature.
    n_permutations : int >= 1, default 5
        Permutations per predictor column in :meth:`score`.
    distance : {'euclidean', 'manhattan', 'cosine', 'norm_diff', 'precomputed'} or callable, default 'euclidean'
        Neural distance between two stimuli's representations. 'precomputed': X is (n, n, m)
        per-feature distances and Y an (n, n) distance matrix. A callable maps two (B, p) arrays
        of rows to (B,) distances.
    nan_to_num : float, default 0.0
        Feature distance used where a feature is missing (NaN).
    batch_size : int >= 3, 'all' or None, default None
        Pairs per training batch; None estimates it (:meth:`estimate_batch_size`); 'all' uses
        every pair i < j in every step (full batch).
    n_trials, threshold, factor, batch_size_min, batch_size_max : int, float, float, int, int
        Batch-size estimation: start at ``batch_size_min`` pairs and grow by ``factor`` (> 1) until
        the largest across-``n_trials`` std of the feature-distance correlations is below
        ``threshold``, at most ``batch_size_max``. Defaults 16, 0.01, 1.2, 256, 2**20.
    max_steps : int >= 1, default 1000
        Training steps at most (a fresh batch each).
    lr, weight_decay : float, defaults 0.1 and 0.0
        AdamW learning rate and decoupled weight decay.
    patience : int >= 1, default 50
        Stop after this many steps without a better batch score (the reference's rule).
    weights_from : {'average', 'best', 'last'}, default 'average'
        Which weights ``fit`` returns. 'average': the mean of the weights over the last
        ``patience + 1`` steps (at an early stop: the best step and the steps after it),
        renormalised; averaging the iterates cancels the batch noise, and on the paper's kind of
        data it recovers planted weights best (``bench/bench_scale.py --recovery``). 'best': the
        weights of the best batch score, which is partly the luckiest batch. 'last': the last
        step's weights (what the reference's code returns, its best-state copy being a live view).
    device : 'cpu' or 'cuda[:k]', default 'cpu'
        Where the kernels run (the GPU needs cupy and the CUDA module).
    verbose : bool, default False
        Progress bars.
    memory : {'low', 'medium', 'high', 'auto'}, default 'medium'
        Memory budget (256 MiB, 1 GiB, 4 GiB; 'auto', the reference README's name, is 'medium') for the condensed neural RDM, full batches and
        batched importance; the RDM is built when it fits and the cost model says it pays off
        (:func:`use_rdm`), else rows of Y are gathered per pair.
    random_seed : int or None
        Seed of every random stream (pairs, initial weights, permutations); the reference's name.
    corr_warning_threshold : float, default 0.5
        Warn when two feature-distance columns correlate more than this (importances get hard to
        interpret).
    spd : bool, default True
        False: unconstrained unit-norm weights (with ``interactions``, the paper's FR-RSA-I).
    soft_rank_strength : float > 0 or 'auto', default 1.0
        Regularisation of the soft ranks in the loss. 1.0 is the reference's (with thousands of
        pairs the loss then equals plain Pearson); 'auto': per vector, the largest strength whose
        soft ranks correlate >= 0.999 with the hard ranks, so that the loss tracks Spearman.
    soft_rank_regularization : {'l2', 'kl'}, default 'l2'
    random_state : int, RandomState, Generator or None
        scikit-learn's name for the seed; takes precedence over ``random_seed``.
    spd_form : {'reference', 'quadratic'}, default 'reference'
        With interactions: 'reference' predicts sum_{a>=b} W_ab d_a d_b (the package's form, i.e.
        the quadratic form (W + diag W)/2); 'quadratic' predicts the paper's d'W d with W itself
        SPD. ``weights_`` are the column coefficients either way; ``get_weights()`` shows W.

    Attributes
    ----------
    weights_ : (q,) learned column weights (q = m, or m(m+1)/2 with interactions).
    best_score_, history_, n_steps_ : best batch score, score per step, steps run.
    params_ : (q,) raw parameters of the best step ('best') or of the last step.
    batch_size_ : pairs per batch used; feature_names_in_, n_features_in_ : the features.
    feature_names, batch_size_fit_ : the reference's names for feature_names_in_ and batch_size_.

    fit(X (n, m) features, Y (n, ...) representations) -> self
    score(X=None, Y=None) -> (importances DataFrame (n_permutations, q), baseline Series)
    get_weights() -> DataFrame (m, 1) or (m, m) lower triangle with interactions.
    """

    _rank_based = True

    def __init__(self, interactions=False, n_permutations=5, distance="euclidean", nan_to_num=0.0,
                 batch_size=None, n_trials=16, threshold=0.01, factor=1.2, batch_size_min=256,
                 batch_size_max=2**20, max_steps=1000, lr=0.1, weight_decay=0.0, patience=50,
                 device="cpu", verbose=False, memory="medium", random_seed=None,
                 corr_warning_threshold=0.5, spd=True, soft_rank_strength=1.0,
                 soft_rank_regularization="l2", random_state=None, spd_form="reference", weights_from="average"):
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
        self.weights_from = weights_from

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
        self._check_common()
        check.positive_int(self.max_steps, "max_steps")
        check.finite_float(self.factor, "factor", 1.0, low_open=True)
        check.positive_int(self.n_trials, "n_trials", 2)
        check.positive_int(self.batch_size_min, "batch_size_min", 3)
        if check.positive_int(self.batch_size_max, "batch_size_max", 3) < self.batch_size_min:
            raise ValueError(f"batch_size_max ({self.batch_size_max}) must be >= batch_size_min "
                             f"({self.batch_size_min}).")
        check.positive_float(self.threshold, "threshold")
        check.positive_float(self.lr, "lr")
        check.finite_float(self.weight_decay, "weight_decay", 0.0)
        check.positive_int(self.patience, "patience")
        check.choice(self.weights_from, "weights_from", ("average", "best", "last"))
        check.finite_float(self.corr_warning_threshold, "corr_warning_threshold", 0.0)
        check.boolean(self.spd, "spd")
        if not (isinstance(self.soft_rank_strength, str) and self.soft_rank_strength == "auto"):
            check.positive_float(self.soft_rank_strength, "soft_rank_strength (or 'auto')")
        check.choice(self.soft_rank_regularization, "soft_rank_regularization", ("l2", "kl"))

    def _train_step(self, source):
        """step(stream, w (q,), lo, hi) -> (score, grad_w (q,), lo, hi), host floats and numpy.

        The objective of ops.rank_loss_grad on batch ``stream``, with the running min-max of the
        raw neural distances. One fused call (C++: RDM look-ups or row gathers; CUDA: RDM look-ups)
        per step; otherwise (callable distance, batch_size='all', GPU gathers) rows are drawn and
        the objective is composed. On the GPU, one small device-to-host copy per step (score, lo, hi, grad_w) feeds
        the early stopping; everything else stays on the device.
        """
        xp, seed = source.xp, self._seed()
        strength, regularization = self.soft_rank_strength, self.soft_rank_regularization
        if source.fused and self.batch_size != "all":
            fused = source.kernels.mlem_step(source.X, source.targets, self.interactions, self.nan_to_num,
                                             self.batch_size_, seed, strength, regularization, source.metric)
            if xp is np:
                return fused

            def gpu_step(stream, w, lo, hi):
                score, grad, lo, hi = fused(stream, xp.asarray(w), lo, hi)
                host = to_numpy(xp.concatenate([xp.stack([score, xp.asarray(lo), xp.asarray(hi)]).astype(xp.float64),
                                                grad]))
                return float(host[0]), host[3:], float(host[1]), float(host[2])
            return gpu_step

        if self.batch_size == "all":
            full = source.rows(*source.all_pairs())  # every pair i < j, computed once
            batch = lambda stream: full  # noqa: E731
        else:
            batch = lambda stream: source.rows(*source.sample(self.batch_size_, seed, stream))  # noqa: E731

        def composed_step(stream, w, lo, hi):
            F, y = batch(stream)
            lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))  # running min-max, as the reference
            score, grad = source.kernels.rank_loss_grad(F, xp.asarray(w), _shared.minmax_scaled(y, lo, hi),
                                                        strength, regularization)
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
        self._check_params()
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
        corr = np.zeros((1, len(a)))  # no trial when batch_size_min == batch_size_max
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
            size = max(size + 1, int(size * self.factor))  # grows even when int() rounds the product down
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
        q = _shared.n_columns(m, self.interactions)
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
        check.check_memory(ops.batch_bytes(self.batch_size_, q), f"a training batch of {self.batch_size_:,} pairs x "
                           f"{q} columns")
        self.__dict__.pop("_rdm", None)  # a refit builds (or not) its own RDM
        train_step = self._train_step(self._training_source(steps=min(self.max_steps, 4 * self.patience)))
        rng = np.random.default_rng(self._seed())
        adam = AdamW(rng.uniform(0, 1, q) if kind == "diag" else rng.uniform(-1, 1, q), self.lr, self.weight_decay,
                     maximize=True)
        stopping, lo, hi = EarlyStopping(self.patience), np.inf, -np.inf
        recent = collections.deque(maxlen=self.patience + 1)  # weights of the last steps
        bar = progress(range(self.max_steps), desc=f"Fitting MLEM (batch {self.batch_size_})", verbose=self.verbose)
        for step in bar:
            params = adam.params
            recent.append(_shared.weights(params, m, kind))
            score, grad_w, lo, hi = train_step(step, recent[-1], lo, hi)
            if stopping.update(score, params):
                break
            adam.step(_shared.weights_vjp(params, m, kind, grad_w))
            if self.verbose:
                bar.set_postfix(score=f"{stopping.best:.4f}")
        self.params_ = stopping.best_state if self.weights_from == "best" else params
        w = {"best": lambda: _shared.weights(self.params_, m, kind), "last": lambda: recent[-1],
             "average": lambda: np.mean(recent, axis=0)}[self.weights_from]()
        drop = self._constant_columns()
        if drop.any():  # columns 0 on every training pair: same fit
            w = np.where(drop, 0.0, w)
        if drop.any() or self.weights_from == "average":  # back to unit norm, as _shared.weights gives
            w = w / np.sqrt(np.sum(_norm_factors(m, kind) * w * w))
        self.weights_ = w
        self.best_score_ = stopping.best
        self.n_steps_ = len(stopping.history)
        self.history_ = np.array(stopping.history)
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
