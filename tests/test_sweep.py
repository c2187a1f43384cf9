"""Sweep of bad (and borderline) inputs over every public entry point except similarity/align.

Each group of cases runs in its own interpreter (tests/_isolated.py): a case that aborts or
segfaults fails alone, and the next case runs in a fresh interpreter. A case passes when
- it is marked ERR and raises a clear error (ValueError, TypeError, IndexError, MemoryError,
  RuntimeError, ImportError) with a message, or
- it is marked OK and runs, its own asserts (the right answer) included.
Outcomes counted as failures: crashed, hung, wrong (no error for a bad input, or a failed assert),
unclear (an error of another kind, e.g. UnboundLocalError, AttributeError, ZeroDivisionError).

The second half checks kernels against their numpy twins (fastmlem.numpy_backend) on inputs drawn
by hypothesis.
"""
import numpy as np
import pytest

from fastmlem import numpy_backend as nb
from fastmlem import ops
from _isolated import run_cases

ERR, OK = "error", "ok"
CLEAN = {"ValueError", "TypeError", "IndexError", "MemoryError", "RuntimeError", "ImportError"}

SETUP = """
import warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd
from fastmlem import MLEM, FRRSA, ops, numpy_backend as nb, encoding, simulate, datasets
rng = np.random.default_rng(0)
X = pd.DataFrame({f"f{k}": rng.choice(["a", "b"], 60) for k in range(3)})
codes = np.column_stack([(X[c] == "a").to_numpy(float) for c in X])
Y = np.column_stack([codes * [3.0, 2.0, 1.0], rng.normal(size=(60, 5))])
Xe = rng.integers(0, 2, (20, 3)).astype(float)
D = nb.condensed_rdm(rng.normal(size=(20, 4)))
fit = dict(batch_size=100, max_steps=3, random_state=0)
quick = dict(n_outer_repeats=1, n_inner_repeats=1, random_state=0)
x30 = rng.normal(size=30); g30 = rng.normal(size=30)
"""

