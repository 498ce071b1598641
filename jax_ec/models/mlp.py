"""A multilayer perceptron classifier (flax.linen)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from .layers import Dense

__all__ = ["MLP", "classification_loss", "classification_accuracy"]


class MLP(nn.Module):
    """``x → [Dense(h) → ReLU]* → Dense(num_classes)`` logits."""
    hidden: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        for h in self.hidden:
            x = nn.relu(Dense(h)(x))
        return Dense(self.num_classes)(x)


def classification_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy against integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def classification_accuracy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of argmax predictions equal to the label."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == y)
