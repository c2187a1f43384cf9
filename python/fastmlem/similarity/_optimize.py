"""Score optimisation (Cloos et al. 2024): start from noise, climb a similarity measure towards a
target dataset with Adam, and record what the optimised data have captured along the way."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._backend import get_array_module, to_numpy
from ._regression import cv_folds, ridge_predict
from ._registry import Measure, differentiable_ids, get
from ._validate import as_matrix, center

PC_FOLDS = 5
DECODING_FOLDS = 5
MAX_COMPONENTS = 50


@dataclass
class OptimizationResult:
    """Outcome of :func:`optimize`.

    Y : (n, p) optimised data, numpy or cupy like the target.
    history : tidy DataFrame, one row per (recorded step, quantity, component), columns
        step (Adam updates done), score (the measure's value at that step), quantity
        ("pc_r2", "decoding" or "decoding_relative"), component ("PC1", "PC2", ... or the
        task name) and value.
    measure : the optimised :class:`Measure`.
    pc_variance : (k,) fraction of the target's variance along each of its recorded PCs.
    target_decoding : dict task -> cross-validated decoding accuracy from the target itself.
    n_steps : Adam updates done; reached : whether ``stop_score`` was reached.
    """
    Y: object
    history: pd.DataFrame
    measure: Measure
    pc_variance: np.ndarray
    target_decoding: dict = field(default_factory=dict)
    n_steps: int = 0
    reached: bool = False

    def _wide(self, quantity: str) -> pd.DataFrame:
        rows = self.history[self.history["quantity"] == quantity]
        wide = rows.pivot(index="step", columns="component", values="value")
        order = list(dict.fromkeys(rows["component"]))
        return wide[order]

    @property
    def scores(self) -> pd.Series:
        """The measure's value at each recorded step (index: step)."""
        return self.history.drop_duplicates("step").set_index("step")["score"]

    @property
    def pc_r2(self) -> pd.DataFrame:
        """(recorded steps, PCs) held-out R² of each target PC from the optimised data."""
        return self._wide("pc_r2")

    @property
    def decoding(self) -> pd.DataFrame:
        """(recorded steps, tasks) decoding accuracy relative to the target's own."""
        return self._wide("decoding_relative")

    def pcs_captured(self, threshold: float = 0.5) -> pd.Series:
        """Number of target PCs with R² >= threshold at each recorded step."""
        return (self.pc_r2 >= threshold).sum(axis=1)


def _tasks(labels, n: int) -> dict:
    """labels (None, (n,) array-like, dict name -> (n,), or DataFrame) -> {name: (n,) numpy}."""
    if labels is None:
        return {}
    if isinstance(labels, pd.DataFrame):
        labels = {str(c): labels[c] for c in labels.columns}
    elif not isinstance(labels, dict):
        labels = {getattr(labels, "name", None) or "labels": labels}
    tasks = {}
    for name, y in labels.items():
        y = np.asarray(to_numpy(y))
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"task labels {name!r} must be a 1-D array with one label per "
                             f"stimulus ({n}); got shape {y.shape}.")
        counts = np.unique(y, return_counts=True)[1]
        if counts.size < 2 or counts.min() < 2:
            raise ValueError(f"task labels {name!r} need at least 2 classes with at least 2 "
                             f"stimuli each to be decoded; got class sizes {sorted(counts)}.")
        tasks[str(name)] = y
    return tasks


