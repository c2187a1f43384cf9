"""Similarity measures between representations, with analytic gradients, and score optimisation.

Every measure compares two representations of the same n stimuli: ``m(X, Y) -> float``.

Convention (as in Cloos et al., "Differentiable Optimization of Similarity Scores Between Models
and Brains"): **X (n, p) is the reference / target data** (e.g. neural recordings) and
**Y (n, q) is the representation compared with it** (a model, or the dataset being optimised).
``m.grad(X, Y)`` is the gradient with respect to Y; regression measures predict the target X
from Y.  numpy arrays give numpy results, cupy arrays run on the GPU; CPU torch tensors are read
(detached) and give numpy results.  float32 input stays float32 where the accuracy is bounded
(see :class:`Measure`); ``m.value_and_grad`` computes both in one pass.  Values are invariant to
the scale of the data (tested over 1e-300..1e300).

Example::

    from fastmlem import similarity
    similarity.ids()                            # every measure id
    m = similarity.get("procrustes-angular")
    m(X, Y), m.grad(X, Y), m.invariances, m.kind
    res = similarity.optimize(X, "cka", labels=y, stop_score=0.9, random_state=0)
    res.history                                 # tidy DataFrame: step, score, PC R², decoding
    similarity.plot_optimization(res)

Id grammar: ``<family>[-<param>=<value>]...[-<form>][-cv | -cv=<folds>]``.

Families (X, Y column-centred first unless said otherwise):

- ``cka``: linear CKA, ||XᵀY||²_F / (||XᵀX||_F ||YᵀY||_F) (feature Grams when n >= p + q,
  the n x n Grams otherwise); forms score, angular (arccos).
- ``cka-debiased``: linear CKA from unbiased HSIC (needs n >= 4).
- ``cka-rbf-sigma=<s>``: CKA of RBF kernels, bandwidth s x the median inter-stimulus distance
  (default 1; n x n kernels).
- ``nbs``: normalised Bures similarity ||XᵀY||_* / (||X||_F ||Y||_F), from the SVD of the
  p x q matrix XᵀY.
- ``procrustes-angular`` = arccos(NBS); ``procrustes-euclidean`` = min over orthogonal Q of
  ||X/||X|| - Y Q/||Y|| ||_F = sqrt(2 - 2 NBS): the Procrustes distance of centred data scaled
  to unit Frobenius norm (Y zero-padded when q != p), in [0, sqrt 2].
- ``shape-alpha=<a>``: Williams et al.'s generalised shape metric, NBS of partially whitened
  data Z (a I + (1 - a) Cn^-1/2) (Cn the feature Gram scaled to mean eigenvalue 1); forms
  angular (default), euclidean, score.  a = 1 is Procrustes, a = 0 is fully whitened (CCA-like).
- ``cca``: mean canonical correlation (needs n > p and n > q); ``svcca-var=<v>``: the same on
  the principal axes explaining a fraction v of each representation's variance (default 0.99).
- ``ensd``: effective number of shared dimensions (Giaffar et al.); ENSD(X, X) = X's
  participation ratio.
- ``linreg-r2``, ``linreg-pearson``, ``ridge-r2-lambda=<l>``, ``ridge-pearson-lambda=<l>``
  (default l = 1): pooled R² / mean per-unit Pearson r of the prediction of X from Y by least
  squares / ridge regression with intercept; ``-cv`` (5 folds) or ``-cv=<k>``: predictions
  held out by K-fold cross-validation over stimuli (fixed folds, see :func:`cv_folds`).
  Not centred first (the intercept is fitted on the training folds).
- ``rsa-<rdm>-<compare>``: rdm in euclidean, correlation, cosine; compare in pearson,
  spearman, kendall-tau-a, cosine.  Not centred first.

Gradients are analytic (no autodiff) for all but svcca and the rank-based RSA comparisons.
"""
from ._optimize import OptimizationResult, optimize
from ._plot import plot_optimization
from ._regression import cv_folds
from ._registry import INVARIANCES, Measure, differentiable_ids, get, ids

__all__ = ["Measure", "get", "ids", "differentiable_ids", "INVARIANCES", "cv_folds", "optimize",
           "OptimizationResult", "plot_optimization"]
