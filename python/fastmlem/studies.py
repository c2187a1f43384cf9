"""Studies: many fits in one call (targets x folds, null refits, bootstrap), on threads or a Dask cluster.

A *target* is one array of representations of the same stimuli (a layer, a subject, a model).
:func:`cross_validate` fits on the training stimuli of each fold and scores permutation importance
on the held-out ones; :func:`permutation_test` gives p-values (stimuli shuffled relative to Y),
bootstrap intervals and Benjamini-Hochberg adjusted p-values. Every task (target x fold, target x
refit) gets its own seed from ``random_state`` (numpy SeedSequence children), so the tables are the
same whatever runs them: one thread, ``n_jobs`` joblib workers, or a Dask cluster. The estimator is
only used through its public API (``get_params``/``clone``, ``fit``, ``score(X, Y, tidy=True)``,
``estimate_batch_size``); the batch size, which depends on X only, is estimated once on all stimuli
and given to every refit.
"""
from __future__ import annotations

import numbers
import os
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, KFold, check_cv

from .encoding import MIN_STIMULI, ConstantFeatureWarning, constant_features, encode_features, \
    prepare_representations

__all__ = ["cross_validate", "permutation_test", "spearman_scorer", "summarize", "benjamini_hochberg"]

_CONNECT_TIMEOUT = "10s"  # how long to try reaching a Dask scheduler address before giving up
_QUIET = 1.0  # score's warning_threshold that never warns: Spearman values lie in [-1, 1], their sd <= 1


# ---------------------------------------------------------------------------------------- inputs
def _square(estimator):
    """True when X and Y are (n, n, ...) distance matrices: stimuli index both of their first axes."""
    return estimator.get_params().get("distance") == "precomputed"


def _take(A, idx, square):
    """Stimuli ``idx`` of A: rows of an array or DataFrame, rows and columns of a distance matrix."""
    if isinstance(A, (pd.DataFrame, pd.Series)):
        return A.iloc[idx]
    return A[np.ix_(idx, idx)] if square else A[idx]


def _targets(Y, n, square):
    """Y -> dict name -> checked (n, ...) array. One array of n stimuli is one target (name 0); a list
    or an (L, n, ...) array are targets 0..L-1; a dict's keys (str) name its targets."""
    if isinstance(Y, dict):
        bad = [k for k in Y if not isinstance(k, str)]
        if bad:
            raise TypeError(f"the keys of a dict of targets name them and must be str; got {bad!r}. "
                            "Use e.g. {f'layer_{i}': Y_i}.")
        items = dict(Y)
    elif isinstance(Y, (list, tuple)):
        items = dict(enumerate(Y))
    else:
        arr = Y.to_numpy() if isinstance(Y, (pd.DataFrame, pd.Series)) else np.asarray(Y)
        stacked = arr.ndim >= (4 if square else 3) and arr.shape[0] != n and arr.shape[1] == n
        items = dict(enumerate(arr)) if stacked else {0: arr}
    if not items:
        raise ValueError("Y holds no targets; give one array (n, ...), a list or dict of them, or an (L, n, ...) array.")
    wrong = {k: np.shape(v)[:1] for k, v in items.items() if np.ndim(v) == 0 or np.shape(v)[0] != n}
    if wrong:
        raise ValueError(f"every target must have one row per stimulus ({n}, the rows of X); these do not: "
                         + ", ".join(f"target {k!r} has {s[0] if s else 0} rows" for k, s in wrong.items()) + ".")
    return {k: prepare_representations(v, n, precomputed=square) for k, v in items.items()}


def _root(random_state):
    """The SeedSequence every task seed is spawned from."""
    if isinstance(random_state, np.random.Generator):
        random_state = int(random_state.integers(2**63))
    elif isinstance(random_state, np.random.RandomState):
        random_state = int(random_state.randint(2**31))
    elif random_state is not None and (isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral)
                                       or random_state < 0):
        raise ValueError(f"random_state must be None, an integer >= 0 or a numpy Generator; got {random_state!r}.")
    return np.random.SeedSequence(random_state)


