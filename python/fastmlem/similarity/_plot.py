"""Plot of a score optimisation: what the optimised data capture as the score improves."""
from __future__ import annotations


def plot_optimization(result, *, max_pcs: int = 10, axes=None, title: str | None = None):
    """Draw PC R² and relative decoding of an :class:`OptimizationResult` against its score.

    Left: held-out R² of each of the target's first ``max_pcs`` principal components (colour:
    PC rank, with its share of variance in the legend).  Right: decoding accuracy from the
    optimised data divided by the target's own, one line per task (dashed line: parity).
    For distances the x axis is reversed, so better is always to the right.

    Parameters
    ----------
    result : OptimizationResult.
    max_pcs : number of leading PCs drawn.
    axes : optional pair of matplotlib Axes to draw in; a new figure otherwise.
    title : figure title (default: the measure id).

    Returns
    -------
    matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    own_figure = axes is None
    if own_figure:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    fig = axes[0].figure
    ax_pc, ax_dec = axes
    scores = result.scores
    label = "distance" if result.measure.kind == "distance" else "score"
    pcs = result.pc_r2.iloc[:, :max_pcs]
    cmap = plt.get_cmap("viridis")
    for i, name in enumerate(pcs.columns):
        share = 100 * result.pc_variance[i]
        ax_pc.plot(scores.loc[pcs.index], pcs[name], color=cmap(i / max(len(pcs.columns) - 1, 1)),
                   label=f"{name} ({share:.1f}% var)")
    ax_pc.set(xlabel=f"{result.measure.id} {label}", ylabel="held-out R² of target PC",
              ylim=(-0.1, 1.05))
    ax_pc.legend(fontsize=7, loc="upper left")
    dec = result.decoding
    for name in dec.columns:
        ax_dec.plot(scores.loc[dec.index], dec[name], marker=".", label=name)
    ax_dec.axhline(1.0, color="grey", ls="--", lw=1)
    ax_dec.set(xlabel=f"{result.measure.id} {label}", ylabel="decoding accuracy / target's")
    if len(dec.columns):
        ax_dec.legend(fontsize=8)
    else:
        ax_dec.text(0.5, 0.5, "no task labels given", ha="center", transform=ax_dec.transAxes)
    for ax in axes:
        ax.grid(alpha=0.3)
        if result.measure.kind == "distance" and not ax.xaxis_inverted():
            ax.invert_xaxis()
    title = title or f"optimising {result.measure.id}"
    if own_figure:
        fig.suptitle(title)
    else:
        ax_pc.set_title(title)
    return fig