def decoding_accuracy(Z, y) -> float:
    """Mean accuracy of a logistic regression decoding labels y (n,) from Z (n, d).

    Stratified K-fold (5 folds, or the smallest class size if fewer; shuffled with seed 0),
    sklearn ``LogisticRegression(max_iter=1000)`` on the raw (unscaled) features.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    k = int(min(DECODING_FOLDS, np.unique(y, return_counts=True)[1].min()))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=0)
    return float(cross_val_score(LogisticRegression(max_iter=1000), to_numpy(Z), y, cv=cv).mean())


def pc_r2(Zpc, Y, folds) -> np.ndarray:
    """(k,) held-out R² of each column of Zpc (n, k) (target PC scores) predicted from Y (n, q).

    Least squares with intercept, predictions held out by ``folds``;
    R²_k = 1 - sum_i (z_ik - zhat_ik)² / sum_i z_ik² (PC scores have mean 0).
    """
    Z_hat = ridge_predict(Zpc, Y, 0.0, folds)[0]
    return to_numpy(1.0 - ((Zpc - Z_hat) ** 2).sum(axis=0) / (Zpc * Zpc).sum(axis=0))


def optimize(target, measure, labels=None, *, max_steps: int = 1000, lr: float = 0.1,
             stop_score: float | None = None, random_state=None, record_every: int = 10,
             n_components: int | None = None, verbose: bool = False) -> OptimizationResult:
    """Optimise a dataset Y, started from noise, to maximise its similarity to ``target``.

    Y₀ ~ N(0, 1) of the target's shape; Adam (beta1 0.9, beta2 0.999, eps 1e-8) on
    ``measure(target, Y)`` (ascent for scores and ENSD, descent for distances), until
    ``max_steps`` updates or until the value reaches ``stop_score`` (>= for scores, <= for
    distances).

    Every ``record_every`` steps (and at the first and last step) it records
    - the measure's value;
    - for each of the target's first ``n_components`` principal components (default: all with
      non-zero variance, at most 50), the held-out R² of that PC's scores predicted linearly
      from Y (5-fold least squares with intercept, folds of :func:`cv_folds`): how much of the
      PC is linearly recoverable from the optimised data (1 = fully, <= 0 = not at all);
    - for each task in ``labels``, the 5-fold stratified cross-validated accuracy of a logistic
      regression decoding the labels from Y, and that accuracy divided by the same decoder's
      accuracy on the target.

    Parameters
    ----------
    target : array-like (n, p), numpy or cupy: the reference data X.
    measure : a differentiable measure id (see :func:`ids`) or :class:`Measure`.
    labels : None, (n,) labels, dict name -> (n,) labels, or DataFrame (one task per column).
    max_steps, lr : Adam updates and learning rate.
    stop_score : stop once the value reaches it; None runs all ``max_steps``.
    random_state : None, int or numpy Generator, for Y₀.
    record_every : steps between records (records cost a few small regressions each).
    n_components : number of target PCs tracked.
    verbose : show a tqdm progress bar.

    Returns
    -------
    OptimizationResult with the final Y, the tidy ``history`` and summaries.
    """
    m = get(measure)
    if not m.differentiable:
        raise NotImplementedError(f"optimize needs a differentiable measure; {m.id!r} is not. "
                                  "Differentiable ids: " + ", ".join(differentiable_ids()) + ".")
    xp = get_array_module(target)
    X = as_matrix(target, "target", xp)
    n = X.shape[0]
    if int(max_steps) < 0 or int(record_every) < 1 or not lr > 0 or (
            n_components is not None and int(n_components) < 1):
        raise ValueError("optimize needs max_steps >= 0, record_every >= 1, lr > 0 and "
                         f"n_components >= 1; got {max_steps}, {record_every}, {lr}, "
                         f"{n_components}.")
    tasks = _tasks(labels, n)

    U, S, _ = xp.linalg.svd(center(X), full_matrices=False)
    var = to_numpy(S ** 2)
    k = int((var > 1e-12 * var[0]).sum())
    k = min(k, MAX_COMPONENTS) if n_components is None else min(int(n_components), k)
    Zpc = U[:, :k] * S[:k]
    folds = cv_folds(n, min(PC_FOLDS, n // 2))
    target_acc = {t: decoding_accuracy(X, y) for t, y in tasks.items()}

    rng = np.random.default_rng(random_state)
    Y = xp.asarray(rng.standard_normal(X.shape))
    sign = 1.0 if m.higher_is_better else -1.0
    m1, m2 = xp.zeros_like(Y), xp.zeros_like(Y)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    rows = []

    def record(step, value):
        base = {"step": step, "score": value}
        for i, r in enumerate(pc_r2(Zpc, Y, folds)):
            rows.append({**base, "quantity": "pc_r2", "component": f"PC{i + 1}", "value": float(r)})
        for t, y in tasks.items():
            acc = decoding_accuracy(Y, y)
            rows.append({**base, "quantity": "decoding", "component": t, "value": acc})
            rows.append({**base, "quantity": "decoding_relative", "component": t,
                         "value": acc / target_acc[t] if target_acc[t] > 0 else np.nan})

    from .._progress import progress

    bar = progress(total=max_steps, verbose=verbose, desc=f"optimising {m.id}")
    reached, step = False, 0
    for step in range(int(max_steps) + 1):
        value, G = m.value_and_grad(X, Y)
        reached = stop_score is not None and sign * (value - stop_score) >= 0
        last = reached or step == max_steps
        if step % record_every == 0 or last:
            record(step, value)
        if last:
            break
        t = step + 1
        m1 = beta1 * m1 + (1 - beta1) * G
        m2 = beta2 * m2 + (1 - beta2) * G * G
        Y = Y + (sign * lr) * (m1 / (1 - beta1 ** t)) / (xp.sqrt(m2 / (1 - beta2 ** t)) + eps)
        bar.update(1)
        bar.set_postfix(score=f"{value:.4f}", refresh=False)
    bar.close()
    history = pd.DataFrame(rows, columns=["step", "score", "quantity", "component", "value"])
    return OptimizationResult(Y=Y, history=history, measure=m, pc_variance=var[:k] / var.sum(),
                              target_decoding=target_acc, n_steps=step, reached=bool(reached))
