"""A small CNN for MNIST-size images (flax.linen).

The network of PyTorch's MNIST example without its dropout layers::

    x → Conv3×3(w) → ReLU → Conv3×3(2w) → ReLU → MaxPool2×2 → flatten → Dense(hidden) → ReLU
      → Dense(num_classes)

with ``"VALID"`` convolutions (``w = 32``, ``hidden = 128`` by default: 1,199,882 parameters on
28×28×1 inputs with 10 classes). It also runs on the 8×8 digits (8 → 6 → 4 → pool → 2).
Initialization as PyTorch's defaults, like :mod:`jax_ec.models.resnet`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from .layers import Conv, Dense
from .resnet import torch_bias_init, torch_kernel_init

__all__ = ["CNN"]


class CNN(nn.Module):
    """Two 3×3 convolutions, one 2×2 max-pool, two dense layers; logits ``(N, num_classes)``.

    Attributes:
      num_classes: logits per sample.
      width: channels of the first convolution (the second has ``2·width``).
      hidden: units of the hidden dense layer.
      dtype: the computation's dtype (``None``: the inputs'; ``jnp.bfloat16``: bfloat16
        convolutions and matrix products); the parameters stay float32 either way.
    """
    num_classes: int
    width: int = 32
    hidden: int = 128
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits of images ``x`` ``(N, H, W, C)``; ``train`` is accepted for an interface uniform
        with the ResNets and changes nothing (no BatchNorm, no dropout)."""
        del train
        for features in (self.width, 2 * self.width):
            fan_in = 9 * x.shape[-1]
            x = Conv(features, (3, 3), padding="VALID", kernel_init=torch_kernel_init,
                     bias_init=torch_bias_init(fan_in), dtype=self.dtype)(x)
            x = nn.relu(x)
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(Dense(self.hidden, kernel_init=torch_kernel_init,
                          bias_init=torch_bias_init(x.shape[-1]), dtype=self.dtype)(x))
        return Dense(self.num_classes, kernel_init=torch_kernel_init,
                     bias_init=torch_bias_init(x.shape[-1]), dtype=self.dtype)(x)