def _child(root, *key):
    """Child of ``root`` at ``key``: what ``root.spawn`` gives there, without spawning state."""
    return np.random.SeedSequence(root.entropy, spawn_key=root.spawn_key + tuple(key))


def _seed_of(ss, dtype=np.uint64):
    return int(ss.generate_state(1, dtype)[0])


def _prepare(estimator, X, Y):
    """Checked inputs shared by both studies: an unfitted clone, encoded X (for checks), names, targets."""
    if not all(hasattr(estimator, a) for a in ("fit", "score", "get_params")):
        raise TypeError(f"estimator must be a fastmlem MLEM or FRRSA (fit, score, get_params); got "
                        f"{type(estimator).__name__}.")
    square = _square(estimator)
    X_enc, names = encode_features(X, precomputed=square)
    return clone(estimator), X_enc, names, _targets(Y, X_enc.shape[0], square), square


def _share_batch_size(model, X, root):
    """The batch size depends on X only: estimated once on all stimuli and given to every refit."""
    if model.get_params().get("batch_size") is None and hasattr(model, "estimate_batch_size"):
        model.set_params(random_state=_seed_of(_child(root, 0, 0)))
        model.set_params(batch_size=int(model.estimate_batch_size(X)))
    return model


# ---------------------------------------------------------------------------------------- running
def _connect(backend):
    """(dask Client, owned) for backend 'dask' (the current Client), an address or a Client; (None,
    False) for joblib."""
    if backend is None or (isinstance(backend, str) and backend != "dask" and ":" not in backend):
        if backend is not None:
            from joblib.parallel import BACKENDS
            if backend not in BACKENDS:
                raise ValueError(f"unknown backend {backend!r}; use None (joblib threads), a joblib backend "
                                 f"{sorted(BACKENDS)}, 'dask', a scheduler address or a dask Client.")
        return None, False
    if not isinstance(backend, str):
        if hasattr(backend, "scatter") and hasattr(backend, "submit"):
            return backend, False
        raise TypeError(f"backend must be None, a joblib backend name, 'dask', a scheduler address or a "
                        f"dask.distributed.Client; got {type(backend).__name__}.")
    try:
        from distributed import Client
    except ImportError as err:
        raise ImportError("backend='dask' needs dask.distributed: pip install 'fastmlem[dask]'.") from err
    if backend == "dask":
        try:
            return Client.current(), False
        except ValueError as err:
            raise ValueError("backend='dask' runs on the current dask Client, and there is none: start one "
                             "(Client() starts a local cluster; Client('tcp://host:8786') joins one) or pass "
                             "it as backend=client.") from err
    try:
        return Client(backend, timeout=_CONNECT_TIMEOUT, set_as_default=False), True
    except (OSError, TimeoutError) as err:
        raise ConnectionError(f"could not reach a Dask scheduler at {backend!r} within {_CONNECT_TIMEOUT}: {err}. "
                              "Check the address (dask scheduler prints it) and that the scheduler is "
                              "running.") from err


