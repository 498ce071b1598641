"""Image classification data as in-memory NumPy arrays, plus augmentation and normalization.

Two sources:

* :func:`load_tfds` — CIFAR-10, MNIST and Fashion-MNIST through ``tensorflow-datasets``'
  random-access ``tfds.data_source`` (ArrayRecord files, decoded with NumPy/PIL; TensorFlow is
  not imported). Tests use ``tfds.testing.mock_data``, which works without TensorFlow.
* :func:`load_digits` — the 8×8 handwritten digits shipped with the package (1,797 images), a
  small real image task that runs anywhere without a download.

Images are kept as ``uint8`` ``(N, H, W, C)`` and labels as ``int32`` ``(N,)``. The pipeline of the
paper's CIFAR script (torchvision ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``,
``ToTensor()``, ``Normalize(mean, std)``) is ``normalize(augment(key, x), mean, std)``, both
functions in ``jax.numpy`` so that they run inside a jitted training step.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "DIGITS_PATH", "ImageData", "TFDS_NAMES", "augment",
    "channel_stats", "load_digits", "load_tfds", "normalize",
]

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of CIFAR-10 in ``[0, 1]`` units, as in the paper's (PyTorch) CIFAR script."""
CIFAR10_STD: tuple[float, float, float] = (0.2023, 0.1994, 0.2010)
"""The paper's script's CIFAR-10 ``std``. These widespread constants are not the pixel standard
deviation of CIFAR-10 (about (0.247, 0.243, 0.261)); they are kept to reproduce the paper."""

TFDS_NAMES: tuple[str, ...] = ("cifar10", "mnist", "fashion_mnist")
"""Datasets :func:`load_tfds` accepts."""

DIGITS_PATH = Path(__file__).resolve().parent / "digits.csv.gz"
"""The shipped 8×8 digits: 1,797 rows of 64 pixel values (0..16) and the label (0..9)."""