GROUPS = {
    "mlem": [
        ("X with inf", ERR, "MLEM(**fit).fit(X.assign(f3=[np.inf] + [0.0] * 59), Y)"),
        ("Y with inf", ERR, "Y[0, 0] = np.inf; MLEM(**fit).fit(X, Y)"),
        ("Y with NaN", ERR, "Y[3, 1] = np.nan; MLEM(**fit).fit(X, Y)"),
        ("Y 0-d", ERR, "MLEM(**fit).fit(X, np.float64(1.0))"),
        ("Y no columns", ERR, "MLEM(**fit).fit(X, np.zeros((60, 0)))"),
        ("Y strings", ERR, "MLEM(**fit).fit(X, np.array([['a']] * 60))"),
        ("Y complex", ERR, "MLEM(**fit).fit(X, Y + 1j)"),
        ("Y object", ERR, "MLEM(**fit).fit(X, np.array([[None]] * 60))"),
        ("Y rows mismatch", ERR, "MLEM(**fit).fit(X, Y[:-1])"),
        ("X 3-D features", ERR, "MLEM(**fit).fit(np.ones((60, 2, 2)), Y)"),
        ("2 stimuli", ERR, "MLEM(**fit).fit(X.iloc[:2], Y[:2])"),
        ("empty X", ERR, "MLEM(**fit).fit(pd.DataFrame(index=range(60)), Y)"),
        ("all-NaN column: a constant feature, weight 0", OK,
         "m = MLEM(**fit).fit(X.assign(f3=np.nan), Y); assert m.get_weights().loc['f3', 'Weight'] == 0"),
        ("feature names length", ERR, "MLEM(**fit).fit(X, Y, feature_names=['a'])"),
        ("duplicate names", ERR, "MLEM(**fit).fit(X, Y, feature_names=['a', 'a', 'b'])"),
        ("precomputed not square", ERR, "MLEM(distance='precomputed', **fit).fit(np.zeros((60, 59, 2)), np.zeros((60, 60)))"),
        ("score before fit", ERR, "MLEM().score()"),
        ("get_weights before fit", ERR, "MLEM().get_weights()"),
        ("score X without Y", ERR, "MLEM(**fit).fit(X, Y).score(X)"),
        ("score other features", ERR, "MLEM(**fit).fit(X, Y).score(X.iloc[:, :2], Y)"),
        ("score batch 2", ERR, "MLEM(**fit).fit(X, Y).score(batch_size=2)"),
        ("score batch 2**40", ERR, "MLEM(**fit).fit(X, Y).score(batch_size=2**40)"),
        ("score batch 10**12", ERR, "MLEM(**fit).fit(X, Y).score(batch_size=10**12)"),
        ("fit batch 2**40", ERR, "MLEM(batch_size=2**40, max_steps=3).fit(X, Y)"),
        ("lr inf", ERR, "MLEM(lr=np.inf, **fit).fit(X, Y)"),
        ("lr negative", ERR, "MLEM(lr=-1.0, **fit).fit(X, Y)"),
        ("weight_decay inf", ERR, "MLEM(weight_decay=np.inf, **fit).fit(X, Y)"),
        ("weight_decay nan", ERR, "MLEM(weight_decay=np.nan, **fit).fit(X, Y)"),
        ("threshold nan", ERR, "MLEM(threshold=np.nan).estimate_batch_size(X)"),
        ("factor 1", ERR, "MLEM(factor=1.0).estimate_batch_size(X)"),
        ("factor 0.5", ERR, "MLEM(factor=0.5).estimate_batch_size(X)"),
        ("factor 1.001 ends", OK, "assert MLEM(factor=1.001, threshold=0.05).estimate_batch_size(X) > 256"),
        ("batch_size_min 0", ERR, "MLEM(batch_size_min=0).estimate_batch_size(X)"),
        ("batch_size_max == min", OK, "assert MLEM(batch_size_min=500, batch_size_max=500).estimate_batch_size(X) == 500"),
        ("batch_size_max < min", ERR, "MLEM(batch_size_min=1000, batch_size_max=500).estimate_batch_size(X)"),
        ("random_state -1", ERR, "MLEM(batch_size=100, max_steps=3, random_state=-1).fit(X, Y)"),
        ("random_state str", ERR, "MLEM(batch_size=100, max_steps=3, random_state='0').fit(X, Y)"),
        ("n_permutations 0", ERR, "MLEM(n_permutations=0, **fit).fit(X, Y)"),
        ("max_steps 0", ERR, "MLEM(batch_size=100, max_steps=0).fit(X, Y)"),
        ("patience 0", ERR, "MLEM(patience=0, **fit).fit(X, Y)"),
        ("n_trials 1", ERR, "MLEM(n_trials=1, **fit).fit(X, Y)"),
        ("batch_size 1.5", ERR, "MLEM(batch_size=1.5, max_steps=3).fit(X, Y)"),
        ("distance 42", ERR, "MLEM(distance=42, **fit).fit(X, Y)"),
        ("distance unknown", ERR, "MLEM(distance='chebyshev', **fit).fit(X, Y)"),
        ("callable wrong shape", ERR, "MLEM(distance=lambda a, b: np.abs(a - b), **fit).fit(X, Y)"),
        ("callable inf", ERR, "MLEM(distance=lambda a, b: np.full(len(a), np.inf), **fit).fit(X, Y)"),
        ("memory huge", ERR, "MLEM(memory='huge', **fit).fit(X, Y)"),
        ("device gpu", ERR, "MLEM(device='gpu', **fit).fit(X, Y)"),
        ("strength -1", ERR, "MLEM(soft_rank_strength=-1, **fit).fit(X, Y)"),
        ("strength nan", ERR, "MLEM(soft_rank_strength=np.nan, **fit).fit(X, Y)"),
        ("regularization l1", ERR, "MLEM(soft_rank_regularization='l1', **fit).fit(X, Y)"),
        ("interactions str", ERR, "MLEM(interactions='yes', **fit).fit(X, Y)"),
        ("nan_to_num nan", ERR, "MLEM(nan_to_num=np.nan, **fit).fit(X, Y)"),
        ("corr threshold nan", ERR, "MLEM(corr_warning_threshold=np.nan, **fit).fit(X, Y)"),
        ("spd str", ERR, "MLEM(spd='no', **fit).fit(X, Y)"),
        ("all pairs too many", ERR, "MLEM(batch_size='all', memory='low', interactions=True).fit("
         "pd.DataFrame(np.random.default_rng(0).integers(0, 2, (3000, 12)).astype(float)), "
         "np.random.default_rng(1).normal(size=(3000, 2)))"),
        ("3 stimuli", OK, "m = MLEM(**fit).fit(X.iloc[[0, 1, 2, 3]].reset_index(drop=True).iloc[:3].assign(f0=['a', 'b', 'a'], f1=['a', 'a', 'b'], f2=['b', 'a', 'a']), Y[:3]); assert np.isfinite(m.weights_).all()"),
        ("float16 Y", OK, "assert np.isfinite(MLEM(**fit).fit(X, Y.astype(np.float16)).weights_).all()"),
        ("int Y", OK, "assert np.isfinite(MLEM(**fit).fit(X, (Y * 10).astype(int)).weights_).all()"),
        ("callable NaN -> nan_to_num", OK, "MLEM(distance=lambda a, b: np.full(len(a), np.nan), **fit).fit(X, Y)"),
        ("kl fit", OK, "m = MLEM(soft_rank_regularization='kl', **fit).fit(X, Y); assert np.isfinite(m.history_).all()"),
        ("fused == composed, interactions", OK, """
m = MLEM(random_state=4, batch_size=300, max_steps=3, n_permutations=3, interactions=True).fit(X, Y)
m.weights_ = np.array([0.1, 0.7, 0.3, 0.1, 0.1, 0.7])
fused, base = m.score(warning_threshold=1.0)
b, p = m._permutation_spearman(m._training_source(), 300, 6, m._seed(), m._seed() + 1)
assert np.array_equal(base, b) and np.array_equal(fused.to_numpy(), (b - p).reshape(6, 3).T)
"""),
        ("best weights returned", OK, """
m = MLEM(random_state=0, batch_size=300, max_steps=30, patience=1000, lr=0.5, weights_from='best').fit(X, Y)
k = int(np.argmax(m.history_)); r = m._training_source()
step = ops.mlem_step(r.X, r.targets, False, 0.0, 300, m._seed(), metric=r.metric); lo, hi = np.inf, -np.inf
for s in range(k):
    lo, hi = step(s, m.weights_, lo, hi)[2:]
assert step(k, m.weights_, lo, hi)[0] == m.history_[k]
"""),
    ],
    "frrsa": [
        ("nonnegative str", ERR, "FRRSA(nonnegative='no', **quick).fit(X, Y)"),
        ("fractions empty", ERR, "FRRSA(fractions=[], **quick).fit(X, Y)"),
        ("fractions > 1", ERR, "FRRSA(fractions=[0.5, 2.0], **quick).fit(X, Y)"),
        ("fractions str", ERR, "FRRSA(fractions=['a'], **quick).fit(X, Y)"),
        ("scoring kendall", ERR, "FRRSA(scoring='kendall', **quick).fit(X, Y)"),
        ("max_pairs 0", ERR, "FRRSA(max_pairs=0, **quick).fit(X, Y)"),
        ("outer splits 1", ERR, "FRRSA(n_outer_splits=1, **quick).fit(X, Y)"),
        ("splits too many", ERR, "FRRSA(n_outer_splits=40, **quick).fit(X, Y)"),
        ("random_state -1", ERR, "FRRSA(n_outer_repeats=1, n_inner_repeats=1, random_state=-1).fit(X, Y)"),
        ("batch_size 1", ERR, "FRRSA(batch_size=1, **quick).fit(X, Y)"),
        ("nan_to_num inf", ERR, "FRRSA(nan_to_num=np.inf, **quick).fit(X, Y)"),
        ("score batch 2**40", ERR, "FRRSA(batch_size=2**40, **quick).fit(X, Y).score()"),
        ("score batch 10**12", ERR, "FRRSA(**quick).fit(X, Y).score(batch_size=10**12)"),
        ("Y NaN", ERR, "Y[0, 0] = np.nan; FRRSA(**quick).fit(X, Y)"),
        ("Y * 1e154", OK, "w = FRRSA(**quick).fit(X, Y * 1e154).weights_; "
         "assert np.allclose(w, FRRSA(**quick).fit(X, Y).weights_, atol=1e-9)"),
        ("Y * 1e-160", OK, "w = FRRSA(**quick).fit(X, Y * 1e-160).weights_; "
         "assert np.allclose(w, FRRSA(**quick).fit(X, Y).weights_, atol=1e-9)"),
    ],
    "ops": [
        ("sample_pairs n 0", ERR, "ops.sample_pairs(0, 10, 0)"),
        ("sample_pairs size -1", ERR, "ops.sample_pairs(5, -1, 0)"),
        ("sample_pairs n 2.5", ERR, "ops.sample_pairs(2.5, 3, 0)"),
        ("sample_pairs 2**40 reaches high indices", OK,
         "i, j = ops.sample_pairs(2**40, 10000, 1); assert i.max() > 2**39 and j.max() > 2**39 and i.max() < 2**40"),
        ("sample_pairs twin 2**40", OK,
         "a = ops.sample_pairs(2**40, 1000, 1, 2); b = nb.sample_pairs(2**40, 1000, 1, 2); "
         "assert (a[0] == b[0]).all() and (a[1] == b[1]).all()"),
        ("feature_distances bad index", ERR, "ops.feature_distances(Xe, np.array([0, 20]), np.array([1, 2]))"),
        ("feature_distances negative index", ERR, "ops.feature_distances(Xe, np.array([-1]), np.array([1]))"),
        ("feature_distances i/j lengths", ERR, "ops.feature_distances(Xe, np.array([0]), np.array([1, 2]))"),
        ("feature_distances 1-D X", ERR, "ops.feature_distances(np.ones(5), np.array([0]), np.array([1]))"),
        ("feature_distances 2-D i", ERR, "ops.feature_distances(Xe, np.zeros((2, 2), int), np.zeros((2, 2), int))"),
        ("feature_distances str X", ERR, "ops.feature_distances(np.array([['a']]), np.array([0]), np.array([0]))"),
        ("rank_average 0-d", ERR, "ops.rank_average(np.float64(3.0))"),
        ("rank_average NaN", ERR, "ops.rank_average(np.array([1.0, np.nan]))"),
        ("rank_average empty", OK, "assert ops.rank_average(np.zeros(0)).shape == (0,)"),
        ("rank_average int64 2**60", OK,
         "x = np.array([2**60 + 2, 2**60 + 1, 2**60, 2**60 + 1]); "
         "assert (ops.rank_average(x) == [4, 2.5, 1, 2.5]).all()"),
        ("rank_average inf", OK, "assert (ops.rank_average(np.array([np.inf, -np.inf, 0.0])) == [3, 1, 2]).all()"),
        ("spearman shapes", ERR, "ops.spearman(np.ones(3), np.ones(4))"),
        ("spearman empty", ERR, "ops.spearman(np.ones(0), np.ones(0))"),
        ("spearman NaN", ERR, "ops.spearman(np.array([1.0, np.nan, 2]), np.ones(3))"),
        ("spearman 0-d", ERR, "ops.spearman(np.float64(1), np.float64(2))"),
        ("spearman constant", OK, "assert ops.spearman(np.ones(5), np.arange(5.0)) == 0"),
        ("soft_rank inf", ERR, "ops.soft_rank(np.array([1.0, np.inf]))"),
        ("soft_rank NaN", ERR, "ops.soft_rank(np.array([1.0, np.nan]))"),
        ("soft_rank empty", ERR, "ops.soft_rank(np.zeros(0))"),
        ("soft_rank 3-D", ERR, "ops.soft_rank(np.zeros((2, 2, 2)))"),
        ("soft_rank strength 0", ERR, "ops.soft_rank(x30, 0.0)"),
        ("soft_rank strength nan", ERR, "ops.soft_rank(x30, np.nan)"),
        ("soft_rank strength str", ERR, "ops.soft_rank(x30, 'big')"),
        ("soft_rank regularization", ERR, "ops.soft_rank(x30, 1.0, 'l1')"),
        ("vjp short g", ERR, "r, st = ops.soft_rank(x30, .05); ops.soft_rank_vjp(st, g30[:5])"),
        ("vjp 0-d g", ERR, "r, st = ops.soft_rank(x30, .05); ops.soft_rank_vjp(st, np.float64(1))"),
        ("vjp empty g", ERR, "r, st = ops.soft_rank(x30, .05); ops.soft_rank_vjp(st, np.zeros(0))"),
        ("vjp (30,) for (2, 30)", ERR, "r, st = ops.soft_rank(rng.normal(size=(2, 30)), .05); ops.soft_rank_vjp(st, g30)"),
        ("vjp long g", ERR, "r, st = ops.soft_rank(x30, .05); ops.soft_rank_vjp(st, np.ones(300))"),
        ("vjp edited perm", ERR, "r, st = ops.soft_rank(x30, .05); st.perm[0, 0] = 10**9; ops.soft_rank_vjp(st, g30)"),
        ("vjp negative perm", ERR, "r, st = ops.soft_rank(x30, .05); st.perm[0, 0] = -10**9; ops.soft_rank_vjp(st, g30)"),
        ("vjp edited blocks", ERR, "r, st = ops.soft_rank(x30, .05); st.block_start[0, 5] = 10**9; ops.soft_rank_vjp(st, g30)"),
        ("rank_loss_grad y 2-D", ERR, "ops.rank_loss_grad(np.ones((5, 2)), np.ones(2), np.ones((5, 1)))"),
        ("rank_loss_grad w", ERR, "ops.rank_loss_grad(np.ones((5, 2)), np.ones(3), np.ones(5))"),
        ("rank_loss_grad F 1-D", ERR, "ops.rank_loss_grad(np.ones(5), np.ones(1), np.ones(5))"),
        ("rank_loss_grad NaN F", ERR, "ops.rank_loss_grad(np.full((5, 2), np.nan), np.ones(2), np.ones(5))"),
        ("rank_loss_grad kl constants", OK,
         "assert ops.rank_loss_grad(np.zeros((10, 2)) + 0.3, np.ones(2), np.zeros(10), 1.0, 'kl')[0] == 0.0 "
         "and ops.rank_loss_grad(np.zeros((10, 2)), np.ones(2), np.zeros(10), 1.0, 'kl')[0] == 0.0"),
        ("mlem_step D size", ERR, "ops.mlem_step(Xe, D[:-1], False, 0.0, 10, 0)"),
        ("mlem_step batch 0", ERR, "ops.mlem_step(Xe, D, False, 0.0, 0, 0)"),
        ("mlem_step batch 2**40", ERR, "ops.mlem_step(Xe, D, False, 0.0, 2**40, 0)"),
        ("mlem_step w NaN", ERR, "ops.mlem_step(Xe, D, False, 0.0, 10, 0)(0, np.array([1, np.nan, 1]), np.inf, -np.inf)"),
        ("mlem_step w inf", ERR, "ops.mlem_step(Xe, D, False, 0.0, 10, 0)(0, np.array([1, np.inf, 1]), np.inf, -np.inf)"),
        ("mlem_step w shape", ERR, "ops.mlem_step(Xe, D, False, 0.0, 10, 0)(0, np.ones(2), np.inf, -np.inf)"),
        ("mlem_step strength 0", ERR, "ops.mlem_step(Xe, D, False, 0.0, 10, 0, 0.0)"),
        ("neural metric", ERR, "ops.neural_distances(Y, np.array([0]), np.array([1]), 'hamming')"),
        ("neural 1-D Y", ERR, "ops.neural_distances(np.ones(5), np.array([0]), np.array([1]))"),
        ("neural index", ERR, "ops.neural_distances(Y, np.array([0]), np.array([60]))"),
        ("neural i/j lengths", ERR, "ops.neural_distances(Y, np.array([0, 1]), np.array([1]))"),
        ("neural complex", ERR, "ops.neural_distances(Y + 1j, np.array([0]), np.array([1]))"),
        ("neural strided Y", OK,
         "Z = np.asfortranarray(Y)[:, ::2]; i, j = nb.sample_pairs(60, 50, 0); "
         "assert np.allclose(ops.neural_distances(Z, i, j), nb.neural_distances(Z, i, j), rtol=1e-13)"),
        ("neural int Y", OK,
         "Z = (Y * 10).astype(int); i, j = nb.sample_pairs(60, 50, 0); "
         "assert np.allclose(ops.neural_distances(Z, i, j, 'manhattan'), nb.neural_distances(Z, i, j, 'manhattan'))"),
        ("permutation_spearman shapes", ERR, "ops.permutation_spearman(np.ones((2, 5)), np.ones((1, 3, 5)), np.ones((2, 5)))"),
        ("permutation_spearman NaN", ERR, "ops.permutation_spearman(np.full((2, 5), np.nan), np.ones((2, 5)), np.ones((2, 5)))"),
        ("permutation_spearman 4-D", ERR, "ops.permutation_spearman(np.ones((2, 5)), np.ones((1, 1, 2, 5)), np.ones((2, 5)))"),
        ("importance batch -1", ERR, "ops.permutation_importance(Xe, D, np.ones(3), False, 0.0, -1, 0, 0, 1, 2)"),
        ("importance batch 0", ERR, "ops.permutation_importance(Xe, D, np.ones(3), False, 0.0, 0, 0, 0, 1, 2)"),
        ("importance batch 2**40", ERR, "ops.permutation_importance(Xe, D, np.ones(3), False, 0.0, 2**40, 0, 0, 1, 2)"),
        ("importance w NaN", ERR, "ops.permutation_importance(Xe, D, np.array([1, np.nan, 1]), False, 0.0, 10, 0, 0, 1, 2)"),
        ("importance w shape", ERR, "ops.permutation_importance(Xe, D, np.ones(2), False, 0.0, 10, 0, 0, 1, 2)"),
        ("importance D shape", ERR, "ops.permutation_importance(Xe, D[:-1], np.ones(3), False, 0.0, 10, 0, 0, 1, 2)"),
        ("importance 0 permutations", ERR, "ops.permutation_importance(Xe, D, np.ones(3), False, 0.0, 10, 0, 0, 1, 0)"),
    ],
    "core": [  # fastmlem._core directly, past every Python check
        ("core vjp short g", ERR, "from fastmlem import _core; r, st = ops.soft_rank(x30, .05); "
         "_core.soft_rank_vjp(g30[None, :5], st.x, st.ranks, st.perm, st.block_start, st.eps, False)"),
        ("core vjp perm", ERR, "from fastmlem import _core; r, st = ops.soft_rank(x30, .05); st.perm[0, 3] = 99; "
         "_core.soft_rank_vjp(g30[None], st.x, st.ranks, st.perm, st.block_start, st.eps, False)"),
        ("core soft_rank eps", ERR, "from fastmlem import _core; _core.soft_rank(x30[None], np.ones(3), False)"),
        ("core rank 0-d", ERR, "from fastmlem import _core; _core.rank_average(np.float64(1))"),
        ("core spearman shapes", ERR, "from fastmlem import _core; _core.spearman(np.ones((2, 3)), np.ones(3))"),
        ("core features index", ERR, "from fastmlem import _core; _core.feature_distances(Xe, np.array([99]), np.array([0]), False, 0.0)"),
        ("core neural index", ERR, "from fastmlem import _core; _core.neural_distances(Y, len(Y), np.array([0]), np.array([-7]), 'cosine')"),
        ("core step D", ERR, "from fastmlem import _core; _core.MlemStep(Xe, D[:3], 'euclidean', False, 0.0, 10, 0, 1.0, False)"),
        ("core step w", ERR, "from fastmlem import _core; _core.MlemStep(Xe, D, 'euclidean', False, 0.0, 10, 0, 1.0, False).step(0, np.ones(1), 0.0, 1.0)"),
        ("core importance B -1", ERR, "from fastmlem import _core; _core.permutation_importance(Xe, D, 'euclidean', np.ones(3), False, 0.0, -1, 0, 0, 1, 6, 2)"),
        ("core importance B 2**40", ERR, "from fastmlem import _core; _core.permutation_importance(Xe, D, 'euclidean', np.ones(3), False, 0.0, 2**40, 0, 0, 1, 6, 2)"),
        ("core importance tasks", ERR, "from fastmlem import _core; _core.permutation_importance(Xe, D, 'euclidean', np.ones(3), False, 0.0, 10, 0, 0, 1, 99, 2)"),
        ("core permutation_spearman", ERR, "from fastmlem import _core; _core.permutation_spearman(np.ones((2, 5)), np.ones((1, 2, 4)), np.ones((2, 5)))"),
        ("core sample_pairs n 0", ERR, "from fastmlem import _core; _core.sample_pairs(0, 5, 0, 0)"),
    ],
    "encoding": [
        ("features inf", ERR, "encoding.encode_features(np.array([[1.0], [np.inf], [0.0]]))"),
        ("features strings", ERR, "encoding.encode_features(np.array([['a'], ['b'], ['a']]))"),
        ("features complex", ERR, "encoding.encode_features(np.ones((3, 1)) + 1j)"),
        ("features 4-D", ERR, "encoding.encode_features(np.ones((3, 3, 1, 1)))"),
        ("features empty", ERR, "encoding.encode_features(np.zeros((0, 2)))"),
        ("precomputed diagonal", ERR, "encoding.encode_features(np.ones((3, 3, 1)), precomputed=True)"),
        ("constant feature", ERR, "encoding.encode_features(np.ones((5, 1)))"),
        ("representations NaN", ERR, "encoding.prepare_representations(np.array([[np.nan], [1.0], [2.0]]), 3)"),
        ("representations rows", ERR, "encoding.prepare_representations(np.ones((4, 2)), 3)"),
        ("representations asymmetric", ERR,
         "encoding.prepare_representations(np.triu(np.ones((3, 3)), 1), 3, precomputed=True)"),
        ("encode numeric scale", OK,
         "e, _ = encoding.encode_features(pd.DataFrame({'a': [2.0, 4.0, 6.0]})); assert (e[:, 0] == [0, 0.5, 1]).all()"),
    ],
    "simulate": [
        ("make_dataset 0 stimuli", ERR, "simulate.make_dataset(n_stimuli=0, n_dims=4)"),
        ("make_dataset 0 features", ERR, "simulate.make_dataset(n_stimuli=20, n_features=0, n_dims=4)"),
        ("make_dataset noise -1", ERR, "simulate.make_dataset(n_stimuli=20, n_features=3, noise=-1.0, n_dims=4)"),
        ("make_dataset noise nan", ERR, "simulate.make_dataset(n_stimuli=20, n_features=3, noise=np.nan, n_dims=4)"),
        ("make_dataset 0 dims", ERR, "simulate.make_dataset(n_stimuli=20, n_features=3, n_dims=0)"),
        ("make_dataset embedding", ERR, "simulate.make_dataset(n_stimuli=20, n_features=3, embedding='pca')"),
        ("make_dataset seed -1", ERR, "simulate.make_dataset(n_stimuli=20, n_features=3, n_dims=4, seed=-1)"),
        ("run no methods", ERR, "simulate.run(methods=(), verbose=False)"),
        ("run unknown method", ERR, "simulate.run(methods=('RSA',), verbose=False)"),
        ("run test_size 0", ERR, "simulate.run(noise_levels=(0.0,), seeds=(0,), n_stimuli=30, n_features=3, n_dims=4, "
         "methods=('FR-RSA',), test_size=0.0, verbose=False)"),
        ("run test_size 1.5", ERR, "simulate.run(noise_levels=(0.0,), seeds=(0,), n_stimuli=30, n_features=3, n_dims=4, "
         "methods=('FR-RSA',), test_size=1.5, verbose=False)"),
        ("quadratic_form length", ERR, "simulate.quadratic_form(np.ones(5), 3)"),
        ("random_spd 0", ERR, "simulate.random_spd(0, rng)"),
        ("dataset ok", OK, "d = simulate.make_dataset(n_stimuli=20, n_features=3, n_dims=4); assert d['Y'].shape == (20, 4)"),
    ],
    "datasets": [
        ("unknown layer", ERR, "datasets.load_sentences(layers='nope')"),
        ("layer 99", ERR, "datasets.load_sentences(layers=99)"),
        ("layer True", ERR, "datasets.load_sentences(layers=[True])"),
        ("layer float", ERR, "datasets.load_sentences(layers=1.5)"),
        ("dtype str", ERR, "datasets.load_sentences(layers=0, dtype=str)"),
        ("dtype int", ERR, "datasets.load_sentences(layers=0, dtype=np.int8)"),
        ("layer ok", OK, "d = datasets.load_sentences(layers=-1)"),
    ],
}

