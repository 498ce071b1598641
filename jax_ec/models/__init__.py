"""Flax models: MLP, a small CNN, CIFAR ResNet-18/50 (per-partition BatchNorm gradients are computed
by :func:`jax_ec.core.partition_grads`).

:func:`make_model` builds a classifier by name. Every model maps images (or feature vectors)
``(N, ...)`` to logits ``(N, num_classes)``; the CNN and the ResNets take ``train`` as a call
argument, and only the ResNets have BatchNorm state (the ``"batch_stats"`` collection).
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from .cnn import CNN
from .mlp import MLP
from .resnet import ResNet, ResNet18, ResNet50

__all__ = ["CNN", "COMPUTE_DTYPES", "MLP", "MODEL_NAMES", "ResNet", "ResNet18", "ResNet50", "make_model"]

MODEL_NAMES: tuple[str, ...] = ("mlp", "cnn", "resnet18", "resnet50")
"""Names :func:`make_model` accepts."""

_DEFAULT_WIDTH = {"mlp": 128, "cnn": 32, "resnet18": 64, "resnet50": 64}

COMPUTE_DTYPES: dict[str, Any] = {"float32": None, "bfloat16": jnp.bfloat16}
"""Names :func:`make_model` accepts as ``compute_dtype``, and the flax ``dtype`` each gives the
layers (``None``: the inputs' float32, flax's default)."""


def make_model(name: str, num_classes: int, width: int | None = None, compute_dtype: str = "float32") -> nn.Module:
    """A classifier by name.

    Args:
      name: ``"mlp"`` (one hidden layer of ``width`` units, default 128), ``"cnn"``
        (:class:`CNN`, first conv ``width`` channels, default 32), ``"resnet18"`` or
        ``"resnet50"`` (CIFAR ResNets, base channels ``width``, default 64 as in the paper).
      num_classes: number of logits (≥ 2).
      width: the model's width as above; ``None`` for the default.
      compute_dtype: ``"float32"`` or ``"bfloat16"``: the dtype of the layers' arithmetic
        (activations, convolutions, matrix products). The parameters are float32 either way, so
        their gradients, and everything computed from them (signs, votes, updates), are float32.

    Raises:
      ValueError: unknown ``name`` or ``compute_dtype``, ``num_classes < 2`` or ``width < 1``.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"model name: unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 2:
        raise ValueError(f"num_classes: must be an integer >= 2, got {num_classes!r}")
    if width is None:
        width = _DEFAULT_WIDTH[name]
    if isinstance(width, bool) or not isinstance(width, Integral) or width < 1:
        raise ValueError(f"width: must be a positive integer or None, got {width!r}")
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype: got {compute_dtype!r}; allowed: {', '.join(COMPUTE_DTYPES)}")
    dtype = COMPUTE_DTYPES[compute_dtype]
    if name == "mlp":
        return MLP(hidden=(int(width),), num_classes=int(num_classes), dtype=dtype)
    if name == "cnn":
        return CNN(num_classes=int(num_classes), width=int(width), dtype=dtype)
    if name == "resnet18":
        return ResNet18(num_classes=int(num_classes), width=int(width), dtype=dtype)
    return ResNet50(num_classes=int(num_classes), width=int(width), dtype=dtype)
