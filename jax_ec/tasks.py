"""Learning tasks: data arrays plus the model's init, loss and evaluation metric.

A :class:`Task` is what the trainer needs to know about a learning problem, with the data held as
arrays passed to compiled functions as arguments (never baked into them as constants):

* ``init(key) -> params`` (a pytree);
* ``loss(params, x, y) -> scalar`` — the mean loss of one partition's samples;
* ``evaluate(params, test_x, test_y) -> scalar`` — the reported metric (higher is better).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import numpy as np

from .config import ConfigError, TaskConfig
from .data.amazon import load_amazon
from .data.synthetic import gaussian_mixture
from .metrics import auc
from .models.logreg import init_logreg, logreg_logits, logreg_loss
from .models.mlp import MLP, classification_accuracy, classification_loss

__all__ = ["Task", "make_task"]


@dataclass(frozen=True, eq=False)
class Task:
    """A learning problem: data arrays and pure model functions."""
    name: str
    metric_name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    init: Callable[[jax.Array], Any]
    loss: Callable[[Any, jax.Array, jax.Array], jax.Array]
    evaluate: Callable[[Any, jax.Array, jax.Array], jax.Array]
    sparse_logreg: bool = False

    @property
    def num_train(self) -> int:
        return int(self.train_x.shape[0])

    def data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.train_x, self.train_y, self.test_x, self.test_y


def _amazon(cfg: TaskConfig) -> Task:
    try:
        data = load_amazon(cfg.data_path, n_train=cfg.n_train)
    except ValueError as exc:
        if "n_train" in str(exc):
            raise ConfigError(f"task.n_train: got {cfg.n_train}; {exc}") from None
        raise
    return Task(
        name="amazon", metric_name="test_auc",
        train_x=data.train_idx, train_y=data.train_y, test_x=data.test_idx, test_y=data.test_y,
        init=lambda key: init_logreg(key, data.dim),
        loss=logreg_loss,
        evaluate=lambda params, x, y: auc(logreg_logits(params, x), y),
        sparse_logreg=True,
    )


def _synthetic(cfg: TaskConfig, seed: int) -> Task:
    x, y = gaussian_mixture(seed, cfg.num_samples + cfg.num_samples // 4, cfg.num_features, cfg.num_classes)
    model = MLP(hidden=tuple(cfg.hidden), num_classes=cfg.num_classes)
    sample = np.zeros((1, cfg.num_features), np.float32)
    return Task(
        name="synthetic", metric_name="test_accuracy",
        train_x=x[: cfg.num_samples], train_y=y[: cfg.num_samples],
        test_x=x[cfg.num_samples:], test_y=y[cfg.num_samples:],
        init=lambda key: model.init(key, sample),
        loss=lambda params, xb, yb: classification_loss(model.apply(params, xb), yb),
        evaluate=lambda params, xb, yb: classification_accuracy(model.apply(params, xb), yb),
    )


def make_task(cfg: TaskConfig, seed: int = 0) -> Task:
    """Build the task a config names (``seed`` fixes the synthetic data set, not the trials)."""
    if cfg.name == "amazon":
        return _amazon(cfg)
    if cfg.name == "synthetic":
        return _synthetic(cfg, seed)
    raise ValueError(f"task.name: unknown task {cfg.name!r}; allowed: amazon, synthetic")
