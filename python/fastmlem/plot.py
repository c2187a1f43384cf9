"""Figures for MLEM results (matplotlib, optional: ``pip install fastmlem[plot]``).

Every function draws on ``ax`` (a new figure when None) and returns the Axes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _axes(ax, figsize=(6, 4)):
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("fastmlem.plot needs matplotlib: pip install 'fastmlem[plot]' "
                          "(or pip install matplotlib).") from err
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _as_importances(importances) -> pd.DataFrame:
    """Wide (permutations x columns) importances from MLEM.score()'s tuple, frame or tidy frame."""
    if isinstance(importances, tuple):
        importances = importances[0]
    if isinstance(importances, pd.DataFrame) and {"feature", "importance"} <= set(importances.columns):
        importances = importances.pivot_table(index="permutation", columns="feature", values="importance",
                                              sort=False)
    if not isinstance(importances, pd.DataFrame):
        raise TypeError("importances must be the DataFrame returned by MLEM.score() (or its tidy form); "
                        f"got {type(importances).__name__}.")
    return importances


def importance_bars(importances, ax=None, top=None, title=None):
    """Horizontal bars of mean permutation importance per feature, error bars = std over permutations.

    importances: DataFrame (n_permutations, q) from ``MLEM.score()`` (or the tuple, or tidy form).
    top: show only the ``top`` largest. Returns the Axes.
    """
    imp = _as_importances(importances)
    mean, std = imp.mean(), imp.std().fillna(0.0)
    order = mean.sort_values(ascending=True).index
    if top is not None:
        order = order[-int(top):]
    ax = _axes(ax, (6, 0.35 * len(order) + 1.2))
    ax.barh(np.arange(len(order)), mean[order], xerr=std[order], color="tab:blue", alpha=0.8,
            error_kw=dict(ecolor="0.3", capsize=3))
    ax.set_yticks(np.arange(len(order)), [str(c) for c in order])
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlabel("permutation importance (drop in Spearman)")
    if title:
        ax.set_title(title)
    return ax