@dataclass(frozen=True)
class ImageData:
    """A train/test split of an image classification set.

    Attributes:
      train_x: uint8 ``(N_train, H, W, C)`` images.
      train_y: int32 ``(N_train,)`` labels in ``[0, num_classes)``.
      test_x: uint8 ``(N_test, H, W, C)``.
      test_y: int32 ``(N_test,)``.
      num_classes: number of classes.
      mean: per-channel mean, ``C`` floats, in units of ``pixel / 255`` (torchvision's
        ``ToTensor`` scale), for :func:`normalize`.
      std: per-channel standard deviation, same units.
    """
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("train", "test"):
            x, y = getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
            if x.ndim != 4 or x.dtype != np.uint8:
                raise ValueError(f"{name}_x: expected uint8 (N, H, W, C), got {x.dtype} {x.shape}")
            if y.shape != (x.shape[0],) or y.dtype != np.int32:
                raise ValueError(f"{name}_y: expected int32 ({x.shape[0]},), got {y.dtype} {y.shape}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"test_x: image shape {self.test_x.shape[1:]} differs from train_x's "
                             f"{self.train_x.shape[1:]}")
        channels = self.train_x.shape[-1]
        for name in ("mean", "std"):
            if len(getattr(self, name)) != channels:
                raise ValueError(f"{name}: expected {channels} values (one per channel), "
                                 f"got {getattr(self, name)}")
        if min(self.std) <= 0:
            raise ValueError(f"std: must be positive, got {self.std}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)``."""
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of ``images / 255``.

    ``images`` is ``(N, H, W, C)``; sums are accumulated in float64 over chunks of ``chunk``
    images, so no float copy of the whole set is made.
    """
    images = np.asarray(images)
    total = np.zeros(images.shape[-1])
    total_sq = np.zeros(images.shape[-1])
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].astype(np.float64) / 255.0
        total += block.sum(axis=(0, 1, 2))
        total_sq += np.square(block).sum(axis=(0, 1, 2))
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


# ----------------------------------------------------------------------------------------------
# TFDS


def _read_split(source: Any) -> tuple[np.ndarray, np.ndarray]:
    """All records of a ``tfds.data_source`` split as ``(uint8 images, int32 labels)``."""
    n = len(source)
    if n == 0:
        raise ValueError("the TFDS split is empty")
    first = source[0]
    images = np.empty((n, *np.shape(first["image"])), np.uint8)
    labels = np.empty((n,), np.int32)
    for i in range(n):  # one record at a time: ArrayRecord reads are random access and cheap
        record = first if i == 0 else source[i]
        images[i] = record["image"]
        labels[i] = record["label"]
    return images, labels


def load_tfds(name: str, data_dir: str | os.PathLike[str] | None = None,
              download: bool = True) -> ImageData:
    """Load a TFDS image classification set into memory, without TensorFlow.

    Reads both splits through ``tfds.data_source(name, split=..., data_dir=...)`` in the
    ArrayRecord format (random access; images decoded with OpenCV or PIL).

    Args:
      name: ``"cifar10"``, ``"mnist"`` or ``"fashion_mnist"``.
      data_dir: TFDS data directory; ``None`` means TFDS's default (``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      download: download and prepare the set if it is not in ``data_dir`` yet (a no-op once it
        is). Preparing runs TFDS's own generator, which encodes the images with TensorFlow, so a
        first download needs ``tensorflow`` installed (or the ArrayRecord files prepared
        elsewhere and copied to ``data_dir``); reading never does. With ``False`` nothing is
        downloaded. Under ``tfds.testing.mock_data`` keep ``True`` (the mock makes the download a
        no-op and serves random records).

    Returns:
      :class:`ImageData`; ``mean``/``std`` are the paper's constants for CIFAR-10
      (:data:`CIFAR10_MEAN`, :data:`CIFAR10_STD`) and computed from the training images otherwise.

    Raises:
      ValueError: unknown ``name``.
      FileNotFoundError: ``download=False`` and the prepared set is not under ``data_dir``.
      ImportError: ``tensorflow-datasets`` is missing, or preparing needs TensorFlow.
    """
    if name not in TFDS_NAMES:
        raise ValueError(f"name: unknown TFDS dataset {name!r}; allowed: {', '.join(TFDS_NAMES)}")
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:  # pragma: no cover - a main dependency
        raise ImportError("load_tfds needs tensorflow-datasets: pip install 'tensorflow-datasets>=4.9'"
                          ) from exc
    data_dir = None if data_dir is None else os.fspath(Path(data_dir).expanduser())
    builder_kwargs = {"file_format": "array_record"}
    builder = tfds.builder(name, data_dir=data_dir, **builder_kwargs)
    if not download and not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared in ArrayRecord format under data_dir "
            f"'{data_dir if data_dir is not None else tfds.core.constants.DATA_DIR}' (looked for "
            f"'{builder.data_dir}'); pass download=True to download it (needs a network and, to "
            "prepare it, tensorflow), or point data_dir to a directory holding it.")
    try:
        train, test = (tfds.data_source(name, split=split, data_dir=data_dir, download=download,
                                        builder_kwargs=builder_kwargs)
                       for split in ("train", "test"))
    except ModuleNotFoundError as exc:
        if exc.name != "tensorflow":
            raise
        raise ImportError(
            f"preparing TFDS dataset {name!r} in '{builder.data_dir}' runs TFDS's generator, which "
            "encodes images with TensorFlow: install tensorflow (CPU is enough) for the first "
            "download, or copy ArrayRecord files prepared elsewhere into data_dir.") from exc
    train_x, train_y = _read_split(train)
    test_x, test_y = _read_split(test)
    if name == "cifar10":
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    else:
        mean, std = channel_stats(train_x)
    return ImageData(train_x, train_y, test_x, test_y,
                     num_classes=int(builder.info.features["label"].num_classes), mean=mean, std=std)


# ----------------------------------------------------------------------------------------------
# 8×8 digits (shipped)


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """The 8×8 handwritten digits shipped with the package, split into train and test.

    Source: the UCI *Optical Recognition of Handwritten Digits* data set (E. Alpaydin and
    C. Kaynak, 1998; https://archive.ics.uci.edu/dataset/80, CC BY 4.0) — its 1,797-image test
    file ``optdigits.tes``, as redistributed by scikit-learn (``sklearn/datasets/data/digits.csv.gz``,
    copied unchanged). Each image counts the on-pixels of 4×4 blocks of a 32×32 bitmap: 8×8
    integers in ``0..16``; 10 classes (the digits 0–9).

    Args:
      test_fraction: share of the images held out, in ``(0, 1)``;
        ``round(test_fraction · 1797)`` images go to the test set.
      seed: seed of the shuffle (``numpy.random.default_rng(seed).permutation``) that decides the
        split; the same seed gives the same split everywhere.

    Returns:
      :class:`ImageData` with uint8 images ``(N, 8, 8, 1)`` holding the raw values ``0..16`` and
      ``mean``/``std`` computed from the training images (``pixel / 255`` units, like every
      :class:`ImageData`, so :func:`normalize` gives zero-mean, unit-variance inputs).

    Raises:
      ValueError: ``test_fraction`` outside ``(0, 1)`` or leaving an empty split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    with gzip.open(DIGITS_PATH, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    images = table[:, :64].reshape(-1, 8, 8, 1).astype(np.uint8)
    labels = table[:, 64].astype(np.int32)
    n = labels.shape[0]
    n_test = int(round(test_fraction * n))
    if not 0 < n_test < n:
        raise ValueError(f"test_fraction: {test_fraction} leaves an empty split of {n} images")
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    mean, std = channel_stats(images[train])
    return ImageData(images[train], labels[train], images[test], labels[test],
                     num_classes=10, mean=mean, std=std)


# ----------------------------------------------------------------------------------------------
# augmentation and normalization (jax.numpy, jit/vmap-safe)


def _augment_one(key: jax.Array, image: jax.Array, pad: int, flip: bool) -> jax.Array:
    h, w = image.shape[0], image.shape[1]
    key_y, key_x, key_f = jax.random.split(key, 3)
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    dy = jax.random.randint(key_y, (), 0, 2 * pad + 1)
    dx = jax.random.randint(key_x, (), 0, 2 * pad + 1)
    out = jax.lax.dynamic_slice(padded, (dy, dx, 0), (h, w, image.shape[2]))
    if flip:
        out = jnp.where(jax.random.bernoulli(key_f), out[:, ::-1], out)
    return out


def augment(key: jax.Array, images: jax.Array, *, pad: int = 4, flip: bool = True) -> jax.Array:
    """Random crop with zero padding and random horizontal flip, drawn independently per image.

    For each image (``H × W × C``): pad ``pad`` zero pixels on every side, take the ``H × W``
    window at offsets ``(dy, dx)`` uniform on ``{0, …, 2·pad}²`` — the content moves by
    ``(pad − dy, pad − dx)``, at most ``pad`` pixels each way, with zeros shifted in — then, if
    ``flip``, mirror left–right with probability 1/2. This is torchvision's
    ``RandomCrop(H, padding=pad)`` followed by ``RandomHorizontalFlip()``; apply it to the uint8
    images before :func:`normalize`, as torchvision does, so that the padding is black.

    Args:
      key: PRNG key; image ``i`` uses ``jax.random.split(key, N)[i]`` for the flattened batch.
      images: ``(..., H, W, C)`` with any number of leading batch axes (``(N, H, W, C)``,
        ``(k, m, H, W, C)``, …), any dtype.
      pad: padding in pixels (4 in the paper's script).
      flip: whether to draw horizontal flips.

    Returns:
      Augmented images, same shape and dtype. Pure: the same key gives the same output.
    """
    if images.ndim < 3:
        raise ValueError(f"images: expected (..., H, W, C), got shape {images.shape}")
    if pad < 0:
        raise ValueError(f"pad: must be >= 0, got {pad}")
    batch_shape, image_shape = images.shape[:-3], images.shape[-3:]
    flat = jnp.reshape(images, (-1, *image_shape))
    keys = jax.random.split(key, flat.shape[0])
    out = jax.vmap(lambda k, x: _augment_one(k, x, pad, flip))(keys, flat)
    return jnp.reshape(out, (*batch_shape, *image_shape))


def normalize(images: jax.Array, mean: Any, std: Any) -> jax.Array:
    """``(images / 255 − mean) / std`` per channel, in float32.

    ``mean`` and ``std`` are per-channel (length ``C``) in ``pixel / 255`` units, as
    :class:`ImageData` holds them (torchvision's ``ToTensor`` then ``Normalize``).
    """
    x = jnp.asarray(images).astype(jnp.float32) / 255.0
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