CASES = [(group, *case) for group, cases in GROUPS.items() for case in cases]


def classify(expect, outcome):
    """'pass', or the kind of failure: crashed, hung, wrong, unclear."""
    kind, error, message = outcome
    if kind in ("crashed", "hung", "wrong"):
        return kind
    if kind == "ok":
        return "pass" if expect == OK else "wrong"  # a bad input accepted
    if expect == OK:
        return "unclear" if error not in CLEAN else "wrong"
    return "pass" if error in CLEAN and message.strip() else "unclear"


@pytest.fixture(scope="module")
def outcomes():
    results = {}
    for group, cases in GROUPS.items():
        for (name, _, _), outcome in zip(cases, run_cases(SETUP, [code for _, _, code in cases])):
            results[group, name] = outcome
    return results


@pytest.mark.parametrize("group, name, expect, code", CASES, ids=[f"{g}:{n}" for g, n, _, _ in CASES])
def test_bad_input_sweep(group, name, expect, code, outcomes):
    outcome = outcomes[group, name]
    assert classify(expect, outcome) == "pass", (code, outcome)


def sweep_counts():
    """Counts per outcome over the whole sweep (used to report before/after numbers):
    ``python -c "import sys; sys.path.insert(0, 'tests'); import test_sweep; print(test_sweep.sweep_counts())"``."""
    from collections import Counter
    counts, failures = Counter(), []
    for group, cases in GROUPS.items():
        for (name, expect, code), outcome in zip(cases, run_cases(SETUP, [c for _, _, c in cases])):
            verdict = classify(expect, outcome)
            counts[verdict] += 1
            if verdict != "pass":
                lines = outcome[2].splitlines()
                key = [ln for ln in lines if any(k in ln for k in ("ERROR: AddressSanitizer", "runtime error",
                                                                    "terminate called", "what():"))]
                failures.append((verdict, group, name, outcome[1], " | ".join(key or lines[:1])[:200]))
    return dict(counts), failures