def importance_by_layer(results, ax=None, features=None, top=None, title=None):
    """Importance of each feature across layers: mean line, band = std over permutations.

    results: dict layer -> importances DataFrame (n_permutations, q) from ``MLEM.score()``, in layer
    order; or a tidy DataFrame with columns layer, feature, importance. features: which to draw
    (default: all, or the ``top`` with the largest peak importance). Returns the Axes.
    """
    if isinstance(results, pd.DataFrame):
        results = {layer: part for layer, part in results.groupby("layer", sort=False)}
    if not isinstance(results, dict) or not results:
        raise TypeError("results must be a non-empty dict layer -> importances DataFrame, or a tidy "
                        "DataFrame with columns layer, feature, importance.")
    layers = list(results)
    means = pd.DataFrame({layer: _as_importances(r).mean() for layer, r in results.items()}).T
    stds = pd.DataFrame({layer: _as_importances(r).std() for layer, r in results.items()}).T.fillna(0.0)
    if features is None:
        features = means.max().sort_values(ascending=False).index
        features = list(features[:int(top)] if top is not None else features)
    ax = _axes(ax, (7, 4))
    x = np.arange(len(layers))
    for feature in features:
        line, = ax.plot(x, means[feature], marker="o", ms=3, label=str(feature))
        ax.fill_between(x, means[feature] - stds[feature], means[feature] + stds[feature],
                        color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xticks(x, [str(layer) for layer in layers], rotation=45 if len(layers) > 8 else 0, ha="right"
                  if len(layers) > 8 else "center")
    ax.set_xlabel("layer")
    ax.set_ylabel("permutation importance")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.legend(fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    return ax


def weights_heatmap(weights, ax=None, title=None, cmap="RdBu_r"):
    """Heatmap of learned weights: ``model.get_weights()`` (m, 1) or (m, m) lower triangle.

    The colour scale is symmetric around 0; the unused upper triangle is blank. Returns the Axes.
    """
    if hasattr(weights, "get_weights"):
        weights = weights.get_weights()
    if not isinstance(weights, pd.DataFrame):
        raise TypeError("weights must be a DataFrame from get_weights() or a fitted model.")
    values = weights.to_numpy(dtype=np.float64)
    ax = _axes(ax, (1.5 + 0.45 * values.shape[1], 1 + 0.4 * values.shape[0]))
    vmax = np.nanmax(np.abs(values)) or 1.0
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-vmax, vmax=vmax)
    ax.set_yticks(np.arange(values.shape[0]), [str(i) for i in weights.index])
    ax.set_xticks(np.arange(values.shape[1]), [str(c) for c in weights.columns], rotation=45, ha="right")
    ax.figure.colorbar(image, ax=ax, shrink=0.8, label="weight")
    if title:
        ax.set_title(title)
    return ax


def _labels(values, n, what):
    """(n,) string labels, missing values shown as 'missing'."""
    labels = pd.Series(np.asarray(values, dtype=object))
    if len(labels) != n:
        raise ValueError(f"{what} has {len(labels)} values for {n} stimuli.")
    return labels.where(labels.notna(), "missing").astype(str)


def _rdm(Y, distance):
    from scipy.spatial.distance import squareform
    from .ops import condensed_rdm
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 2 and Y.shape[0] == Y.shape[1] and distance == "precomputed":
        return Y
    return squareform(condensed_rdm(Y.reshape(len(Y), -1), distance))


def rdm_heatmap(Y, ax=None, order_by=None, distance="euclidean", title=None, cmap="viridis"):
    """Heatmap of the neural RDM of representations Y (n, p), or of an (n, n) matrix with
    ``distance='precomputed'``. order_by: a Series/array (n,) (e.g. a feature) to sort stimuli by,
    with group boundaries drawn. Returns the Axes.
    """
    D = _rdm(Y, distance)
    order = np.arange(len(D))
    ax = _axes(ax, (5, 4.5))
    if order_by is not None:
        labels = _labels(order_by, len(D), "order_by")
        order = np.argsort(labels.to_numpy(), kind="stable")
        sorted_labels = labels.to_numpy()[order]
        for edge in np.flatnonzero(sorted_labels[1:] != sorted_labels[:-1]) + 0.5:
            ax.axhline(edge, color="w", lw=0.8)
            ax.axvline(edge, color="w", lw=0.8)
    image = ax.imshow(D[np.ix_(order, order)], cmap=cmap)
    ax.figure.colorbar(image, ax=ax, shrink=0.8, label=f"{distance} distance")
    ax.set_xlabel("stimulus")
    ax.set_ylabel("stimulus")
    if title:
        ax.set_title(title)
    return ax


def mds_scatter(Y, labels, ax=None, distance="euclidean", title=None, random_state=0):
    """2-D metric MDS of the neural RDM of Y (n, p), points coloured by ``labels`` (n,), e.g. one
    feature column. Returns the Axes."""
    from sklearn.manifold import MDS
    import warnings
    D = _rdm(Y, distance)
    labels = _labels(labels, len(D), "labels")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        xy = MDS(n_components=2, dissimilarity="precomputed", n_init=1, random_state=random_state).fit_transform(D)
    ax = _axes(ax, (5, 4.5))
    for level in sorted(labels.unique()):
        keep = (labels == level).to_numpy()
        ax.scatter(xy[keep, 0], xy[keep, 1], s=10, alpha=0.7, label=level)
    ax.legend(fontsize="small", markerscale=2, frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def simulation(results, path=None, chance=None):
    """The simulation figure: (a) Frobenius distance to the ground truth vs noise per method,
    (b) steps to convergence vs noise (mean line, band = std over seeds). results: the DataFrame of
    :func:`fastmlem.simulate.run`; chance: the error of a random guess, drawn dashed in (a).
    Saves to ``path`` when given; returns the Figure."""
    import matplotlib.pyplot as plt
    _axes(None)  # the matplotlib check
    plt.close()
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, column, label in ((ax_a, "frobenius", "‖Ŵ − W_GT‖_F"), (ax_b, "steps", "steps to convergence")):
        for method, part in results.groupby("method", sort=False):
            stats = part.groupby("noise")[column].agg(["mean", "std"])
            if stats["mean"].isna().all():  # FR-RSA has no steps
                continue
            stats = stats.fillna(0.0)
            line, = ax.plot(stats.index, stats["mean"], marker="o", label=method)
            ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                            color=line.get_color(), alpha=0.2, lw=0)
        ax.set_xlabel("noise σ")
        ax.set_ylabel(label)
        ax.legend(frameon=False)
    if chance is not None:
        ax_a.axhline(chance, color="0.4", ls="--", lw=1)
        ax_a.annotate("chance", (ax_a.get_xlim()[0], chance), xytext=(4, -12), textcoords="offset points",
                      color="0.4", fontsize="small")
    ax_a.set_title("(a) distance to the ground-truth metric")
    ax_b.set_title("(b) steps to convergence")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
