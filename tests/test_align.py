"""Tests for fastmlem.align: barycentric alignment, per-stimulus agreement, cross-modal retrieval."""
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from fastmlem.align import (BarycentricAlignment, cross_modal_retrieval, identification,
                            mean_pairwise_cosine, procrustes_distance, retrieval_accuracy)
from fastmlem.align import _agreement


def orth(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def perm_matrix(d, rng):
    return np.eye(d)[rng.permutation(d)]


def pad(B, d):
    return np.hstack([B, np.zeros((B.shape[0], d - B.shape[1]))])


def noisy_models(rng, n=80, k=6, dims=(6, 9, 12, 7), noise=0.3):
    """Rotated copies of one latent (n, k) with independent noise, each with its own offset."""
    B = rng.standard_normal((n, k))
    return [pad(B, d) @ orth(d, rng) + noise * rng.standard_normal((n, d)) + rng.normal(size=d)
            for d in dims]


# --------------------------------------------------------------------------- exact recovery
def test_recovers_known_rotations_same_dim():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((50, 6))
    Qs = [orth(6, rng) for _ in range(4)]
    offset = rng.normal(size=6) * 5
    al = BarycentricAlignment(group="orth").fit([B @ Q + offset for Q in Qs])
    Bc = B - B.mean(axis=0)
    for Q, R in zip(Qs, al.rotations_):
        np.testing.assert_allclose(R, Q.T @ Qs[0], atol=1e-10)  # Z_k R_k = Z_0
    np.testing.assert_allclose(al.barycenter_, Bc @ Qs[0], atol=1e-10)
    assert al.converged_ and al.n_iter_ <= 2
    assert al.summary()["barycenter_r2"] == pytest.approx(1.0)


def test_recovers_rotations_with_differing_dims():
    rng = np.random.default_rng(1)
    B = rng.standard_normal((40, 5))
    models = [pad(B, d) @ orth(d, rng) for d in (5, 8, 12)]
    al = BarycentricAlignment(group="orth", dim="pad").fit(models)
    assert al.dim_ == 12 and al.aligned_.shape == (3, 40, 12)
    np.testing.assert_allclose(al.aligned_, np.broadcast_to(al.barycenter_, (3, 40, 12)), atol=1e-10)
    assert procrustes_distance(al.barycenter_, B) < 1e-7
    for R in al.rotations_:
        np.testing.assert_allclose(R @ R.T, np.eye(12), atol=1e-10)


@pytest.mark.parametrize("dims", [(7, 7, 7), (7, 9, 11)])
def test_recovers_known_permutations(dims):
    rng = np.random.default_rng(2)
    B = rng.standard_normal((60, 7)) * np.arange(1, 8)  # distinct unit scales
    Ps = [perm_matrix(d, rng) for d in dims]
    al = BarycentricAlignment(group="perm").fit([pad(B, d) @ P for d, P in zip(dims, Ps)])
    np.testing.assert_allclose(al.aligned_, np.broadcast_to(al.barycenter_, al.aligned_.shape),
                               atol=1e-12)
    for R in al.rotations_:  # permutation matrices
        assert set(np.unique(R)) == {0.0, 1.0} and (R.sum(0) == 1).all() and (R.sum(1) == 1).all()
    if len(set(dims)) == 1:
        for P, R in zip(Ps, al.rotations_):
            np.testing.assert_array_equal(R, P.T @ Ps[0])


def test_identity_group_is_plain_mean():
    rng = np.random.default_rng(3)
    models = [rng.standard_normal((20, 4)) for _ in range(3)]
    al = BarycentricAlignment(group="identity").fit(models)
    expected = np.mean([m - m.mean(0) for m in models], axis=0)
    np.testing.assert_allclose(al.barycenter_, expected, atol=1e-12)
    assert al.n_iter_ == 1


# --------------------------------------------------------------------------- never in place
def test_inputs_are_never_modified():
    rng = np.random.default_rng(4)
    models = noisy_models(rng, n=40)
    for m in models:  # a large mean: any in-place centring or scaling would change them
        m += 100.0
        m.flags.writeable = False  # ... and would now raise
    before = [m.copy() for m in models]
    extra = models[0] @ orth(6, rng)
    extra.flags.writeable = False
    extra_before = extra.copy()
    for params in ({}, {"scale": "frobenius"}, {"scale": "standardize", "dim": 4},
                   {"group": "perm"}, {"init": "random", "random_state": 0}):
        al = BarycentricAlignment(**params).fit(models)
        al.transform(models[1][:5], 1)
        al.add_model(extra)
        al.agreement_null("dispersion", n_null=2, null="shuffle", random_state=0)
    cross_modal_retrieval(models[:2], models[2:], np.arange(30), np.arange(30, 40), dim=4)
    for m, b in zip(models, before):
        np.testing.assert_array_equal(m, b)
    np.testing.assert_array_equal(extra, extra_before)


# --------------------------------------------------------------------------- invariances
def test_model_order_invariance():
    rng = np.random.default_rng(5)
    models = noisy_models(rng, noise=0.5)
    fwd = BarycentricAlignment(tol=1e-12, max_iter=2000).fit(models)
    rev = BarycentricAlignment(tol=1e-12, max_iter=2000).fit(models[::-1])
    assert procrustes_distance(fwd.barycenter_, rev.barycenter_, normalize=False) < 1e-6
    assert fwd.history_["loss"].iloc[-1] == pytest.approx(rev.history_["loss"].iloc[-1], rel=1e-9)
    for kind in ("dispersion", "cosine"):
        pd.testing.assert_series_equal(fwd.stimulus_agreement(kind), rev.stimulus_agreement(kind),
                                       atol=1e-6)


def test_random_init_reaches_the_same_fit():
    models = noisy_models(np.random.default_rng(6))
    a = BarycentricAlignment(tol=1e-12, max_iter=2000).fit(models)
    b = BarycentricAlignment(tol=1e-12, max_iter=2000, init="random", random_state=3).fit(models)
    assert procrustes_distance(a.barycenter_, b.barycenter_, normalize=False) < 1e-6


# --------------------------------------------------------------------------- mapping new data
@pytest.mark.parametrize("params", [{}, {"dim": 5}, {"scale": "frobenius"},
                                    {"scale": "standardize", "dim": 8}, {"group": "perm"}])
def test_transform_of_training_rows_equals_aligned(params):
    models = noisy_models(np.random.default_rng(7))
    al = BarycentricAlignment(**params).fit(models)
    for j, X in enumerate(models):
        np.testing.assert_allclose(al.transform(X, j), al.aligned_[j], atol=1e-10)
    np.testing.assert_allclose(al.transform(models[2], "model_2"), al.aligned_[2], atol=1e-10)


def test_transform_of_heldout_noiseless_rows_lands_on_their_barycenter():
    rng = np.random.default_rng(8)
    B = rng.standard_normal((100, 6))
    models = [B @ orth(6, rng) + rng.normal(size=6) for _ in range(4)]
    train, test = np.arange(70), np.arange(70, 100)
    al = BarycentricAlignment().fit([m[train] for m in models])
    mapped = np.stack([al.transform(m[test], j) for j, m in enumerate(models)])
    # init="first": the shared space is model 0's centred frame (R_0 = I)
    expected = models[0][test] - models[0][train].mean(axis=0)
    np.testing.assert_allclose(mapped, np.broadcast_to(expected, mapped.shape), atol=1e-10)


def test_add_model_recovers_a_new_rotated_copy():
    rng = np.random.default_rng(9)
    B = rng.standard_normal((50, 6))
    Qs = [orth(6, rng) for _ in range(4)]
    al = BarycentricAlignment().fit({f"m{j}": B @ Q for j, Q in enumerate(Qs[:3])})
    bary = al.barycenter_.copy()
    al.add_model(B @ Qs[3] + 7.0, name="late")
    assert al.model_names_ == ["m0", "m1", "m2", "late"]
    assert al.aligned_.shape == (4, 50, 6) and al.rotations_.shape == (4, 6, 6)
    np.testing.assert_array_equal(al.barycenter_, bary)
    np.testing.assert_allclose(al.rotations_[3], Qs[3].T @ Qs[0], atol=1e-10)
    np.testing.assert_allclose(al.transform(B[:5] @ Qs[3] + 7.0, "late"), bary[:5], atol=1e-10)
    with pytest.raises(ValueError, match="already fitted"):
        al.add_model(B, name="late")
    with pytest.raises(ValueError, match="same stimuli"):
        al.add_model(B[:10])


# --------------------------------------------------------------------------- agreement
def planted(rng, n=100, K=5, d=8, noisy=(3, 17, 42, 60, 88), scale=2.0):
    B = rng.standard_normal((n, d))
    sigma = np.full(n, 0.05)
    sigma[list(noisy)] = scale
    return [B @ orth(d, rng) + sigma[:, None] * rng.standard_normal((n, d)) for _ in range(K)]


@pytest.mark.parametrize("kind", ["dispersion", "cosine", "identification"])
def test_agreement_detects_planted_noisy_stimuli(kind):
    noisy = {3, 17, 42, 60, 88}
    al = BarycentricAlignment().fit(planted(np.random.default_rng(10), noisy=sorted(noisy)))
    scores = al.stimulus_agreement(kind)
    assert isinstance(scores, pd.Series) and scores.name == kind and len(scores) == 100
    ranked = al.rank_stimuli(kind, top=5)
    assert list(ranked.columns) == ["direction", "rank", "stimulus", "kind", "score"]
    assert set(ranked.query("direction == 'divergent'")["stimulus"]) == noisy
    assert not noisy & set(ranked.query("direction == 'convergent'")["stimulus"])


def test_agreement_null_pvalues():
    rng = np.random.default_rng(11)
    noisy = [3, 17, 42, 60, 88]
    B = rng.standard_normal((100, 8))
    models = []
    for _ in range(5):  # the noisy stimuli get an unrelated row (same scale) in every model
        X = B.copy()
        X[noisy] = rng.standard_normal((len(noisy), 8))
        models.append(X @ orth(8, rng) + 0.05 * rng.standard_normal((100, 8)))
    al = BarycentricAlignment().fit(models)
    clean = np.setdiff1d(np.arange(100), noisy)
    for null in ("rotation", "shuffle"):
        table, draws = al.agreement_null("cosine", n_null=19, null=null, random_state=0,
                                         return_null=True)
        assert draws.shape == (19, 100)
        assert list(table.columns) == ["observed", "null_mean", "null_std", "p_value"]
        assert (table["p_value"].iloc[clean] == 1 / 20).all()
        assert table["p_value"].iloc[noisy].mean() > 0.2
    dispersion = al.agreement_null("dispersion", n_null=9, null="shuffle", random_state=0)
    assert (dispersion["p_value"].iloc[clean] == 0.1).all()


def test_cosine_and_identification_match_brute_force(monkeypatch):
    rng = np.random.default_rng(12)
    A = rng.standard_normal((4, 30, 5))
    A[:, :10] += 3 * rng.standard_normal((1, 10, 5))  # some shared structure
    U = A / np.linalg.norm(A, axis=-1, keepdims=True)
    pairs = [(m, l) for m in range(4) for l in range(4) if m != l]
    cos = np.mean([(U[m] * U[l]).sum(-1) for m, l in pairs], axis=0)
    np.testing.assert_allclose(mean_pairwise_cosine(A), cos, atol=1e-12)
    monkeypatch.setattr(_agreement, "_CHUNK_ENTRIES", 60)  # exercise the row blocks
    for metric in ("cosine", "euclidean"):
        hits = np.zeros(30)
        for m, l in pairs:
            if metric == "cosine":
                score = U[m] @ U[l].T
            else:
                score = -((A[m][:, None] - A[l][None]) ** 2).sum(-1)
            hits += score.argmax(axis=1) == np.arange(30)
        np.testing.assert_allclose(identification(A, metric), hits / len(pairs))


def test_summary_history_and_model_similarity():
    al = BarycentricAlignment(scale="frobenius").fit(noisy_models(np.random.default_rng(13)))
    s = al.summary()
    for key in ("n_models", "n_stimuli", "dim", "n_iter", "converged", "loss", "barycenter_r2",
                "mean_dispersion", "mean_cosine", "mean_model_similarity"):
        assert key in s.index
    assert 0.5 < s["barycenter_r2"] <= 1 and 0 < s["mean_model_similarity"] <= 1
    h = al.history_
    assert list(h.columns) == ["iteration", "loss", "rel_change"] and len(h) == al.n_iter_
    assert (np.diff(h["loss"]) <= 1e-12).all()  # block coordinate descent never increases it
    sim = al.model_similarity()
    assert sim.shape == (4, 4) and np.allclose(np.diag(sim), 1.0)


def test_sklearn_conventions_and_dataframe_input():
    al = BarycentricAlignment(dim=3, scale="frobenius", random_state=1)
    assert clone(al).get_params() == al.get_params()
    rng = np.random.default_rng(14)
    idx = pd.Index([f"img{i}" for i in range(20)], name="image")
    models = {"a": pd.DataFrame(rng.standard_normal((20, 4)), index=idx),
              "b": rng.standard_normal((20, 6))}
    al.fit(models)
    assert al.model_names_ == ["a", "b"] and list(al.stimuli_) == list(idx)
    assert al.stimulus_agreement("cosine").index.equals(idx)
    assert [p.shape for p in al.projections_] == [(4, 3), (6, 3)]


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("models, match", [
    ([np.ones((10, 3)), np.ones((9, 3))], "numbers of rows differ"),
    ([np.ones((10, 3)), np.full((10, 3), np.nan)], "NaN"),
    ([np.ones((10, 3)), np.full((10, 3), np.inf)], "infinite"),
    ([np.ones((10, 3)), np.ones(10)], "1-D"),
    ([np.ones((10, 3))], "at least 2 models"),
    (np.ones((10, 3)), "3-D"),
    ([np.ones((1, 3)), np.ones((1, 3))], "at least 2 stimuli"),
])
def test_bad_models_raise_clear_errors(models, match):
    with pytest.raises(ValueError, match=match):
        BarycentricAlignment().fit(models)


@pytest.mark.parametrize("group", ["orth", "perm"])
def test_gram_route_matches_the_data_route(monkeypatch, group):
    """solve() iterates on the (K k, K k) Gram when K k < 2 n; same fit as on the data."""
    from fastmlem.align import _solve

    rng = np.random.default_rng(21)
    models = noisy_models(rng)
    fast = BarycentricAlignment(group=group, tol=1e-10, max_iter=500).fit(models)
    monkeypatch.setattr(_solve, "GRAM_BYTES", 0)
    plain = BarycentricAlignment(group=group, tol=1e-10, max_iter=500).fit(models)
    assert fast.n_iter_ == plain.n_iter_ and fast.converged_
    np.testing.assert_allclose(fast.barycenter_, plain.barycenter_, atol=1e-9)
    np.testing.assert_allclose(fast.history_.to_numpy(), plain.history_.to_numpy(),
                               rtol=1e-6, atol=1e-9)


def test_extreme_values_neither_hang_nor_break_the_fit():
    """An entry of 1e308 once sent the SVD of an inf/NaN cross-covariance into an endless loop."""
    import threading

    rng = np.random.default_rng(17)
    A, B = rng.standard_normal((50, 4)), rng.standard_normal((50, 4))
    A[3, 1] = 1e308
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("fit", BarycentricAlignment(
        max_iter=20).fit([A, B])), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "fit hangs on an entry of 1e308"
    al = out["fit"]
    assert np.all(np.isfinite(al.barycenter_)) and np.all(np.isfinite(al.rotations_))


@pytest.mark.parametrize("s", [1e-300, 1e-30, 1e30, 1e300])
@pytest.mark.parametrize("scale", [None, "frobenius", "standardize"])
def test_alignment_is_equivariant_to_the_scale_of_the_data(s, scale):
    rng = np.random.default_rng(18)
    models = noisy_models(rng)
    base = BarycentricAlignment(scale=scale).fit(models)
    moved = BarycentricAlignment(scale=scale).fit([m * s for m in models])
    np.testing.assert_allclose(moved.rotations_, base.rotations_, atol=1e-8)
    factor = 1.0 if scale else s
    np.testing.assert_allclose(moved.barycenter_ / factor, base.barycenter_, rtol=1e-8,
                               atol=1e-10 * np.abs(base.barycenter_).max())
    assert procrustes_distance(models[0] * s, models[1]) == pytest.approx(
        procrustes_distance(models[0], models[1]), rel=1e-10)
    assert procrustes_distance(models[0] * s, models[1] * s, normalize=False) == pytest.approx(
        s * procrustes_distance(models[0], models[1], normalize=False), rel=1e-10)


def test_torch_tensors_are_read():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(19)
    models = noisy_models(rng)
    base = BarycentricAlignment().fit(models)
    al = BarycentricAlignment().fit([torch.tensor(m, requires_grad=True) for m in models])
    np.testing.assert_allclose(al.barycenter_, base.barycenter_, rtol=1e-10)
    np.testing.assert_allclose(al.transform(torch.tensor(models[1]), 1), base.aligned_[1],
                               rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("params, match", [
    ({"dim": 11}, "only n=10 stimuli"), ({"dim": "min"}, "dim must be"),
    ({"group": "so3"}, "unknown group"), ({"scale": "l2"}, "unknown scale"),
    ({"max_iter": 0}, "max_iter"), ({"init": "mean"}, "init must be"),
])
def test_bad_params_raise_clear_errors(params, match):
    rng = np.random.default_rng(15)
    with pytest.raises(ValueError, match=match):
        BarycentricAlignment(**params).fit([rng.standard_normal((10, 3)) for _ in range(2)])


def test_misuse_after_fit_raises_clear_errors():
    rng = np.random.default_rng(16)
    with pytest.raises(RuntimeError, match="not fitted"):
        BarycentricAlignment().transform(np.ones((3, 3)))
    al = BarycentricAlignment().fit([rng.standard_normal((10, 3)) for _ in range(2)])
    with pytest.raises(ValueError, match="units"):
        al.transform(np.ones((3, 4)), 0)
    with pytest.raises(ValueError, match="unknown model"):
        al.transform(np.ones((3, 3)), "nope")
    with pytest.raises(ValueError, match="index"):
        al.transform(np.ones((3, 3)), 5)
    with pytest.raises(ValueError, match="units, more than"):
        al.add_model(rng.standard_normal((10, 5)))
    with pytest.raises(ValueError, match="unknown agreement kind"):
        al.stimulus_agreement("entropy")
    with pytest.raises(ValueError, match="unknown null"):
        al.agreement_null(null="bootstrap")


# --------------------------------------------------------------------------- cross-modal
def paired_groups(rng, n=300, latent=5):
    z = rng.standard_normal((n, latent))

    def model(d):
        return np.tanh(z @ rng.standard_normal((latent, d)) / 2) + 0.1 * rng.standard_normal((n, d))
    return [model(d) for d in (20, 30)], [model(d) for d in (25, 15)]


@pytest.mark.parametrize("strategy", ["joint", "barycenters"])
def test_cross_modal_retrieval_beats_chance(strategy):
    A, B = paired_groups(np.random.default_rng(17))
    res = cross_modal_retrieval(A, B, np.arange(200), np.arange(200, 300), strategy=strategy,
                                dim=8, scale="frobenius")
    acc = res.accuracy.set_index(["direction", "k"])["accuracy"]
    assert res.similarity.shape == (100, 100) and res.embedding_a.shape == (100, 8)
    assert acc[("a->b", 1)] > 0.3 and acc[("b->a", 5)] > 0.6  # chance: 0.01 and 0.05
    with pytest.raises(ValueError, match="overlap"):
        cross_modal_retrieval(A, B, np.arange(200), np.arange(150, 300))


def test_retrieval_accuracy_counts_ranks():
    S = np.array([[1.0, 0.5, 0.2], [0.9, 0.5, 0.3], [0.0, 0.2, 0.8]])
    acc = retrieval_accuracy(S, ks=(1, 2)).set_index(["direction", "k"])["accuracy"]
    assert acc[("a->b", 1)] == pytest.approx(2 / 3) and acc[("a->b", 2)] == 1.0
    assert acc[("b->a", 1)] == 1.0  # column 1: a tie with the true pair counts as retrieved


# --------------------------------------------------------------------------- GPU
def test_cupy_matches_numpy():
    cp = pytest.importorskip("cupy")
    models = noisy_models(np.random.default_rng(18))
    ref = BarycentricAlignment(dim=5, scale="frobenius").fit(models)
    gpu = BarycentricAlignment(dim=5, scale="frobenius").fit([cp.asarray(m) for m in models])
    assert isinstance(gpu.barycenter_, cp.ndarray)
    assert procrustes_distance(cp.asnumpy(gpu.barycenter_), ref.barycenter_, normalize=False) < 1e-8
    pd.testing.assert_series_equal(gpu.stimulus_agreement("identification"),
                                   ref.stimulus_agreement("identification"))
    np.testing.assert_allclose(cp.asnumpy(gpu.transform(cp.asarray(models[1]), 1)),
                               cp.asnumpy(gpu.aligned_[1]), atol=1e-10)