# ------------------------------------------------------------- kernels against their twins
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
small_ties = st.integers(-3, 3).map(float)


def rows(elements, max_b=40):
    return hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, max_b)), elements=elements)


@SETTINGS
@given(rows(st.one_of(finite, small_ties)))
def test_rank_average_twin(x):
    np.testing.assert_array_equal(ops.rank_average(x), nb.rank_average(x))


@SETTINGS
@given(hnp.arrays(np.int64, st.integers(1, 30), elements=st.integers(-2**63, 2**63 - 1)))
def test_rank_average_exact_for_int64(x):
    np.testing.assert_array_equal(ops.rank_average(x), nb.rank_average(x))


@SETTINGS
@given(st.data())
def test_spearman_twin(data):
    x = data.draw(rows(small_ties))
    y = data.draw(hnp.arrays(np.float64, x.shape, elements=st.one_of(finite, small_ties)))
    np.testing.assert_allclose(ops.spearman(x, y), nb.spearman(x, y), atol=1e-12)


@SETTINGS
@given(st.data(), st.sampled_from(["l2", "kl"]), st.sampled_from([0.05, 1.0, "auto"]))
def test_soft_rank_and_vjp_twin(data, regularization, strength):
    x = data.draw(hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-10, 10)))
    g = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-10, 10)))
    got, state = ops.soft_rank(x, strength, regularization)
    eps = nb.soft_rank_strengths(x[None], strength)[0]
    want, twin_state = nb.soft_rank(x, eps, regularization)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ops.soft_rank_vjp(state, g), nb.soft_rank_vjp(twin_state, g), rtol=1e-8, atol=1e-8)


