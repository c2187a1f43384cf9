"""The numerical core of barycentric alignment, written once for numpy and cupy (``xp``).

1. Preprocessing: per model, centre, scale and bring to the common dimension k (zero-padding
   or PCA), giving Z_k (n, k).  All K models are then stacked as Z (n, K, k).
2. Group step: the element R_k of the chosen group that best maps Z_k onto the barycenter B,
   i.e. maximises tr(R_kᵀ Z_kᵀ B) (orthogonal Procrustes or linear assignment).
3. The alternating loop: R_k from B, then B = mean_k Z_k R_k, until B stops changing.

Speed (see also bench/bench_align.py): with Z stored as one (n, K*k) matrix, the K
cross-covariances Z_kᵀB are ONE matrix product (K*k, n) @ (n, k) and the new barycenter is ONE
product (n, K*k) @ (K*k, k) with the R_k stacked: two large BLAS calls per iteration and no
(K, n, k) temporary.  The K Procrustes SVDs are batched into one call (one cuSOLVER launch on
GPU).  The loss needs no extra pass: for norm-preserving R_k,
sum_k |Z_k R_k - B|^2 = sum_k |Z_k|^2 - K |B|^2.  PCA to k << d shrinks every step by (d/k)^2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .._backend import get_array_module, to_numpy

GROUPS = ("orth", "perm", "identity")
SCALES = (None, "frobenius", "standardize")


@dataclass
class Preprocessing:
    """How one model's raw (n, d) rows become (n, k) rows: ((X - mean) / scale) @ projection.

    mean : (d,) array (zeros when not centring). scale : () or (d,) array (ones when not scaling).
    projection : (d, k) array with orthonormal columns (PCA), or None for zero-padding to k.
    """
    mean: object
    scale: object
    projection: object
    k: int

    def apply(self, X, R=None):
        """Raw rows X (m, d) -> preprocessed rows Z (m, k), or aligned rows Z @ R given R (k, k).

        New arrays are returned; X is not modified.
        """
        xp = get_array_module(X)
        Xs = (X - self.mean) / self.scale
        if R is not None:  # fold projection (or padding) and R into one (d, k) map
            W = R[:X.shape[1]] if self.projection is None else self.projection @ R
            return Xs @ W
        if self.projection is not None:
            return Xs @ self.projection
        Z = xp.zeros((X.shape[0], self.k), dtype=Xs.dtype)
        Z[:, :X.shape[1]] = Xs
        return Z


def fit_preprocessing(X, name: str, *, center: bool, scale, k: int, pca: bool) -> Preprocessing:
    """Learn mean, scale and projection (n, d) -> (n, k) from one model's rows X (not modified)."""
    xp = get_array_module(X)
    d = X.shape[1]
    mean = X.mean(axis=0) if center else xp.zeros(d, dtype=X.dtype)
    Xc = X - mean
    if scale is None:
        s = xp.ones((), dtype=X.dtype)
    elif scale == "frobenius":
        s = xp.asarray(safe_norm(Xc), dtype=X.dtype)
        if float(s) == 0.0:
            raise ValueError(f"model {name!r} is constant (all rows equal after centring), so it "
                             "cannot be scaled to unit norm; drop it or use scale=None.")
    else:  # "standardize": unit variance per unit; constant units are left as they are
        c = _pow2(float(xp.abs(Xc).max()))  # std of the rescaled units: no overflow in squares
        s = (Xc * c).std(axis=0) / c
        s = xp.where(s > 0, s, 1.0)
    if not pca:
        if d > k:
            raise ValueError(f"model {name!r} has {d} units, more than the common dimension "
                             f"{k}; refit with dim='pad' over all models or use dim=int (PCA).")
        return Preprocessing(mean, s, None, k)
    return Preprocessing(mean, s, _pca_basis(Xc / s, k), k)


def _pow2(top: float) -> float:
    """A power of two s with top * s in [0.5, 1) (1 for top = 0): an exact rescaling."""
    return math.ldexp(1.0, -math.frexp(top)[1]) if top > 0 else 1.0


def safe_norm(A) -> float:
    """Frobenius norm of A without overflow or underflow in the squares."""
    xp = get_array_module(A)
    c = _pow2(float(xp.abs(A).max()))
    return float(xp.linalg.norm(A * c)) / c


