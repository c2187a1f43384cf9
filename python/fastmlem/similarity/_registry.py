"""Measure ids, the :class:`Measure` object and the registry (``get``, ``ids``).

Id grammar (case-insensitive, parts joined by "-", parameters may come in any order)::

    <family>[-<param>=<value>]...[-<form>][-cv | -cv=<folds>]

e.g. ``cka``, ``procrustes-angular``, ``shape-alpha=0.3-euclidean``, ``ridge-r2-lambda=10-cv``,
``rsa-correlation-spearman``.  A family's first form is its default; ``ids()`` lists every
family and form with all parameters at their defaults.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np

from .._backend import get_array_module, is_cupy, to_numpy
from ._kernel import debiased_cka, ensd, linear_cka, rbf_cka
from ._regression import regression
from ._rsa import COMPARES, DIFFERENTIABLE_COMPARES, RDMS, rsa
from ._shape import NeedsFloat64, cca, shape_nbs, svcca
from ._linalg import NeedsCentring
from ._validate import as_pair, center_given, prepare

INVARIANCES = ("orthogonal", "isotropic_scale", "translation", "invertible_linear", "permutation")
DEFAULT_FOLDS = 5
_EPS = 1e-12


def _closure(names) -> frozenset:
    """Add the invariances implied by others (invertible linear ⊃ orthogonal ⊃ permutation)."""
    s = set(names)
    if "invertible_linear" in s:
        s |= {"orthogonal", "isotropic_scale"}
    if "orthogonal" in s:
        s.add("permutation")
    return frozenset(s)


# form -> (value, d value / d score) as a function of the score s
def _angular(s):
    s = min(max(s, -1.0), 1.0)
    return math.acos(s), -1.0 / math.sqrt(max(1.0 - s * s, _EPS))


def _euclidean(s):
    d = math.sqrt(max(2.0 - 2.0 * s, 0.0))
    return d, -1.0 / max(d, math.sqrt(_EPS))


FORMS = {"score": lambda s: (s, 1.0), "angular": _angular, "euclidean": _euclidean}
FORM_DOC = {"score": "the similarity score itself (1 = identical)",
            "angular": "arccos(score), an angle in [0, pi] (0 = identical)",
            "euclidean": "sqrt(2 - 2 score) (0 = identical)"}


@dataclass(frozen=True)
class _Family:
    core: Callable  # core(X, Y, *, grad, **params) -> (float, gradient w.r.t. Y or None)
    doc: str
    invariances: frozenset | Callable[[dict], frozenset]
    forms: tuple = ("score",)
    params: dict = field(default_factory=dict)  # name -> default value
    differentiable: bool = True
    center: bool = True
    cv: bool = False
    min_n: int = 2
    kind: str = "score"  # of the "score" form; other forms are distances
    float32: bool = False  # float32 input computed in float32 (accuracy bounded and tested)
    lazy_center: bool = False  # core takes uncentred data + column means (centres its Grams)
    grad_centred: bool = False  # the core's gradient is X_c M1 + Y_c M2: already centred
    lazy_grad: bool = False  # the core takes mx, my with grad too (and centres what it must)


_ORTH = _closure({"orthogonal", "isotropic_scale", "translation"})
_LINEAR = _closure({"invertible_linear", "translation"})


def _regression_family(score: str, ridge: bool, invariances) -> _Family:
    params = {"lambda": 1.0} if ridge else {}

    def core(X, Y, *, grad, cv=None, **p):
        return regression(X, Y, score=score, lam=p.get("lambda", 0.0), cv=cv, grad=grad)

    what = {"r2": "pooled R²", "pearson": "mean per-unit Pearson r"}[score]
    fit = "ridge regression" if ridge else "least squares"
    return _Family(core, f"{what} of the {fit} prediction of X from Y", _closure(invariances),
                   params=params, center=False, cv=True)


_RDM_INVARIANCES = {"euclidean": _ORTH, "cosine": _closure({"orthogonal", "isotropic_scale"}),
                    "correlation": _closure({"isotropic_scale", "permutation"})}

FAMILIES: dict[str, _Family] = {
    "cka": _Family(linear_cka, "linear centred kernel alignment", _ORTH,
                   forms=("score", "angular"), float32=True, lazy_center=True,
                   grad_centred=True),
    "cka-debiased": _Family(debiased_cka, "linear CKA from unbiased HSIC estimates", _ORTH,
                            min_n=4),
    "cka-rbf": _Family(rbf_cka, "CKA of RBF kernels, bandwidth sigma x median distance", _ORTH,
                       forms=("score", "angular"), params={"sigma": 1.0}),
    "nbs": _Family(partial(shape_nbs, alpha=1.0), "normalised Bures similarity", _ORTH,
                   float32=True, lazy_center=True, grad_centred=True, lazy_grad=True),
    "procrustes": _Family(partial(shape_nbs, alpha=1.0),
                          "Procrustes distance of centred, unit-Frobenius-norm data", _ORTH,
                          forms=("angular", "euclidean"), float32=True, lazy_center=True,
                          grad_centred=True, lazy_grad=True),
    "shape": _Family(shape_nbs, "generalised shape metric with partial whitening alpha",
                     lambda p: _LINEAR if p["alpha"] == 0 else _ORTH,
                     forms=("angular", "euclidean", "score"), params={"alpha": 0.5},
                     float32=True, lazy_center=True, grad_centred=True),
    "cca": _Family(cca, "mean canonical correlation", _LINEAR, min_n=3, float32=True,
                   lazy_center=True, grad_centred=True),
    "svcca": _Family(svcca, "mean canonical correlation of the top principal axes", _ORTH,
                     params={"var": 0.99}, differentiable=False, min_n=4),
    "ensd": _Family(ensd, "effective number of shared dimensions", _ORTH, kind="dimensionality",
                    float32=True, lazy_center=True, grad_centred=True),
    "linreg-r2": _regression_family("r2", False, {"orthogonal", "isotropic_scale", "translation"}),
    "linreg-pearson": _regression_family("pearson", False,
                                         {"isotropic_scale", "translation", "permutation"}),
    "ridge-r2": _regression_family("r2", True, {"orthogonal", "translation"}),
    "ridge-pearson": _regression_family("pearson", True, {"translation", "permutation"}),
}
for _rdm in RDMS:
    for _cmp in COMPARES:
        FAMILIES[f"rsa-{_rdm}-{_cmp}"] = _Family(
            partial(rsa, rdm_kind=_rdm, compare_kind=_cmp),
            f"{_cmp} correlation of {_rdm} RDMs", _RDM_INVARIANCES[_rdm],
            differentiable=_cmp in DIFFERENTIABLE_COMPARES, center=False, min_n=3, float32=True)

_PARAM_CHECKS = {
    "alpha": (lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
    "sigma": (lambda v: v > 0.0, "a positive number"),
    "lambda": (lambda v: v >= 0.0, "a number >= 0"),
    "var": (lambda v: 0.0 < v <= 1.0, "a fraction in (0, 1]"),
}


class Measure:
    """A similarity measure between two representations of the same n stimuli.

    Call it as ``m(X, Y) -> float`` with X (n, p) the reference / target data and Y (n, q) the
    representation compared with it (the model, or the dataset being optimised); numpy or cupy
    arrays, DataFrames, CPU torch tensors (detached) or anything numpy reads.
    ``m.value_and_grad(X, Y)`` gives the value and the gradient w.r.t. Y, shape (n, q), of Y's
    array type (numpy for torch input), in one pass that shares the Grams / factorisations.
    Inputs are never modified.

    Precision: float32 X and Y are computed in float32 by the measures whose float32 accuracy is
    bounded and tested (CKA, NBS, Procrustes, ENSD, CCA and shape metrics, RSA), with scalars
    accumulated in float64; anything else (and float64 input) runs in float64.  Values do not
    depend on the scale of X or Y (each is rescaled by an exact power of two before any product
    is formed; ridge penalties follow Y's scale, as the definition says).

    Attributes
    ----------
    id : canonical id (``get(m.id)`` rebuilds the measure).
    family, form : the parts of the id; params : dict of parameter values (defaults filled in).
    kind : "score" (1 = identical, higher is more similar), "distance" (0 = identical) or
        "dimensionality" (ENSD: a number of dimensions; m(X, X) is X's participation ratio).
    higher_is_better : True for scores and ENSD, False for distances.
    differentiable : whether ``grad`` is available.
    invariances : frozenset of the transformations T, applied to X and to Y independently,
        with m(X T1 + c1, Y T2 + c2) = m(X, Y): "translation" (adding a constant row c),
        "isotropic_scale" (T = a I, a > 0), "permutation" (of units), "orthogonal",
        "invertible_linear".
    min_n : smallest number of stimuli accepted.
    cv : folds of a cross-validated regression measure, else None.

    Notes
    -----
    Ridge measures shrink even a perfect predictor, so for them m(X, X) is slightly below 1.
    Angular and euclidean forms have an infinite slope at identical inputs; there the
    gradient is capped (finite, so optimisers do not blow up).
    """

    def __init__(self, id_: str, family: str, form: str, params: dict, cv: int | None):
        spec = FAMILIES[family]
        self.id, self.family, self.form, self.params, self.cv = id_, family, form, params, cv
        self.kind = spec.kind if form == "score" else "distance"
        self.higher_is_better = self.kind != "distance"
        self.differentiable = spec.differentiable
        inv = spec.invariances
        self.invariances = inv(params) if callable(inv) else inv
        self.min_n = spec.min_n
        self.description = spec.doc + ("" if form == "score" else f", {form}: {FORM_DOC[form]}")
        self._spec = spec

    @property
    def identity_value(self):
        """m(X, X): 1 for scores, 0 for distances, None for ENSD (it depends on X)."""
        return {"score": 1.0, "distance": 0.0}.get(self.kind)

    def __repr__(self) -> str:
        return f"<Measure {self.id!r}: {self.description}>"

    def _evaluate(self, X, Y, grad: bool):
        returns_cupy = is_cupy(Y)
        spec = self._spec
        X, Y, xp = as_pair(X, Y, min_n=self.min_n, name=f"measure {self.id!r}",
                           float32=spec.float32)
        # one place for scale: each side rescaled by a power of two (exact), centred if the
        # family centres (or, lazily, its Grams are); every measure is invariant to that
        # (ridge penalties rescale with Y)
        # the gradient's (n, q) products are formed from centred data (an offset would cost
        # them digits in float32) unless the family corrects them (lazy_grad, within the offset
        # bound of centred_gram); a value alone needs only Grams, centred lazily
        lazy = spec.center and spec.lazy_center and (not grad or spec.lazy_grad)
        X, _, *mx = prepare(X, "X", center_columns=spec.center, lazy=lazy)
        Y, sy, *my = prepare(Y, "Y", center_columns=spec.center, lazy=lazy)
        kw = dict(self.params, **({"cv": self.cv} if spec.cv else {}))
        if kw.get("lambda"):
            kw["lambda"] = min(kw["lambda"] * sy * sy, 1e300)
        try:
            score, G = self._run(X, Y, mx[0] if lazy else None, my[0] if lazy else None, grad, kw)
        except ZeroDivisionError as exc:
            raise ValueError(f"measure {self.id!r} is undefined for these data (a norm or "
                             "variance is zero): X or Y is constant, or constant after "
                             "centring, at this precision.") from exc
        except np.linalg.LinAlgError as exc:
            raise ValueError(f"measure {self.id!r}: a matrix decomposition failed ({exc}); the "
                             "data are numerically degenerate (e.g. nearly constant, or units "
                             "far apart in scale). Standardise the units or drop "
                             "near-constant ones.") from exc
        if not math.isfinite(score):
            raise ValueError(f"measure {self.id!r} is undefined for these data (got {score}); "
                             "check for nearly constant or duplicated representations.")
        value, slope = FORMS[self.form](score)
        if not grad:
            return value, None
        if slope * sy != 1.0:
            G *= G.dtype.type(slope * sy)  # d/dY f(Y sy) = sy f'(Y sy); G is a new array
        if spec.center and not spec.grad_centred:
            G -= G.mean(axis=0, keepdims=True)
        return value, (G if returns_cupy else to_numpy(G))

    def _run(self, X, Y, mx, my, grad: bool, kw: dict):
        """The family's core on prepared X, Y (uncentred with column means mx, my when given),
        redone on centred data when an offset is too large to centre the Grams afterwards
        (NeedsCentring), and in float64 when a float32 accuracy bound fails (NeedsFloat64)."""
        xp = get_array_module(X, Y)
        while True:
            try:
                if mx is None:
                    return self._spec.core(X, Y, grad=grad, **kw)
                return self._spec.core(X, Y, grad=grad, mx=mx, my=my, **kw)
            except NeedsCentring:
                X, Y, mx, my = center_given(X, mx, "X"), center_given(Y, my, "Y"), None, None
            except NeedsFloat64:
                X, Y = X.astype(xp.float64), Y.astype(xp.float64)

    def __call__(self, X, Y) -> float:
        """The measure's value for reference X (n, p) and compared Y (n, q)."""
        return self._evaluate(X, Y, grad=False)[0]

    def value_and_grad(self, X, Y):
        """(value, gradient w.r.t. Y (n, q)) in one pass."""
        if not self.differentiable:
            raise NotImplementedError(
                f"measure {self.id!r} is not differentiable (rank-based or truncated), so it has "
                "no gradient. Differentiable measures: " + ", ".join(differentiable_ids()) + ".")
        return self._evaluate(X, Y, grad=True)

    def grad(self, X, Y):
        """Gradient (n, q) of the value w.r.t. Y, same array type as Y."""
        return self.value_and_grad(X, Y)[1]


# ---------------------------------------------------------------------------------- parsing
_TOKEN = re.compile(r"(?:([a-z_]+)=([-+]?[0-9.]+(?:e[-+]?[0-9]+)?)|([a-z0-9_.]+))(?:-|$)")


def _canonical(family: str, form: str, params: dict, cv: int | None) -> str:
    parts = [family] + [f"{k}={v:g}" for k, v in params.items()]
    if form != "score" or FAMILIES[family].forms[0] != "score":
        parts.append(form)
    if cv is not None:
        parts.append("cv" if cv == DEFAULT_FOLDS else f"cv={cv}")
    return "-".join(parts)


def _suggest(text: str) -> str:
    names = list(dict.fromkeys(ids() + list(FAMILIES)))
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return hint + " See fastmlem.similarity.ids() for all ids."


def _parse(text: str):
    words, params, cv, pos = [], {}, None, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot parse similarity id {text!r} at {text[pos:]!r}: expected "
                             "'<family>[-<param>=<value>]...[-<form>][-cv[=<folds>]]'."
                             + _suggest(text))
        key, value, word = m.groups()
        if word == "cv" or key == "cv":
            cv = DEFAULT_FOLDS if word else _folds(value, text)
        elif word is not None:
            words.append(word)
        else:
            params[key] = value
        pos = m.end()
    if text.endswith("-"):
        raise ValueError(f"similarity id {text!r} ends with '-'." + _suggest(text.rstrip("-")))
    name = "-".join(words)
    if name in FAMILIES:
        return name, FAMILIES[name].forms[0], params, cv
    head, _, form = name.rpartition("-")
    if head in FAMILIES and form in FAMILIES[head].forms:
        return head, form, params, cv
    if head in FAMILIES and form in FORMS:
        raise ValueError(f"{head!r} has no {form!r} form; its forms are {FAMILIES[head].forms}.")
    raise ValueError(f"unknown similarity measure {text!r}." + _suggest(name or text))


def _folds(value: str, text: str) -> int:
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 2:
        raise ValueError(f"{text!r}: cv=<folds> needs an integer number of folds >= 2; "
                         f"got {value!r}.")
    return k


def get(id: str) -> Measure:  # noqa: A002 - "id" is the documented argument name
    """The measure named by ``id`` (see the module docstring for the grammar).

    Raises ValueError for an unknown id (suggesting the closest ones), an unknown or out-of-range
    parameter, or "-cv" on a measure without cross-validation.
    """
    if isinstance(id, Measure):
        return id
    if not isinstance(id, str):
        raise TypeError(f"a similarity id must be a string such as 'cka'; got {type(id).__name__}.")
    text = id.strip().lower()
    family, form, given, cv = _parse(text)
    spec = FAMILIES[family]
    unknown = set(given) - set(spec.params)
    if unknown:
        takes = f"takes {sorted(spec.params)}" if spec.params else "takes no parameters"
        raise ValueError(f"{id!r}: unknown parameter(s) {sorted(unknown)}; {family!r} {takes}.")
    params = dict(spec.params)
    for key, raw in given.items():
        check, what = _PARAM_CHECKS[key]
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not check(value):
            raise ValueError(f"{id!r}: {key} must be {what}; got {raw}.")
        params[key] = value
    if cv is not None and not spec.cv:
        cv_ids = sorted({f for f, s in FAMILIES.items() if s.cv})
        raise ValueError(f"{id!r}: {family!r} has no cross-validated form; '-cv' applies to "
                         f"{cv_ids}.")
    return Measure(_canonical(family, form, params, cv), family, form, params, cv)


def ids() -> list[str]:
    """All measure ids, every family and form with parameters at their defaults (and the -cv
    forms of the regression measures with 5 folds)."""
    out = []
    for family, spec in FAMILIES.items():
        for form in spec.forms:
            for cv in ((None, DEFAULT_FOLDS) if spec.cv else (None,)):
                out.append(_canonical(family, form, dict(spec.params), cv))
    return out


def differentiable_ids() -> list[str]:
    """The ids in ``ids()`` whose measures have ``grad``."""
    return [i for i in ids() if FAMILIES[_parse(i)[0]].differentiable]
