"""The optimiser pieces every fitted model shares: AdamW and early stopping with a copied best state.

Used by :class:`fastmlem.MLEM` (and so FR-RSA-I) and :func:`fastmlem.similarity.optimize`. Works
on numpy or cupy arrays (whatever ``params`` is).
"""
from __future__ import annotations

import numpy as np


class AdamW:
    """AdamW (decoupled weight decay) ascending or descending an objective.

    Parameters
    ----------
    params : array (q,) or any shape, the starting point (copied).
    lr : float, learning rate.
    weight_decay : float, decoupled decay: params *= 1 - lr * weight_decay before each update.
    maximize : bool, step along +grad (True) or -grad (False).
    betas, eps : Adam's moment decays and denominator guard (0.9, 0.999), 1e-8.
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0, maximize: bool = False,
                 betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = params.copy()
        self.lr, self.weight_decay, self.eps = float(lr), float(weight_decay), float(eps)
        self.sign = 1.0 if maximize else -1.0
        self.beta1, self.beta2 = betas
        self.m1, self.m2, self.t = params * 0, params * 0, 0

    def step(self, grad):
        """One update with the objective's gradient ``grad`` (same shape as params); returns params."""
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        descent = -self.sign * grad  # gradient of the quantity minimised
        self.m1 = b1 * self.m1 + (1 - b1) * descent
        self.m2 = b2 * self.m2 + (1 - b2) * descent * descent
        if self.weight_decay:
            self.params = self.params * (1 - self.lr * self.weight_decay)
        m_hat, v_hat = self.m1 / (1 - b1 ** self.t), self.m2 / (1 - b2 ** self.t)
        self.params = self.params - self.lr * m_hat / (v_hat ** 0.5 + self.eps)
        return self.params


class EarlyStopping:
    """Track the best score and a *copy* of its state; stop after ``patience`` steps without a better one.

    (The reference MLEM keeps a reference to the live parameters, so it returns the last step's
    weights; this class copies.)
    """

    def __init__(self, patience: int):
        self.patience = int(patience)
        self.best, self.best_state, self.since_best, self.history = -np.inf, None, 0, []

    def update(self, score: float, state) -> bool:
        """Record ``score`` for ``state`` (copied when best); True when training should stop."""
        self.history.append(float(score))
        if score > self.best:
            self.best, self.best_state, self.since_best = float(score), state.copy(), 0
        else:
            self.since_best += 1
        return self.since_best >= self.patience