@SETTINGS
@given(st.data(), st.booleans(), st.sampled_from([0.0, 0.5]))
def test_feature_distances_twin(data, interactions, fill):
    X = data.draw(hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 4)),
                             elements=st.one_of(st.floats(-2, 2), st.just(np.nan))))
    n = X.shape[0]
    i = data.draw(hnp.arrays(np.int64, st.integers(0, 20), elements=st.integers(0, n - 1)))
    j = data.draw(hnp.arrays(np.int64, i.shape, elements=st.integers(0, n - 1)))
    np.testing.assert_array_equal(ops.feature_distances(X, i, j, interactions, fill),
                                  nb.feature_distances(X, i, j, interactions, fill))


@SETTINGS
@given(st.data(), st.sampled_from(nb.METRICS), st.sampled_from([np.float32, np.float64]))
def test_neural_distances_twin(data, metric, dtype):
    Y = data.draw(hnp.arrays(dtype, st.tuples(st.integers(1, 8), st.integers(1, 6)), elements=st.floats(-100, 100, width=32)))
    n = Y.shape[0]
    i = data.draw(hnp.arrays(np.int64, st.integers(0, 20), elements=st.integers(0, n - 1)))
    j = data.draw(hnp.arrays(np.int64, i.shape, elements=st.integers(0, n - 1)))
    np.testing.assert_allclose(ops.neural_distances(Y, i, j, metric), nb.neural_distances(Y, i, j, metric),
                               rtol=1e-9, atol=1e-9)