def _run(func, tasks, shared, n_jobs, backend, client):
    """[func(*shared values named by keys, *args) for (keys, args) in tasks], in order.

    joblib (threads unless ``backend`` names another joblib backend), or the Dask ``client``: then
    the shared objects are scattered to every worker once and tasks get references to them.
    """
    if client is None:
        from joblib import Parallel, delayed, effective_n_jobs
        kwargs = dict(prefer="threads") if backend is None else dict(backend=backend)
        from threadpoolctl import threadpool_limits
        threads = max(1, (os.cpu_count() or 1) // effective_n_jobs(n_jobs))  # kernel threads per concurrent fit
        with threadpool_limits(limits=threads, user_api="blas"):  # BLAS: one process-wide setting
            return Parallel(n_jobs=n_jobs, **kwargs)(delayed(_with_threads)(threads, func, *(shared[k] for k in keys),
                                                                            *args) for keys, args in tasks)
    remote = {k: client.scatter(v, broadcast=True, hash=False) for k, v in shared.items()}
    futures = [client.submit(func, *(remote[k] for k in keys), *args, pure=False) for keys, args in tasks]
    return client.gather(futures)


def _with_threads(threads, func, *args):
    """func(*args) with at most ``threads`` OpenMP threads in the compiled kernels it calls (an OpenMP
    setting of the calling thread): n_jobs concurrent fits share the cores instead of oversubscribing
    them (2 fits x 2 kernel threads x 2 BLAS threads on 2 cores were ~20 % slower)."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=threads, user_api="openmp"):
        return func(*args)


def _importance(model, X, Y, square, idx=None, seed=None):
    """Fit a clone on the stimuli ``idx`` (all when None) and score it there: mean importance (q,)."""
    model = clone(model).set_params(random_state=seed)
    if idx is not None:
        X, Y = _take(X, idx, square), _take(Y, idx, square)
    tidy = model.fit(X, Y).score(warning_threshold=_QUIET, tidy=True)
    return tidy.groupby("feature", sort=False)["importance"].mean()


# ---------------------------------------------------------------------------------------- tasks
def _cv_task(X, Y, model, train, test, seed, square):
    """One target x fold: fit on ``train``, tidy importance on ``test`` plus the fold's test Spearman."""
    model = clone(model).set_params(random_state=seed)
    model.fit(_take(X, train, square), _take(Y, train, square))
    tidy = model.score(_take(X, test, square), _take(Y, test, square), warning_threshold=_QUIET, tidy=True)
    return tidy.assign(test_spearman=tidy["baseline"].mean())


def _refit_task(X, Y, model, ss, kind, square):
    """One refit: 'observed' (the data), 'null' (Y's stimuli shuffled), 'boot' (stimuli resampled)."""
    seed, draw = ss.generate_state(2, np.uint64)
    rng, n = np.random.default_rng(int(draw)), len(Y)
    if kind == "null":
        perm = rng.permutation(n)
        Y = Y[np.ix_(perm, perm)] if square else Y[perm]
        return _importance(model, X, Y, square, seed=int(seed)).to_numpy()
    idx = rng.integers(0, n, n) if kind == "boot" else None
    result = _importance(model, X, Y, square, idx=idx, seed=int(seed))
    return result if kind == "observed" else result.to_numpy()


# ---------------------------------------------------------------------------------------- API
def _splits(cv, n, groups, seed):
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"cv must be >= 2 folds; got {cv}.")
        cv = GroupKFold(n_splits=int(cv)) if groups is not None else KFold(int(cv), shuffle=True, random_state=seed)
    elif not hasattr(cv, "split"):
        cv = check_cv(cv)
    splits = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(np.zeros((n, 1)), None, groups)]
    if not splits:
        raise ValueError("the splitter gave no folds.")
    for k, (train, test) in enumerate(splits):
        if len(train) < MIN_STIMULI or len(test) < MIN_STIMULI:
            raise ValueError(f"fold {k} has {len(train)} training and {len(test)} held-out stimuli; every fold needs "
                             f"at least {MIN_STIMULI} of each (a Spearman over pairs of stimuli): use fewer "
                             "splits or larger groups.")
    return splits


