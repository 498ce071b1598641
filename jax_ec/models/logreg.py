"""Logistic regression on sparse categorical features (the paper's Amazon model).

A sample is the list of its F active one-hot indices ``x ∈ {0..D−1}^F`` (never a dense one-hot);
the logit is ``z = Σ_f θ[x_f]`` (no bias, as in the official script) and the loss the mean binary
cross-entropy ``ℓ = mean_s softplus(z_s) − y_s z_s``. Its gradient is the scatter of the residuals
``(σ(z_s) − y_s) / B`` onto the active indices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["init_logreg", "logreg_logits", "logreg_loss"]


def init_logreg(key: jax.Array, dim: int) -> dict:
    """Zero initial weights (the key is accepted for a uniform model interface and not used)."""
    del key
    return {"w": jnp.zeros((dim,), jnp.float32)}


def logreg_logits(params: dict, idx: jax.Array) -> jax.Array:
    """``z = Σ_f θ[idx[..., f]]`` for index arrays of shape (..., F).

    Summed feature by feature in a fixed order (F is small), not with a reduction whose order XLA
    picks per fusion: a trial's logits — and its AUC — must not depend on how trials are batched.
    """
    w = params["w"]
    z = w[idx[..., 0]]
    for f in range(1, idx.shape[-1]):
        z = z + w[idx[..., f]]
    return z


def logreg_loss(params: dict, idx: jax.Array, y: jax.Array) -> jax.Array:
    """Mean binary cross-entropy of the logits against 0/1 labels."""
    z = logreg_logits(params, idx)
    return jnp.mean(jax.nn.softplus(z) - y * z)
