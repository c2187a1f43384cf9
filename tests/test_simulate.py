"""The paper's synthetic benchmark: data generation, the weight-matrix comparison, the runner."""
import numpy as np
import pytest

from fastmlem import numpy_backend as nb
from fastmlem import simulate as sim


def test_dataset_follows_the_protocol():
    data = sim.make_dataset(n_stimuli=40, n_features=5, noise=0.0, n_dims=16, seed=3)
    X, Y, W, D = data["X"], data["Y"], data["W"], data["D"]
    assert X.shape == (40, 5) and set(np.unique(X.to_numpy())) <= {0.0, 1.0} and Y.shape == (40, 16)
    assert np.linalg.norm(W) == pytest.approx(1.0) and np.linalg.eigvalsh(W).min() > 0
    i, j = 2, 7
    d = np.abs(X.to_numpy()[i] - X.to_numpy()[j])
    assert D[i, j] == pytest.approx(d @ W @ d)
    np.testing.assert_allclose(np.mean(np.sum(data["embedding"] ** 2, 1)), 16)
    noisy = sim.make_dataset(n_stimuli=40, n_features=5, noise=2.0, n_dims=16, seed=3)
    np.testing.assert_array_equal(noisy["W"], W)
    assert np.std(noisy["Y"] - data["embedding"]) == pytest.approx(2.0, rel=0.1)


def test_dataset_without_embedding_is_the_noisy_ground_truth_rdm():
    clean = sim.make_dataset(n_stimuli=30, n_features=4, noise=0.0, seed=1, embedding="none")
    np.testing.assert_allclose(clean["Y"], clean["D"], atol=1e-12)
    noisy = sim.make_dataset(n_stimuli=30, n_features=4, noise=0.5, seed=1, embedding="none")["Y"]
    np.testing.assert_array_equal(noisy, noisy.T)
    assert (np.diag(noisy) == 0).all()
    off = np.triu_indices(30, 1)
    assert np.std(noisy[off] - clean["D"][off]) == pytest.approx(0.5 * clean["D"][off].std(), rel=0.1)
    with pytest.raises(ValueError, match="embedding"):
        sim.make_dataset(n_stimuli=30, n_features=4, embedding="pca")


def test_quadratic_form_of_exact_coefficients_is_the_ground_truth():
    rng = np.random.default_rng(0)
    W = sim.random_spd(6, rng)
    X = rng.integers(0, 2, (50, 6)).astype(float)
    i, j = nb.all_pairs(50)
    F = nb.feature_distances(X, i, j, interactions=True)
    d = np.abs(X[i] - X[j])
    coef = np.linalg.lstsq(F, np.einsum("ka,ab,kb->k", d, W, d), rcond=None)[0]
    np.testing.assert_allclose(sim.quadratic_form(coef * 3.7, 6), W, atol=1e-10)


def test_runner_table_and_sanity():
    results = sim.run(noise_levels=(0.0, 3.0), seeds=(0,), n_stimuli=60, n_features=4, n_dims=32,
                      methods=("MLEM", "FR-RSA-I", "FR-RSA"), max_steps=200, verbose=False)
    assert len(results) == 6 and set(results.method) == {"MLEM", "FR-RSA-I", "FR-RSA"}
    assert results.frobenius.between(0, 2).all()
    clean = results[results.noise == 0]
    # without noise every method predicts held-out pairs (MLEM: 0.85 with scikit-learn 1.7's MDS, 0.79 with 1.1's)
    assert (clean.test_spearman > 0.7).all()
    noisy = results[results.noise == 3]
    assert (noisy.test_spearman.to_numpy() < clean.test_spearman.to_numpy()).all()
    assert results.loc[results.method != "FR-RSA", "steps"].ge(1).all()
    wins = sim.mlem_wins(results)
    assert list(wins.index) == [0.0, 3.0]
    with pytest.raises(ValueError, match="unknown method"):
        sim.run(methods=("MLEM", "RSA"), verbose=False)


def test_runner_without_embedding_recovers_the_ground_truth():
    """With the exact dissimilarities, classic FR-RSA (ridge on the interaction columns) is exact at sigma = 0."""
    results = sim.run(noise_levels=(0.0,), seeds=(0,), n_stimuli=50, n_features=3, methods=("FR-RSA", "MLEM"),
                      max_steps=300, verbose=False, embedding="none")
    frrsa, mlem = results.set_index("method").loc[["FR-RSA", "MLEM"], "frobenius"]
    assert frrsa < 1e-6 and mlem < 0.5


def test_without_the_mds_step_mlem_recovers_w_gt_better_and_more_reliably():
    """With the exact dissimilarities (embedding='none'), a snapshot over 5 seeds: MLEM's SPD metric has
    a lower mean error than FR-RSA-I at sigma 0 and 5, a smaller seed-to-seed spread (FR-RSA-I's error
    is bimodal: some seeds ~0.35, others > 1), and needs fewer steps."""
    results = sim.run(noise_levels=(0.0, 5.0), seeds=range(5), n_stimuli=128, n_features=8, max_steps=1000,
                      verbose=False, embedding="none")
    wins = sim.mlem_wins(results)
    assert wins["lower error"].all() and wins["fewer steps"].all()
    spread = results[results.noise == 0].groupby("method").frobenius.std()
    assert spread["MLEM"] < spread["FR-RSA-I"] / 2


@pytest.mark.xfail(strict=True, reason="the paper's claim does not reproduce with this protocol: FR-RSA-I "
                   "recovers W_GT at least as well as MLEM at sigma = 1 after the MDS step (see the README)")
def test_paper_claim_mlem_lower_error_than_fr_rsa_i_at_noise_1():
    results = sim.run(noise_levels=(1.0,), seeds=(0, 1), n_stimuli=128, n_features=8, max_steps=1000,
                      verbose=False)
    assert sim.mlem_wins(results)["lower error"].all()