def _pca_basis(Xs, k: int):
    """(d, k) orthonormal top-k principal axes of centred rows Xs (n, d); zero columns if d < k."""
    xp = get_array_module(Xs)
    n, d = Xs.shape
    if d <= n:  # eigen-decomposition of the (d, d) scatter: n*d^2 flops instead of an SVD of Xs
        _, vecs = xp.linalg.eigh(Xs.T @ Xs)
        V = vecs[:, ::-1][:, :min(k, d)]
    else:
        V = xp.linalg.svd(Xs, full_matrices=False)[2][:min(k, n)].T
    if V.shape[1] < k:
        V = xp.concatenate([V, xp.zeros((d, k - V.shape[1]), dtype=V.dtype)], axis=1)
    return xp.ascontiguousarray(V)


def best_group_element(M, group: str):
    """R (K, k, k) in the group maximising tr(R_kᵀ M_k) for each cross-covariance M_k (K, k, k).

    "orth": R = U Vᵀ from the batched SVD M = U S Vᵀ (reflections allowed).
    "perm": permutation matrix from a linear assignment on M_k (scipy, on the host).
    "identity": R = I.
    """
    xp = get_array_module(M)
    K, k, _ = M.shape
    if not bool(xp.isfinite(M).all()):
        raise ValueError("the cross-covariances of the models overflowed (values too large for "
                         "float64 products); rescale the models, e.g. scale='frobenius'.")
    if group == "orth":
        U, _, Vt = xp.linalg.svd(M)
        return U @ Vt
    if group == "identity":
        return xp.broadcast_to(xp.eye(k, dtype=M.dtype), (K, k, k)).copy()
    R = xp.zeros_like(M)
    for j, Mj in enumerate(to_numpy(M)):
        rows, cols = linear_sum_assignment(Mj, maximize=True)
        R[j, xp.asarray(rows), xp.asarray(cols)] = 1.0
    return R


def random_group_elements(group: str, K: int, k: int, rng, xp):
    """K random group elements (K, k, k): Haar orthogonal ("orth", "identity") or permutations."""
    if group == "perm":
        R = np.zeros((K, k, k))
        for j in range(K):
            R[j, np.arange(k), rng.permutation(k)] = 1.0
        return xp.asarray(R)
    Q, T = np.linalg.qr(rng.standard_normal((K, k, k)))
    return xp.asarray(Q * np.sign(np.diagonal(T, axis1=1, axis2=2))[:, None, :])


def solve(Z, group: str, B, *, tol: float, max_iter: int):
    """Alternate R_k = best_group_element(Z_kᵀ B) and B = mean_k Z_k R_k.

    Parameters
    ----------
    Z : (n, K, k) preprocessed models. B : (n, k) initial barycenter.

    Returns
    -------
    R : (K, k, k). B : (n, k), equal to mean_k Z_k R_k.
    history : list of (loss, rel_change) per iteration, loss = (1/K) sum_k |Z_k R_k - B|_F^2 and
        rel_change = |B_new - B_old|_F / |B_old|_F.
    converged : bool, rel_change < tol at the last iteration.
    """
    xp = get_array_module(Z)
    n, K, k = Z.shape
    # one exact power-of-two rescaling of all models (and B) when their magnitude is extreme,
    # so that products neither overflow (an SVD of inf/NaN never returns) nor underflow
    c = _pow2(max(float(xp.abs(Z).max()), float(xp.abs(B).max())))
    c = 1.0 if 2.0 ** -200 < c < 2.0 ** 200 else c
    if c != 1.0:
        R, B, history, converged = solve(Z * c, group, B * c, tol=tol, max_iter=max_iter)
        return R, B / c, [(loss / c / c, rel) for loss, rel in history], converged
    Zcat = Z.reshape(n, K * k)
    total = float(xp.sum(Z * Z))
    if K * k < 2 * n and (K * k) ** 2 * Z.itemsize <= GRAM_BYTES:
        return _solve_gram(Zcat, K, group, B, total, tol=tol, max_iter=max_iter)
    history, converged = [], False
    for _ in range(max_iter):
        R = best_group_element((Zcat.T @ B).reshape(K, k, k), group)
        B_new = Zcat @ R.reshape(K * k, k) / K
        norm_new = float(xp.linalg.norm(B_new))
        rel = float(xp.linalg.norm(B_new - B)) / max(float(xp.linalg.norm(B)), 1e-300)
        history.append((max(total - K * norm_new ** 2, 0.0) / K, rel))
        B = B_new
        if rel < tol or group == "identity":  # identity: B = mean after one step
            converged = True
            break
    return R, B, history, converged


