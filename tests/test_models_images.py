"""Tests for the image models (CNN, CIFAR ResNets), per-partition BatchNorm and image data."""

from __future__ import annotations

import gzip
import hashlib
import re
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_ec.data.images import (CIFAR10_MEAN, CIFAR10_STD, DIGITS_PATH, ImageData, augment,
                                load_digits, load_tfds, normalize)
from jax.flatten_util import ravel_pytree

from jax_ec.models import CNN, MLP, MODEL_NAMES, ResNet, ResNet18, ResNet50, make_model
from jax_ec.models.mlp import classification_loss
from jax_ec.core import partition_grads


def init_key(seed: int = 0) -> jax.Array:
    """An ``rbg`` key for ``model.init`` in tests: XLA on CPU compiles the threefry draws of a
    ResNet's many parameter shapes slowly (~20 s for ResNet-18); ``rbg`` takes a few seconds."""
    return jax.random.key(seed, impl="rbg")


def count_params(model, shape, **kwargs) -> int:
    """Parameter count from shapes only (``jax.eval_shape``: nothing is initialized)."""
    variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros(shape), **kwargs),
                               jax.random.PRNGKey(0))
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


# ---------------------------------------------------------------------------------- models


def test_parameter_counts_match_pytorch():
    assert count_params(ResNet18(num_classes=10), (1, 32, 32, 3), train=False) == 11_173_962
    assert count_params(ResNet50(num_classes=10), (1, 32, 32, 3), train=False) == 23_520_842
    assert count_params(CNN(num_classes=10), (1, 28, 28, 1)) == 1_199_882
    assert count_params(ResNet18(num_classes=100), (1, 32, 32, 3), train=False) == 11_220_132


@pytest.mark.parametrize("factory", [ResNet18, ResNet50])
def test_resnet_shapes_train_and_eval(factory):
    """Shapes only (``jax.eval_shape``, nothing compiled): logits and the batch_stats update."""
    model = factory(num_classes=10, width=2)
    x = jax.ShapeDtypeStruct((5, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros(x.shape), train=False),
                               jax.random.PRNGKey(0))
    logits, updates = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
    assert logits.shape == (5, 10) and logits.dtype == jnp.float32
    assert jax.tree.map(lambda a: a.shape, updates["batch_stats"]) == \
        jax.tree.map(lambda a: a.shape, variables["batch_stats"])
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert logits.shape == (5, 10)
    expansion = 1 if factory is ResNet18 else 4
    assert variables["params"]["Dense_0"]["kernel"].shape == (8 * 2 * expansion, 10)


