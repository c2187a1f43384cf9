"""Cross-modal use: align two groups of models (e.g. vision and language) on paired stimuli and
retrieve held-out pairs by similarity in the shared space."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._backend import get_array_module, to_numpy
from ..encoding import check_positive_int
from ._estimator import BarycentricAlignment
from ._validate import as_index, as_models

STRATEGIES = ("joint", "barycenters")


@dataclass
class CrossModalResult:
    """Outcome of :func:`cross_modal_retrieval`.

    accuracy : DataFrame (direction "a->b" / "b->a", k, accuracy, chance).
    similarity : (m, m) numpy array, similarity[i, j] = sim(held-out stimulus i of group A,
        held-out stimulus j of group B); the diagonal holds the true pairs.
    embedding_a, embedding_b : (m, k) held-out stimuli of each group in the shared space (the
        mean of the group's models after alignment).
    alignments : dict name -> fitted BarycentricAlignment ("joint", or "a", "b" and "top").
    """
    accuracy: pd.DataFrame
    similarity: np.ndarray
    embedding_a: object
    embedding_b: object
    alignments: dict = field(default_factory=dict)


def retrieval_accuracy(similarity, ks=(1, 5)) -> pd.DataFrame:
    """Top-k retrieval accuracy of true pairs from an (m, m) similarity matrix.

    A -> B: row i retrieves column i if fewer than k columns score strictly higher than column i;
    B -> A: the same along columns.  Chance is k / m.

    Returns
    -------
    DataFrame with columns direction ("a->b", "b->a"), k, accuracy, chance.
    """
    S = np.asarray(to_numpy(similarity), dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"similarity must be a square (m, m) matrix; got shape {S.shape}.")
    m = S.shape[0]
    own = np.diagonal(S)
    rank = {"a->b": (S > own[:, None]).sum(axis=1), "b->a": (S > own[None, :]).sum(axis=0)}
    rows = [{"direction": d, "k": k, "accuracy": float(np.mean(r < k)), "chance": min(k, m) / m}
            for d, r in rank.items() for k in (check_positive_int(k, "k") for k in ks)]
    return pd.DataFrame(rows)


def _similarity(Ea, Eb, metric: str):
    xp = get_array_module(Ea)
    if metric == "cosine":
        Ea = Ea / xp.linalg.norm(Ea, axis=1, keepdims=True).clip(1e-300)
        Eb = Eb / xp.linalg.norm(Eb, axis=1, keepdims=True).clip(1e-300)
        return Ea @ Eb.T
    return -(((Ea * Ea).sum(1)[:, None] + (Eb * Eb).sum(1)[None, :]) - 2.0 * Ea @ Eb.T)


def _group_embedding(alignment, arrays, names, rows):
    """Mean over a group's models of their aligned held-out rows, (m, k)."""
    return sum(alignment.transform(a[rows], name) for a, name in zip(arrays, names)) / len(arrays)


def cross_modal_retrieval(group_a, group_b, train_idx, test_idx, *, strategy="joint",
                          metric="cosine", ks=(1, 5), **params) -> CrossModalResult:
    """Fit a shared space on paired training stimuli and retrieve held-out pairs across groups.

    Row i of every model in both groups describes the same stimulus (e.g. an image in vision
    models and its caption in language models).

    Parameters
    ----------
    group_a, group_b : list or dict of arrays (n, d_k), numpy or cupy; >= 1 model each for
        strategy="joint", >= 2 each for "barycenters".
    train_idx, test_idx : disjoint integer indices (or boolean masks) over the n stimuli.
    strategy : "joint" (one alignment over all models of both groups) or "barycenters" (align each
        group separately, then align group B's barycenter to group A's).
    metric : "cosine" or "euclidean" similarity for retrieval.
    ks : retrieval cut-offs (top-1, top-5 by default).
    **params : BarycentricAlignment settings (group, dim, scale, ...).

    Returns
    -------
    CrossModalResult (accuracy table, held-out similarity matrix, embeddings, fitted alignments).

    The same recipe by hand (strategy="joint")::

        al = BarycentricAlignment(dim=32, scale="frobenius").fit([X[train] for X in A + B])
        ea = np.mean([al.transform(X[test], j) for j, X in enumerate(A)], axis=0)
        eb = np.mean([al.transform(X[test], len(A) + j) for j, X in enumerate(B)], axis=0)
        scores = cosine(ea, eb)   # (m, m); the true pairs are on the diagonal
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}.")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"unknown metric {metric!r}; choose 'cosine' or 'euclidean'.")
    min_models = 1 if strategy == "joint" else 2
    A, names_a, _ = as_models(group_a, min_models=min_models)
    B, names_b, _ = as_models(group_b, min_models=min_models)
    n = A[0].shape[0]
    if B[0].shape[0] != n:
        raise ValueError(f"group_a has {n} stimuli but group_b has {B[0].shape[0]}; the groups must "
                         "describe the same paired stimuli, row by row.")
    train, test = as_index(train_idx, n, "train_idx"), as_index(test_idx, n, "test_idx")
    if np.intersect1d(train, test).size:
        raise ValueError("train_idx and test_idx overlap; held-out retrieval needs disjoint sets.")
    xp = get_array_module(*A, *B)
    tr, te = xp.asarray(train), xp.asarray(test)
    names_a = [f"a:{s}" for s in names_a]
    names_b = [f"b:{s}" for s in names_b]
    if strategy == "joint":
        joint = BarycentricAlignment(**params).fit(
            dict(zip(names_a + names_b, [X[tr] for X in A + B])))
        Ea = _group_embedding(joint, A, names_a, te)
        Eb = _group_embedding(joint, B, names_b, te)
        alignments = {"joint": joint}
    else:
        al_a = BarycentricAlignment(**params).fit(dict(zip(names_a, [X[tr] for X in A])))
        al_b = BarycentricAlignment(**params).fit(dict(zip(names_b, [X[tr] for X in B])))
        top = BarycentricAlignment(**{**params, "dim": "pad"}).fit(
            {"a": al_a.barycenter_, "b": al_b.barycenter_})
        Ea = top.transform(_group_embedding(al_a, A, names_a, te), "a")
        Eb = top.transform(_group_embedding(al_b, B, names_b, te), "b")
        alignments = {"a": al_a, "b": al_b, "top": top}
    S = to_numpy(_similarity(Ea, Eb, metric))
    return CrossModalResult(retrieval_accuracy(S, ks), S, Ea, Eb, alignments)
