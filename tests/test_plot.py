"""fastmlem.plot draws every figure from real results (Agg backend) without error."""
import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fastmlem import MLEM, plot  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.choice(["x", "y"], 60), "b": rng.choice(["u", "v"], 60)})
    Y = np.column_stack([(X.a == "x") * 2.0, (X.b == "u") * 1.0, rng.normal(size=(60, 4))])
    model = MLEM(interactions=True, random_state=0, batch_size=300, max_steps=30).fit(X, Y)
    return model, X, Y


@pytest.mark.filterwarnings("ignore:high variability of the baseline")
def test_every_figure(fitted, tmp_path):
    model, X, Y = fitted
    imp, _ = model.score()
    axes = [plot.importance_bars(imp, top=2), plot.importance_bars(model.score(tidy=True)),
            plot.importance_by_layer({"layer_0": imp, "layer_1": imp * 2}),
            plot.weights_heatmap(model), plot.rdm_heatmap(Y, order_by=X.a), plot.mds_scatter(Y, X.b)]
    for k, ax in enumerate(axes):
        assert ax.has_data() or ax.images
        ax.figure.savefig(tmp_path / f"{k}.png")
    assert len(axes[0].patches) == 2  # top=2 bars
    plt.close("all")


def test_bad_inputs(fitted):
    model, X, Y = fitted
    with pytest.raises(TypeError, match="MLEM.score"):
        plot.importance_bars(np.zeros(3))
    with pytest.raises(ValueError, match="order_by has"):
        plot.rdm_heatmap(Y, order_by=X.a[:10])
    with pytest.raises(TypeError, match="non-empty dict"):
        plot.importance_by_layer({})


def test_missing_labels_are_shown_as_missing(fitted):
    _, X, Y = fitted
    labels = np.array(list(X.a[:-1]) + [None], dtype=object)
    ax = plot.mds_scatter(Y, labels)
    assert "missing" in [t.get_text() for t in ax.get_legend().get_texts()]
    plot.rdm_heatmap(Y, order_by=labels)
    plt.close("all")