def cross_validate(estimator, X, Y, cv=5, groups=None, n_jobs=None, backend=None, random_state=None):
    """Cross-validated permutation importance of every target: fit on the training stimuli of each
    fold, score on its held-out stimuli.

    Parameters
    ----------
    estimator : :class:`fastmlem.MLEM` or :class:`fastmlem.FRRSA` (unfitted; its parameters are used).
    X : DataFrame or array (n, m) features (or (n, n, m) with ``distance='precomputed'``).
    Y : one array (n, ...); a list or dict of them (layers, subjects; dict keys, str, name the targets);
        or an (L, n, ...) array. Every target has the same n stimuli as X.
    cv : int (shuffled KFold, or GroupKFold when ``groups`` is given), a scikit-learn splitter, or an
        iterable of (train, test) index arrays. Every fold needs >= 3 training and >= 3 held-out stimuli.
    groups : (n,) labels passed to the splitter's ``split``.
    n_jobs : joblib workers (threads: the compiled kernels release the GIL); ignored with Dask.
    backend : None (joblib threads), a joblib backend name, 'dask' (the current Client), a scheduler
        address ('tcp://host:8786') or a ``dask.distributed.Client``.
    random_state : int, Generator or None. The fold split and every target x fold fit get their own
        seed spawned from it: the table does not depend on ``n_jobs`` or ``backend``.

    Returns
    -------
    DataFrame, one row per target x fold x feature x permutation: target, fold, feature,
    permutation, importance (drop in held-out Spearman when the feature is permuted), baseline
    (held-out Spearman of that batch), test_spearman (the fold's mean held-out Spearman).

    A feature constant among a fold's training stimuli gets a :class:`ConstantFeatureWarning`, weight
    0 and importance 0 in that fold.
    """
    root = _root(random_state)
    model, X_enc, names, targets, square = _prepare(estimator, X, Y)
    splits = _splits(cv, X_enc.shape[0], groups, _seed_of(_child(root, 0, 1), np.uint32))
    _warn_constant_in_folds(X_enc, names, splits, square)
    client, owned = _connect(backend)  # an unreachable scheduler fails here, before any work
    try:
        model = _share_batch_size(model, X, root)
        shared = {"X": X, **{("Y", t): Yt for t, Yt in targets.items()}}
        keys = [(name, k) for name in targets for k in range(len(splits))]
        tasks = [(("X", ("Y", name)), (model, *splits[k], _seed_of(_child(root, 1, t, k)), square))
                 for t, name in enumerate(targets) for k in range(len(splits))]
        tables = _run(_cv_task, tasks, shared, n_jobs, backend, client)
    finally:
        if owned:
            client.close()
    out = pd.concat([t.assign(target=name, fold=k) for t, (name, k) in zip(tables, keys)], ignore_index=True)
    return out[["target", "fold", "feature", "permutation", "importance", "baseline", "test_spearman"]]


def _warn_constant_in_folds(X_enc, names, splits, square):
    """One ConstantFeatureWarning per feature constant among the training stimuli of some fold (but not
    of all stimuli, which fit itself reports), in the caller's process whatever runs the fits."""
    everywhere = constant_features(X_enc)
    folds = {}
    for k, (train, _) in enumerate(splits):
        for name in np.asarray(names, dtype=object)[constant_features(_take(X_enc, train, square)) & ~everywhere]:
            folds.setdefault(name, []).append(k)
    for name, ks in folds.items():
        warnings.warn(f"feature {name!r} is constant among the training stimuli of fold(s) {ks}: its weight and "
                      "importance are 0 in those folds.", ConstantFeatureWarning, stacklevel=3)