@pytest.mark.slow   # a whole run; the default set keeps a shorter one of its kind
def test_resnet18_train_and_eval_modes():
    model = ResNet18(num_classes=10, width=2)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 32, 32, 3))
    variables = jax.jit(lambda k: model.init(k, x, train=False))(init_key())
    assert set(variables) == {"params", "batch_stats"}
    train_fn = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    eval_fn = jax.jit(lambda v, x: model.apply(v, x, train=False))

    logits, updates = train_fn(variables, x)
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32
    assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
    # the stem's running mean moved 10% of the way to the batch mean (PyTorch momentum 0.1)
    h = jax.lax.conv_general_dilated(x, variables["params"]["Conv_0"]["kernel"], (1, 1),
                                     ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(updates["batch_stats"]["BatchNorm_0"]["mean"],
                               0.1 * h.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)

    # eval mode: running averages, so a sample's logits do not depend on the rest of the batch
    eval_logits = eval_fn(variables, x)
    assert eval_logits.shape == (3, 10)
    np.testing.assert_allclose(eval_fn(variables, x[::-1])[::-1], eval_logits, rtol=1e-5, atol=1e-5)
    # train mode: batch statistics, so they do
    shuffled, _ = train_fn(variables, jnp.concatenate([x[:1], -x[1:]]))
    assert not np.allclose(shuffled[0], logits[0], atol=1e-4)


def test_cnn_and_mlp_shapes():
    x = jnp.ones((2, 8, 8, 1))
    for model in (CNN(num_classes=10, width=4, hidden=8), MLP(hidden=(8,), num_classes=10)):
        out = jax.jit(lambda k, x: model.apply(model.init(k, x), x))(init_key(), x)
        assert out.shape == (2, 10)


def test_make_model():
    assert MODEL_NAMES == ("mlp", "cnn", "resnet18", "resnet50")
    m = make_model("resnet18", 10)
    assert m.width == 64 and m.num_classes == 10 and m.block == "basic"
    assert make_model("resnet50", 100, width=8).width == 8
    assert make_model("cnn", 10, width=np.int64(16)).width == 16
    assert make_model("mlp", 10).hidden == (128,)
    with pytest.raises(ValueError, match="model name.*allowed: mlp, cnn, resnet18, resnet50"):
        make_model("resnet34", 10)
    with pytest.raises(ValueError, match="num_classes"):
        make_model("cnn", 1)
    with pytest.raises(ValueError, match="width"):
        make_model("resnet18", 10, width=0)


# ------------------------------------------------------------------ per-partition BatchNorm


@pytest.mark.slow   # a whole run; the default set keeps a shorter one of its kind
def test_partition_grads_with_per_partition_batchnorm_matches_loop():
    k, m = 3, 4
    # a two-stage ResNet (a BasicBlock with identity and one with a conv+BN shortcut): the
    # mechanism of ResNet-18 at a fraction of the compile time
    model = ResNet(stage_sizes=(1, 1), block="basic", num_classes=5, width=2)
    key_x, key_y = jax.random.split(jax.random.PRNGKey(0))
    xs = jax.random.normal(key_x, (k, m, 8, 8, 3)) + jnp.arange(k).reshape(k, 1, 1, 1, 1)
    ys = jax.random.randint(key_y, (k, m), 0, 5)
    variables = jax.jit(lambda k: model.init(k, xs[0], train=False))(init_key())
    params, stats = variables["params"], variables["batch_stats"]
    # running statistics that are not the initial ones
    stats = jax.tree.map(lambda s: s + 0.3, stats)

    def loss(p, s, x, y, key):  # the trainer's task interface; no augmentation here
        logits, upd = model.apply({"params": p, "batch_stats": s}, x, train=True, mutable=["batch_stats"])
        return classification_loss(logits, y), upd["batch_stats"]

    flat_grads, new_stats = jax.jit(
        lambda p, s, x, y: partition_grads(loss, p, s, x, y, jax.random.PRNGKey(0)))(params, stats, xs, ys)
    unravel = ravel_pytree(params)[1]
    grads = jax.vmap(unravel)(flat_grads)

    @jax.jit
    def worker(p, x, y):  # one worker alone: its partition's forward pass, its copy of the stats
        def loss(p):
            logits, upd = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                      mutable=["batch_stats"])
            return classification_loss(logits, y), upd["batch_stats"]
        return jax.grad(loss, has_aux=True)(p)

    loop_grads, loop_stats = zip(*(worker(params, xs[j], ys[j]) for j in range(k)))
    # float32 sums in another order (batched vs single convolutions): differences ~1e-6 absolute
    close = partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5)
    for j in range(k):
        jax.tree.map(lambda a, b: close(a[j], b), grads, loop_grads[j])
    master = jax.tree.map(lambda *s: sum(s) / k, *loop_stats)  # the master averages the copies
    jax.tree.map(close, new_stats, master)
    assert jax.tree.structure(new_stats) == jax.tree.structure(stats)

    # per-partition statistics matter: BatchNorm over the whole minibatch gives other gradients
    def whole(p):
        logits, _ = model.apply({"params": p, "batch_stats": stats}, xs.reshape(k * m, 8, 8, 3),
                                train=True, mutable=["batch_stats"])
        return classification_loss(logits, ys.reshape(-1))
    g_whole = jax.jit(jax.grad(whole))(params)
    mean_grad = jax.tree.map(lambda g: g.mean(axis=0), grads)
    assert not np.allclose(g_whole["Conv_0"]["kernel"], mean_grad["Conv_0"]["kernel"], atol=1e-5)


