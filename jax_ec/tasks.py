"""Learning tasks: data arrays plus the model's init, loss and evaluation metric.

A :class:`Task` is what the trainer needs to know about a learning problem, with the data held as
arrays passed to compiled functions as arguments (never baked into them as constants):

* ``init(key) -> (params, model_state)`` — trainable parameters and non-trainable state (BatchNorm
  running statistics; ``{}`` for stateless models);
* ``loss(params, model_state, x, y, key) -> (loss, new_model_state)`` — the mean loss of one
  partition's samples (``key`` drives data augmentation); BatchNorm normalizes with the
  partition's own statistics, as the worker holding it would;
* ``evaluate(params, model_state, x, y) -> scalar`` — the reported metric (higher is better).

Tasks: ``amazon`` (the paper's sparse logistic regression, test AUC), ``synthetic`` (Gaussian
mixture + MLP), ``digits`` (the real 8×8 digits shipped with the package), and the TFDS image sets
``cifar10``, ``mnist``, ``fashion_mnist`` (CIFAR: random crop + flip on device, the paper's
normalization).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .config import TASK_METRICS, ConfigError, TaskConfig
from .data.amazon import load_amazon
from .data.images import ImageData, augment, load_digits, load_tfds, normalize
from .data.synthetic import gaussian_mixture
from .metrics import auc
from .models import make_model
from .models.logreg import init_logreg, logreg_logits, logreg_loss
from .models.mlp import MLP, classification_accuracy, classification_loss

__all__ = ["Task", "make_task", "DEFAULT_MODELS"]

DEFAULT_MODELS = {"synthetic": "mlp", "digits": "cnn", "mnist": "cnn", "fashion_mnist": "cnn",
                  "cifar10": "resnet18"}
EVAL_CHUNK = 256


@dataclass(frozen=True, eq=False)
class Task:
    """A learning problem: data arrays and pure model functions."""
    name: str
    metric_name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    init: Callable[[jax.Array], tuple[Any, Any]]
    loss: Callable[[Any, Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, Any]]
    evaluate: Callable[[Any, Any, jax.Array, jax.Array], jax.Array]
    sparse_logreg: bool = False
    convolutional: bool = False   # the model has convolutions (CPU: see Trainer.step_loop)

    @property
    def num_train(self) -> int:
        return int(self.train_x.shape[0])

    def data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.train_x, self.train_y, self.test_x, self.test_y


def _stateless(loss: Callable[[Any, jax.Array, jax.Array], jax.Array]):
    return lambda params, state, x, y, key: (loss(params, x, y), state)


def _amazon(cfg: TaskConfig) -> Task:
    try:
        data = load_amazon(cfg.data_path, n_train=cfg.n_train)
    except ValueError as exc:
        if "n_train" in str(exc):
            raise ConfigError(f"task.n_train: got {cfg.n_train}; {exc}") from None
        raise ConfigError(f"task.data_path: got {cfg.data_path!r}; {exc}") from None
    return Task(
        name="amazon", metric_name=TASK_METRICS["amazon"],
        train_x=data.train_idx, train_y=data.train_y, test_x=data.test_idx, test_y=data.test_y,
        init=lambda key: (init_logreg(key, data.dim), {}),
        loss=_stateless(logreg_loss),
        evaluate=lambda params, state, x, y: auc(logreg_logits(params, x), y),
        sparse_logreg=True,
    )


def _synthetic(cfg: TaskConfig, seed: int) -> Task:
    x, y = gaussian_mixture(seed, cfg.num_samples + cfg.num_samples // 4, cfg.num_features, cfg.num_classes)
    model = MLP(hidden=tuple(cfg.hidden), num_classes=cfg.num_classes)
    sample = np.zeros((1, cfg.num_features), np.float32)
    return Task(
        name="synthetic", metric_name=TASK_METRICS["synthetic"],
        train_x=x[: cfg.num_samples], train_y=y[: cfg.num_samples],
        test_x=x[cfg.num_samples:], test_y=y[cfg.num_samples:],
        init=lambda key: (model.init(key, sample)["params"], {}),
        loss=_stateless(lambda p, xb, yb: classification_loss(model.apply({"params": p}, xb), yb)),
        evaluate=lambda p, state, xb, yb: classification_accuracy(model.apply({"params": p}, xb), yb),
    )


def _image_data(cfg: TaskConfig) -> ImageData:
    if cfg.name == "digits":
        return load_digits()
    try:
        return load_tfds(cfg.name, data_dir=cfg.data_dir, download=cfg.download)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"task.data_dir: got {cfg.data_dir!r}; {exc}") from None


def _limit(data: ImageData, cfg: TaskConfig) -> tuple[np.ndarray, ...]:
    """The first ``train_samples`` / ``test_samples`` examples; more than the data set holds is refused."""
    sizes = {"train_samples": (cfg.train_samples, data.train_x.shape[0]),
             "test_samples": (cfg.test_samples, data.test_x.shape[0])}
    for field, (asked, held) in sizes.items():
        if asked is not None and asked > held:
            raise ConfigError(f"task.{field}: {asked} is more than the {held} examples {cfg.name} holds; "
                              f"give at most {held}, or null for all of them")
    n_train = data.train_x.shape[0] if cfg.train_samples is None else cfg.train_samples
    n_test = data.test_x.shape[0] if cfg.test_samples is None else cfg.test_samples
    return data.train_x[:n_train], data.train_y[:n_train], data.test_x[:n_test], data.test_y[:n_test]


def _images(cfg: TaskConfig) -> Task:
    """An image classifier: uint8 images in, augmentation (optional) and normalization on device.

    ``cfg.compute_dtype`` sets the model's arithmetic (:func:`jax_ec.models.make_model`); the
    parameters, their gradients, the loss (on float32 logits) and so the partition signs and the
    vote are float32 in either dtype."""
    data = _image_data(cfg)
    model = make_model(cfg.model or DEFAULT_MODELS[cfg.name], data.num_classes, cfg.width, cfg.compute_dtype)
    do_augment = cfg.augment if cfg.augment is not None else cfg.name == "cifar10"
    sample = jnp.zeros((1, *data.image_shape), jnp.float32)

    def prepare(x: jax.Array, key: jax.Array | None) -> jax.Array:
        if key is not None and do_augment:
            x = augment(key, x)
        x = normalize(x, data.mean, data.std)
        return x.reshape(x.shape[0], -1) if isinstance(model, MLP) else x

    def init(key: jax.Array) -> tuple[Any, Any]:
        if isinstance(model, MLP):
            variables = model.init(key, sample.reshape(1, -1))
        else:
            variables = model.init(key, sample, train=False)
        return variables["params"], variables.get("batch_stats", {})

    def apply(params, state, x, train: bool):
        """Logits in float32 (a bfloat16 model's are cast up before the loss and the argmax)."""
        variables = {"params": params, **({"batch_stats": state} if state else {})}
        if isinstance(model, MLP):
            return model.apply(variables, x).astype(jnp.float32), state
        if train and state:
            logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
            return logits.astype(jnp.float32), updates["batch_stats"]
        return model.apply(variables, x, train=train).astype(jnp.float32), state

    def loss(params, state, x, y, key):
        logits, new_state = apply(params, state, prepare(x, key), train=True)
        return classification_loss(logits, y), new_state

    def evaluate(params, state, x, y):
        def correct(xy):
            xb, yb = xy
            logits, _ = apply(params, state, prepare(xb, None), train=False)
            return (jnp.argmax(logits, -1) == yb).astype(jnp.float32)
        chunks = x.shape[0] // EVAL_CHUNK
        head = x.shape[0] - chunks * EVAL_CHUNK
        total = correct((x[:head], y[:head])).sum() if head else 0.0
        if chunks:
            body = (x[head:].reshape(chunks, EVAL_CHUNK, *x.shape[1:]), y[head:].reshape(chunks, EVAL_CHUNK))
            total = total + jax.lax.map(correct, body).sum()
        return total / x.shape[0]

    train_x, train_y, test_x, test_y = _limit(data, cfg)
    return Task(name=cfg.name, metric_name=TASK_METRICS[cfg.name], train_x=train_x, train_y=train_y,
                test_x=test_x, test_y=test_y, init=init, loss=loss, evaluate=evaluate,
                convolutional=not isinstance(model, MLP))


def make_task(cfg: TaskConfig, seed: int = 0) -> Task:
    """Build the task a config names (``seed`` fixes the synthetic data set, not the trials)."""
    if cfg.name == "amazon":
        return _amazon(cfg)
    if cfg.name == "synthetic":
        return _synthetic(cfg, seed)
    return _images(cfg)