def permutation_test(estimator, X, Y, n_null=200, n_boot=0, n_jobs=None, backend=None, random_state=None,
                     confidence=0.95):
    """Permutation p-values (and bootstrap intervals) of the importance of every feature of every target.

    The observed importance of a feature is its mean permutation importance when the estimator is
    fitted and scored on all stimuli. Each of the ``n_null`` null refits does the same after
    shuffling the stimuli of Y relative to X (rows of Y; rows and columns of a precomputed distance
    matrix). **What the null tests:** that features and representations are unrelated, i.e. that the
    stimuli are exchangeable; the p-value of a feature is the probability, under that global null, of
    an importance at least as large as the observed one, ``(1 + #{null >= observed}) / (n_null + 1)``
    (one-sided, exact at level k / (n_null + 1)). It does not test whether a feature adds anything
    given the others: a feature correlated with an important one can be significant.
    ``p_adjusted`` is Benjamini-Hochberg over all features x targets.

    Parameters
    ----------
    estimator, X, Y, n_jobs, backend : as :func:`cross_validate`.
    n_null : int >= 1, null refits per target (the smallest p-value is 1 / (n_null + 1)).
    n_boot : int >= 0, bootstrap refits per target (stimuli resampled with replacement; copies of a
        stimulus are pairs at distance 0 in both features and representations). With n_boot > 0 the
        table has ``ci_low, ci_high``, the percentile interval at ``confidence``.
    random_state : int, Generator or None. Every refit (observed, null k, bootstrap b of each target)
        has its own seed spawned from it; the shuffles too.

    Returns
    -------
    DataFrame, one row per target x feature: target, feature, importance, null_mean, p_value,
    p_adjusted (and ci_low, ci_high).
    """
    from .encoding import check_positive_int
    n_null = check_positive_int(n_null, "n_null")
    n_boot = check_positive_int(n_boot, "n_boot", 0)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}.")
    root = _root(random_state)
    model, X_enc, names, targets, square = _prepare(estimator, X, Y)
    client, owned = _connect(backend)  # an unreachable scheduler fails here, before any work
    kinds = ["observed"] + ["null"] * n_null + ["boot"] * n_boot
    try:
        model = _share_batch_size(model, X, root)
        shared = {"X": X, **{("Y", t): Yt for t, Yt in targets.items()}}
        tasks = [(("X", ("Y", name)), (model, _child(root, 1, t, r), kind, square))
                 for t, name in enumerate(targets) for r, kind in enumerate(kinds)]
        results = _run(_refit_task, tasks, shared, n_jobs, backend, client)
    finally:
        if owned:
            client.close()
    rows, per_target = [], len(kinds)
    for t, name in enumerate(targets):
        observed, rest = results[t * per_target], results[t * per_target + 1:(t + 1) * per_target]
        null = np.array(rest[:n_null])  # (n_null, q)
        row = pd.DataFrame({"target": [name] * len(observed), "feature": observed.index,
                            "importance": observed.to_numpy(), "null_mean": null.mean(0),
                            "p_value": (1 + (null >= observed.to_numpy()).sum(0)) / (n_null + 1)})
        if n_boot:
            low, high = np.quantile(np.array(rest[n_null:]), [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
            row = row.assign(ci_low=low, ci_high=high)
        rows.append(row)
    out = pd.concat(rows, ignore_index=True)
    out.insert(out.columns.get_loc("p_value") + 1, "p_adjusted", benjamini_hochberg(out["p_value"].to_numpy()))
    return out


def benjamini_hochberg(p):
    """Benjamini-Hochberg adjusted p-values (false discovery rate) of p (k,), in the same order."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    q = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.minimum.accumulate(q[::-1])[::-1], 1.0)
    return adjusted


def spearman_scorer(estimator, X, Y):
    """Scalar score of a fitted MLEM/FRRSA on stimuli (X, Y): the mean Spearman correlation between
    predicted and neural distances over its scoring batches (the ``baseline`` of ``score``).

    A scikit-learn scorer: ``cross_val_score(MLEM(), X, Y, scoring=spearman_scorer)`` and
    ``GridSearchCV(MLEM(), {"lr": [0.03, 0.1]}, scoring=spearman_scorer)`` work with it (the
    estimators' own ``score`` returns importance tables, not a number).
    """
    return float(estimator.score(X, Y, warning_threshold=_QUIET, tidy=True)["baseline"].mean())


def summarize(cv=None, test=None):
    """One row per target x feature from :func:`cross_validate` (``cv``) and/or :func:`permutation_test`
    (``test``) tables: cv_importance (mean over folds of the fold's mean importance), cv_sd (their sd
    over folds), test_spearman (mean over folds), then the permutation-test columns."""
    if cv is None and test is None:
        raise ValueError("give a cross_validate table (cv), a permutation_test table (test), or both.")
    parts = []
    if cv is not None:
        per_fold = cv.groupby(["target", "feature", "fold"], sort=False).agg(
            importance=("importance", "mean"), test_spearman=("test_spearman", "first"))
        parts.append(per_fold.groupby(["target", "feature"], sort=False).agg(
            cv_importance=("importance", "mean"), cv_sd=("importance", "std"), test_spearman=("test_spearman", "mean")))
    if test is not None:
        parts.append(test.set_index(["target", "feature"]))
    if len(parts) == 2:  # an outer join sorts the keys: put targets and features back in their order
        order = parts[0].index.append(parts[1].index).drop_duplicates()
        parts = [parts[0].join(parts[1], how="outer").reindex(order)]
    return parts[0].reset_index()