# ------------------------------------------------------------------------------ augmentation


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``img`` moved by (dy, dx) pixels with zeros shifted in."""
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def _random_images(n, h=12, w=10, c=3, seed=0):
    # values in 1..255: a zero in the output can only be padding
    return np.random.default_rng(seed).integers(1, 256, size=(n, h, w, c)).astype(np.uint8)


def test_augment_shape_dtype_and_determinism():
    x = _random_images(6)
    out = augment(jax.random.PRNGKey(0), x)
    assert out.shape == x.shape and out.dtype == jnp.uint8
    np.testing.assert_array_equal(out, augment(jax.random.PRNGKey(0), x))
    assert not np.array_equal(out, augment(jax.random.PRNGKey(1), x))
    # leading axes (k, m, ...) and jit
    out2 = jax.jit(augment)(jax.random.PRNGKey(0), x.reshape(2, 3, 12, 10, 3))
    np.testing.assert_array_equal(out2.reshape(x.shape), out)
    assert augment(jax.random.PRNGKey(0), x.astype(np.float32)).dtype == jnp.float32


def test_augment_flip_is_a_flip():
    x = _random_images(64)
    out = np.asarray(augment(jax.random.PRNGKey(3), x, pad=0))
    flipped = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)])
    same = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert np.all(flipped ^ same)
    assert 16 < flipped.sum() < 48
    np.testing.assert_array_equal(augment(jax.random.PRNGKey(3), x, pad=0, flip=False), x)


def test_augment_crop_shifts_by_at_most_pad_with_zero_padding():
    x = _random_images(64)
    out = np.asarray(augment(jax.random.PRNGKey(5), x, pad=4))
    shifts = set()
    for o, img in zip(out, x):
        matches = [(dy, dx, f) for f in (False, True) for dy in range(-4, 5) for dx in range(-4, 5)
                   if np.array_equal(o, _shift(img[:, ::-1] if f else img, dy, dx))]
        assert len(matches) == 1, matches
        shifts.add(matches[0][:2])
    assert len(shifts) > 20  # the offsets vary over the whole range
    assert max(abs(dy) for dy, _ in shifts) == 4 and max(abs(dx) for _, dx in shifts) == 4


def test_normalize():
    x = np.full((2, 4, 4, 3), 255, np.uint8)
    out = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out[0, 0, 0], (1 - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD),
                               rtol=1e-6)


# ------------------------------------------------------------------------------------- data


def test_digits():
    d = load_digits()
    assert isinstance(d, ImageData) and d.num_classes == 10
    assert d.train_x.shape == (1438, 8, 8, 1) and d.test_x.shape == (359, 8, 8, 1)
    assert d.train_x.dtype == np.uint8 and d.train_y.dtype == np.int32
    x = np.concatenate([d.train_x, d.test_x])
    y = np.concatenate([d.train_y, d.test_y])
    assert x.min() == 0 and x.max() == 16
    assert set(np.unique(d.train_y)) == set(np.unique(d.test_y)) == set(range(10))
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # the shipped file is scikit-learn 1.9.1's sklearn/datasets/data/digits.csv.gz, unchanged
    assert hashlib.sha256(DIGITS_PATH.read_bytes()).hexdigest() == \
        "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
    with gzip.open(DIGITS_PATH, "rt") as f:
        assert f.readline().strip().endswith(",0")  # the first image is a 0
    # normalization from the training images: zero mean, unit variance
    z = np.asarray(normalize(d.train_x, d.mean, d.std))
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-4
    # seeded split: same seed same split, another seed another split, same images overall
    np.testing.assert_array_equal(load_digits(seed=0).test_y, d.test_y)
    other = load_digits(test_fraction=0.5, seed=1)
    assert other.test_x.shape[0] == 898 and other.train_x.shape[0] == 899
    assert np.sort(np.concatenate([other.train_y, other.test_y])).tolist() == np.sort(y).tolist()
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.0)


tfds = pytest.importorskip("tensorflow_datasets")


@pytest.mark.parametrize("name,shape", [("cifar10", (32, 32, 3)), ("mnist", (28, 28, 1)),
                                        ("fashion_mnist", (28, 28, 1))])
def test_load_tfds_mock_data(name, shape):
    with tfds.testing.mock_data(num_examples=20):
        d = load_tfds(name)
    assert d.train_x.shape == (20, *shape) and d.test_x.shape == (20, *shape)
    assert d.train_x.dtype == d.test_x.dtype == np.uint8
    assert d.train_y.dtype == d.test_y.dtype == np.int32
    assert d.num_classes == 10 and 0 <= d.train_y.min() and d.train_y.max() < 10
    if name == "cifar10":
        assert d.mean == CIFAR10_MEAN and d.std == CIFAR10_STD
    else:
        assert len(d.mean) == len(d.std) == 1 and 0 < d.std[0]


def test_load_tfds_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "mnist"))):
        load_tfds("mnist", data_dir=tmp_path, download=False)
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or created
    with pytest.raises(ValueError, match="name: unknown TFDS dataset 'svhn'"):
        load_tfds("svhn")
