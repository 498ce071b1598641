"""jax_ec.models.layers: the dense layer's gradient rule gives flax's gradients bit for bit."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_ec.models.layers import Dense, dense_dot_general


def _per_partition_grads(layer_cls, x, k):
    """Flat per-partition gradients of a two-layer net (vmap over k partitions, as the trainer)."""
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return layer_cls(3)(nn.relu(layer_cls(7)(x)))

    net = Net()
    params = net.init(jax.random.PRNGKey(0), x[:1])

    def loss(p, xb):
        return jnp.sum(jnp.tanh(net.apply(p, xb)) ** 2)

    xs = x.reshape(k, -1, *x.shape[1:])
    return params, jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(params, xs)


@pytest.mark.parametrize("shape", [(30, 5), (30, 4, 5)])
def test_dense_gradients_equal_flax_bitwise(shape):
    x = jax.random.normal(jax.random.PRNGKey(1), shape)
    p_ref, g_ref = _per_partition_grads(nn.Dense, x, k=3)
    p_new, g_new = _per_partition_grads(Dense, x, k=3)
    assert jax.tree.structure(p_ref) == jax.tree.structure(p_new)   # same parameter names
    for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_new)):
        assert a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_dense_dot_general_falls_back_for_other_contractions():
    a = jax.random.normal(jax.random.PRNGKey(2), (2, 4, 5))
    b = jax.random.normal(jax.random.PRNGKey(3), (2, 5, 3))
    dims = (((2,), (1,)), ((0,), (0,)))
    np.testing.assert_array_equal(np.asarray(dense_dot_general(a, b, dims)),
                                  np.asarray(jax.lax.dot_general(a, b, dims)))


def _conv_net(conv_cls, strides, padding, kernel):
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(conv_cls(4, (kernel, kernel), strides=(strides, strides), padding=padding)(x))
            return conv_cls(3, (3, 3), padding="SAME", use_bias=False)(x).mean(axis=(1, 2))
    return Net()


# Every shape with the unrolled rule (unroll_min_macs = 0) in the default set; the default rule
# (None) on one shape there and on the others in the slow set.
@pytest.mark.parametrize("strides,padding,kernel,unroll_min_macs", [
    *((*shape, 0) for shape in [(1, "SAME", 3), (2, ((1, 1), (1, 1)), 3), (1, "VALID", 3), (2, "VALID", 1)]),
    (1, "SAME", 3, None),
    *(pytest.param(*shape, None, marks=pytest.mark.slow) for shape in [(2, ((1, 1), (1, 1)), 3), (1, "VALID", 3),
                                                                       (2, "VALID", 1)])])
def test_conv_per_partition_and_per_trial_gradients_equal_flax_bitwise(strides, padding, kernel, unroll_min_macs,
                                                                       monkeypatch):
    """The per-partition gradients (vmap over partitions) and the unbatched gradient are exactly
    flax's nn.Conv's (JAX's batch-grouped convolution); under trials × partitions (nested vmaps)
    they agree to float rounding (XLA sums the batched bias and input gradients in another order,
    with nn.Conv as well: there a trial in a batch differs from the trial alone in the last bits)."""
    from jax_ec.models import layers
    from jax_ec.models.layers import Conv
    if unroll_min_macs is not None:   # 0: every convolution here takes the unrolled batching rule
        monkeypatch.setattr(layers, "UNROLL_MIN_MACS", unroll_min_macs)
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 3, 4, 9, 9, 2))   # (trials, partitions, samples, H, W, C)
    grads = {}
    for name, cls in (("flax", nn.Conv), ("ours", Conv)):
        net = _conv_net(cls, strides, padding, kernel)
        params = net.init(jax.random.PRNGKey(0), x[0, 0])

        def loss(p, xb, net=net):
            return jnp.sum(jnp.sin(net.apply(p, xb)))

        per_partition = jax.vmap(jax.grad(loss), in_axes=(None, 0))
        grads[name] = (jax.jit(per_partition)(params, x[0]),
                       jax.jit(jax.vmap(per_partition, in_axes=(None, 0)))(params, x),
                       jax.jit(jax.grad(loss))(params, x[0, 0]))
    assert jax.tree.structure(grads["flax"]) == jax.tree.structure(grads["ours"])
    for i in (0, 2):
        for a, b in zip(jax.tree.leaves(grads["flax"][i]), jax.tree.leaves(grads["ours"][i])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(grads["flax"][1]), jax.tree.leaves(grads["ours"][1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_conv_general_dilated_falls_back_for_other_convolutions():
    from jax_ec.models.layers import conv_general_dilated
    x = jax.random.normal(jax.random.PRNGKey(5), (2, 7, 7, 4))
    w = jax.random.normal(jax.random.PRNGKey(6), (3, 3, 2, 6))
    args = ((1, 1), "SAME")
    kw = dict(dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2)
    np.testing.assert_array_equal(np.asarray(conv_general_dilated(x, w, *args, **kw)),
                                  np.asarray(jax.lax.conv_general_dilated(x, w, *args, **kw)))