@SETTINGS
@given(st.integers(1, 2**63 - 1), st.integers(0, 50), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_sample_pairs_twin(n, size, seed, stream):
    i, j = ops.sample_pairs(n, size, seed, stream)
    ti, tj = nb.sample_pairs(n, size, seed, stream)
    np.testing.assert_array_equal(i, ti)
    np.testing.assert_array_equal(j, tj)
    assert ((0 <= i) & (i < n) & (0 <= j) & (j < n)).all()


@SETTINGS
@given(st.data())
def test_permutation_spearman_twin(data):
    y = data.draw(rows(small_ties, 20))
    pred = data.draw(hnp.arrays(np.float64, y.shape, elements=small_ties))
    permuted = data.draw(hnp.arrays(np.float64, (2, *y.shape), elements=small_ties))
    base, perm = ops.permutation_spearman(pred, permuted, y)
    np.testing.assert_allclose(base, nb.spearman(pred, y), atol=1e-12)
    np.testing.assert_allclose(perm, nb.spearman(permuted, y[None]), atol=1e-12)


@SETTINGS
@given(st.data(), st.sampled_from(["l2", "kl"]), st.sampled_from([1.0, "auto"]))
def test_rank_loss_grad_twin(data, regularization, strength):
    B, q = data.draw(st.integers(2, 30)), data.draw(st.integers(1, 4))
    F = data.draw(hnp.arrays(np.float64, (B, q), elements=st.sampled_from([0.0, 0.25, 1.0])))
    w = data.draw(hnp.arrays(np.float64, q, elements=st.floats(0.01, 1)))
    y = data.draw(hnp.arrays(np.float64, B, elements=st.floats(0, 1)))
    got, want = ops.rank_loss_grad(F, w, y, strength, regularization), nb.rank_loss_grad(F, w, y, strength, regularization)
    assert got[0] == pytest.approx(want[0], abs=1e-9)
    np.testing.assert_allclose(got[1], want[1], atol=1e-8)


@SETTINGS
@given(st.data())
def test_predict_is_the_column_order_sum(data):
    F = data.draw(hnp.arrays(np.float64, st.tuples(st.integers(1, 10), st.integers(1, 12)), elements=st.floats(0, 1)))
    w = data.draw(hnp.arrays(np.float64, F.shape[1], elements=st.floats(0, 1)))
    want = np.zeros(F.shape[0])
    for c in range(F.shape[1]):
        want = want + F[:, c] * w[c]
    np.testing.assert_array_equal(nb.predict(F, w), want)
