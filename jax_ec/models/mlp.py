"""A multilayer perceptron classifier (flax.linen)."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from .layers import Dense

__all__ = ["MLP", "classification_loss", "classification_accuracy"]


class MLP(nn.Module):
    """``x → [Dense(h) → ReLU]* → Dense(num_classes)`` logits.

    ``dtype``: the computation's dtype (``None``: the inputs'; ``jnp.bfloat16``: bfloat16 matrix
    products); the parameters stay float32 either way.
    """
    hidden: Sequence[int]
    num_classes: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        for h in self.hidden:
            x = nn.relu(Dense(h, dtype=self.dtype)(x))
        return Dense(self.num_classes, dtype=self.dtype)(x)


def classification_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy against integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def classification_accuracy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of argmax predictions equal to the label."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == y)