#: largest (K k, K k) Gram of the stacked models that ``solve`` builds (bytes)
GRAM_BYTES = 512 * 2 ** 20


def _solve_gram(Zcat, K: int, group: str, B, total: float, *, tol: float, max_iter: int):
    """``solve`` through the Gram G = ZcatᵀZcat (K k, K k), when K k < 2 n.

    With R stacked as Rcat (K k, k), the cross-covariances with the next barycenter
    B' = Zcat Rcat / K are Zcatᵀ B' = G Rcat / K: one (K k)² k product per iteration instead of
    two n K k² ones, and B itself is formed once at the end.  The norms the stopping rule needs
    follow from the same products: |B'|² = tr(Rcatᵀ Zcatᵀ B') / K and <B', B> =
    tr(Rcatᵀ Zcatᵀ B) / K; near convergence, where |B' - B|² from them would lose digits, it is
    tr(ΔRᵀ G ΔR) / K² exactly.
    """
    xp = get_array_module(Zcat)
    k = Zcat.shape[1] // K
    G = Zcat.T @ Zcat
    M = Zcat.T @ B  # Zcatᵀ B for the current barycenter
    norm2 = float(xp.sum(B * B))
    R_old, history, converged = None, [], False
    for _ in range(max_iter):
        R = best_group_element(M.reshape(K, k, k), group).reshape(K * k, k)
        M_new = G @ R / K
        norm2_new = float(xp.sum(R * M_new)) / K
        change2 = norm2_new + norm2 - 2.0 * float(xp.sum(R * M)) / K
        if change2 < 1e-6 * norm2 and R_old is not None:  # small: recompute without cancellation
            dR = R - R_old
            change2 = float(xp.sum(dR * (G @ dR))) / K ** 2
        rel = (max(change2, 0.0) / max(norm2, 1e-300)) ** 0.5
        history.append((max(total - K * norm2_new, 0.0) / K, rel))
        M, norm2, R_old = M_new, norm2_new, R
        if rel < tol or group == "identity":
            converged = True
            break
    return R.reshape(K, k, k), Zcat @ R / K, history, converged


def aligned_rows(Z, R):
    """(K, n, k) aligned models Z_k R_k from Z (n, K, k) and R (K, k, k)."""
    return Z.transpose(1, 0, 2) @ R


def procrustes_distance(X, Y, *, center: bool = True, normalize: bool = True) -> float:
    """Orthogonal Procrustes distance min_R |X R - Y|_F between two representations.

    Parameters
    ----------
    X : (n, d1), Y : (n, d2) arrays (numpy or cupy), the same n stimuli; d1 != d2 is handled as
        zero-padding to the larger dimension.
    center : subtract each array's mean row first.  normalize : scale each to unit Frobenius norm
        first (then the distance lies in [0, sqrt(2)], 0 meaning equal up to rotation/reflection).

    Returns
    -------
    float, sqrt(|X|^2 + |Y|^2 - 2 |Xᵀ Y|_*) with |.|_* the nuclear norm.
    """
    from ._validate import as_matrix

    xp = get_array_module(X, Y)
    X, Y = as_matrix(X, "X", xp), as_matrix(Y, "Y", xp)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows and Y has {Y.shape[0]}; both must hold the "
                         "same stimuli, one row each.")
    if center:
        X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    # exact power-of-two rescaling so that no square overflows or underflows: each array by its
    # own factor when normalising (the scale then drops out), else both by one common factor
    cx, cy = _pow2(float(xp.abs(X).max())), _pow2(float(xp.abs(Y).max()))
    c = 1.0 if normalize else min(cx, cy)
    X, Y = (X * cx, Y * cy) if normalize else (X * c, Y * c)
    if normalize:
        X, Y = X / max(float(xp.linalg.norm(X)), 1e-300), Y / max(float(xp.linalg.norm(Y)), 1e-300)
    nuclear = float(xp.linalg.svd(X.T @ Y, compute_uv=False).sum())
    sq = float((X * X).sum() + (Y * Y).sum()) - 2.0 * nuclear
    return float(np.sqrt(max(sq, 0.0))) / (1.0 if normalize else c)
