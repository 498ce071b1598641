"""CIFAR ResNet-18 and ResNet-50 (flax.linen), as in the paper's CIFAR-10 experiments.

The CIFAR variant of He et al. (2016) used by the common PyTorch CIFAR code (``kuangliu/pytorch-cifar``
``models/resnet.py``) on which the paper's script builds:

* stem: ``3×3`` conv, ``w`` channels, stride 1, padding 1, BatchNorm, ReLU — no ``7×7`` stride-2
  conv and no max-pool, so a 32×32 input reaches the last stage at 4×4;
* four stages of ``w, 2w, 4w, 8w`` channels (``w = width``, 64 in the paper), the first block of
  stages 2–4 with stride 2;
* ResNet-18: BasicBlock ``[2, 2, 2, 2]``, ``y = ReLU(BN(conv3×3(ReLU(BN(conv3×3(x))))) + s(x))``;
  ResNet-50: Bottleneck ``[3, 4, 6, 3]``, ``1×1 → 3×3 → 1×1`` convs with 4× channel expansion;
* shortcut ``s(x) = x``, or ``BN(conv1×1, stride)(x)`` where the stride or channel count changes;
* global average pool, then ``Dense(num_classes)``.

With ``width = 64`` and 10 classes ResNet-18 has 11,173,962 parameters and ResNet-50 23,520,842 —
the PyTorch counts (BatchNorm running statistics are not parameters; they live in the
``batch_stats`` collection).

Conventions matching PyTorch, so that the simulation trains the network the paper trained:

* convolutions have no bias and pad explicitly by ``(k − 1) / 2`` on both sides (flax's ``"SAME"``
  pads a stride-2 ``3×3`` conv asymmetrically, which would sample different pixels);
* BatchNorm: ``ε = 1e-5`` and running averages ``r ← 0.9·r + 0.1·batch`` (PyTorch ``momentum=0.1``).
  One difference remains: PyTorch updates the running variance with the unbiased batch variance
  (factor ``m / (m − 1)``), flax with the biased one;
* kernels are drawn like PyTorch's default ``kaiming_uniform_(a=√5)``,
  ``U(−1/√fan_in, 1/√fan_in)``, and so is the classifier's bias.

``train`` is a call argument: ``train=True`` normalizes with the statistics of the batch passed in
and updates the running averages (call ``apply`` with ``mutable=["batch_stats"]``);
``train=False`` uses the running averages and changes nothing::

    model = ResNet18(num_classes=10)
    variables = model.init(key, x, train=False)          # {"params", "batch_stats"}
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    logits = model.apply({**variables, **updates}, x_test, train=False)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from .layers import Conv, Dense

__all__ = [
    "BasicBlock", "Bottleneck", "ResNet", "ResNet18", "ResNet50", "torch_kernel_init",
    "torch_bias_init",
]

BN_MOMENTUM = 0.9
"""flax ``momentum`` (weight of the old running average) equal to PyTorch's ``momentum=0.1``."""
BN_EPSILON = 1e-5

torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
"""PyTorch's default conv/linear weight init: ``U(−1/√fan_in, 1/√fan_in)`` (variance 1/(3·fan_in))."""


