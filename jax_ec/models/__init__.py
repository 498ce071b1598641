"""Flax models: MLP, a small CNN, CIFAR ResNet-18/50 (per-partition BatchNorm gradients are computed
by :func:`jax_ec.core.partition_grads`).

:func:`make_model` builds a classifier by name. Every model maps images (or feature vectors)
``(N, ...)`` to logits ``(N, num_classes)``; the CNN and the ResNets take ``train`` as a call
argument, and only the ResNets have BatchNorm state (the ``"batch_stats"`` collection).
"""

from __future__ import annotations

from numbers import Integral

import flax.linen as nn

from .cnn import CNN
from .mlp import MLP
from .resnet import ResNet, ResNet18, ResNet50

__all__ = ["CNN", "MLP", "MODEL_NAMES", "ResNet", "ResNet18", "ResNet50", "make_model"]

MODEL_NAMES: tuple[str, ...] = ("mlp", "cnn", "resnet18", "resnet50")
"""Names :func:`make_model` accepts."""

_DEFAULT_WIDTH = {"mlp": 128, "cnn": 32, "resnet18": 64, "resnet50": 64}


def make_model(name: str, num_classes: int, width: int | None = None) -> nn.Module:
    """A classifier by name.

    Args:
      name: ``"mlp"`` (one hidden layer of ``width`` units, default 128), ``"cnn"``
        (:class:`CNN`, first conv ``width`` channels, default 32), ``"resnet18"`` or
        ``"resnet50"`` (CIFAR ResNets, base channels ``width``, default 64 as in the paper).
      num_classes: number of logits (≥ 2).
      width: the model's width as above; ``None`` for the default.

    Raises:
      ValueError: unknown ``name``, ``num_classes < 2`` or ``width < 1``.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"model name: unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 2:
        raise ValueError(f"num_classes: must be an integer >= 2, got {num_classes!r}")
    if width is None:
        width = _DEFAULT_WIDTH[name]
    if isinstance(width, bool) or not isinstance(width, Integral) or width < 1:
        raise ValueError(f"width: must be a positive integer or None, got {width!r}")
    if name == "mlp":
        return MLP(hidden=(int(width),), num_classes=int(num_classes))
    if name == "cnn":
        return CNN(num_classes=int(num_classes), width=int(width))
    if name == "resnet18":
        return ResNet18(num_classes=int(num_classes), width=int(width))
    return ResNet50(num_classes=int(num_classes), width=int(width))