def torch_bias_init(fan_in: int) -> Callable[..., jax.Array]:
    """PyTorch's default bias init for a layer with ``fan_in`` inputs: ``U(−1/√fan_in, 1/√fan_in)``."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _conv(features: int, kernel: int, strides: int = 1, name: str | None = None, dtype: Any = None) -> nn.Conv:
    pad = (kernel - 1) // 2
    return Conv(features, (kernel, kernel), strides=(strides, strides),
                padding=((pad, pad), (pad, pad)), use_bias=False,
                kernel_init=torch_kernel_init, name=name, dtype=dtype)


def _norm(train: bool, name: str | None = None, dtype: Any = None) -> nn.BatchNorm:
    """BatchNorm; its statistics and running averages are float32 whatever ``dtype`` (flax reduces
    in float32), only its output is cast to ``dtype``."""
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                        name=name, dtype=dtype)


def _shortcut(x: jax.Array, out_features: int, strides: int, train: bool, dtype: Any = None) -> jax.Array:
    """Identity, or ``BN(conv1×1 with stride)`` where the shape changes."""
    if strides == 1 and x.shape[-1] == out_features:
        return x
    x = _conv(out_features, 1, strides, name="shortcut_conv", dtype=dtype)(x)
    return _norm(train, name="shortcut_bn", dtype=dtype)(x)


class BasicBlock(nn.Module):
    """``ReLU(BN(conv3×3(ReLU(BN(conv3×3_s(x))))) + shortcut(x))``, output ``features`` channels."""
    features: int
    strides: int = 1
    expansion: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        dt = self.dtype
        y = nn.relu(_norm(train, dtype=dt)(_conv(self.features, 3, self.strides, dtype=dt)(x)))
        y = _norm(train, dtype=dt)(_conv(self.features, 3, dtype=dt)(y))
        return nn.relu(y + _shortcut(x, self.features, self.strides, train, dt))


class Bottleneck(nn.Module):
    """``1×1 (features) → 3×3 stride s (features) → 1×1 (4·features)`` with BN/ReLU, plus shortcut."""
    features: int
    strides: int = 1
    expansion: int = 4
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out, dt = self.features * self.expansion, self.dtype
        y = nn.relu(_norm(train, dtype=dt)(_conv(self.features, 1, dtype=dt)(x)))
        y = nn.relu(_norm(train, dtype=dt)(_conv(self.features, 3, self.strides, dtype=dt)(y)))
        y = _norm(train, dtype=dt)(_conv(out, 1, dtype=dt)(y))
        return nn.relu(y + _shortcut(x, out, self.strides, train, dt))


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """CIFAR ResNet: 3×3 stem, four stages of ``width·(1, 2, 4, 8)`` channels, GAP, Dense.

    Attributes:
      stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
      block: ``"basic"`` or ``"bottleneck"``.
      num_classes: logits per sample.
      width: channels of the stem and the first stage (64 in the paper; tiny values for tests).
      dtype: the computation's dtype (``None``: the inputs'; ``jnp.bfloat16``: bfloat16
        convolutions and activations, BatchNorm statistics still reduced in float32); the
        parameters and the running statistics stay float32 either way.
    """
    stage_sizes: Sequence[int]
    block: str
    num_classes: int
    width: int = 64
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Logits ``(N, num_classes)`` of images ``x`` ``(N, H, W, C)`` (float, normalized)."""
        if self.block not in _BLOCKS:
            raise ValueError(f"block: unknown block {self.block!r}; allowed: {sorted(_BLOCKS)}")
        if self.width < 1:
            raise ValueError(f"width: must be a positive integer, got {self.width}")
        block_cls = _BLOCKS[self.block]
        x = nn.relu(_norm(train, dtype=self.dtype)(_conv(self.width, 3, dtype=self.dtype)(x)))
        for stage, num_blocks in enumerate(self.stage_sizes):
            for b in range(num_blocks):
                strides = 2 if stage > 0 and b == 0 else 1
                x = block_cls(self.width * 2 ** stage, strides, dtype=self.dtype)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return Dense(self.num_classes, kernel_init=torch_kernel_init,
                     bias_init=torch_bias_init(x.shape[-1]), dtype=self.dtype)(x)


def ResNet18(num_classes: int = 10, width: int = 64, dtype: Any = None) -> ResNet:  # noqa: N802 (a model name)
    """CIFAR ResNet-18: BasicBlock ``[2, 2, 2, 2]`` (11,173,962 parameters at width 64, 10 classes)."""
    return ResNet(stage_sizes=(2, 2, 2, 2), block="basic", num_classes=num_classes, width=width, dtype=dtype)


def ResNet50(num_classes: int = 10, width: int = 64, dtype: Any = None) -> ResNet:  # noqa: N802
    """CIFAR ResNet-50: Bottleneck ``[3, 4, 6, 3]`` (23,520,842 parameters at width 64, 10 classes)."""
    return ResNet(stage_sizes=(3, 4, 6, 3), block="bottleneck", num_classes=num_classes,
                  width=width, dtype=dtype)

