"""Layers whose gradients are written in the form XLA runs fastest when they are computed per
partition (``vmap`` over the k partitions, :func:`jax_ec.core.partition_grads`). Forward passes,
parameter names and gradients are those of flax's ``nn.Dense`` / ``nn.Conv``, bit for bit (tested);
only how XLA is asked to compute the gradients differs.

**Dense.** A dense layer ``y = x W`` (``x``: (…, i), ``W``: (i, o)) has the gradients

    ∂ℓ/∂x = (∂ℓ/∂y) Wᵀ,        ∂ℓ/∂W = xᵀ (∂ℓ/∂y)   (summed over the rows of the partition).

JAX's own transpose rule of ``dot_general`` computes the weight gradient as ``(∂ℓ/∂y)ᵀ x``, an
(o, i) matrix, and then transposes it. Once vmapped over partitions this becomes a batched matmul
followed by a batched transpose copy of every weight gradient, which XLA:CPU runs slowly
(benchmarks/README.md). :func:`dense_dot_general` computes the same two products directly in the
kernel's (i, o) layout. The arithmetic is the same contraction in the same order: the
gradients, and whole training runs, are bitwise equal to flax's ``nn.Dense`` (tested).

**Conv.** The weight gradient of a convolution ``y = x ⋆ w`` is itself a convolution of the input
with the output cotangent, ``∂ℓ/∂w = corr(x, ∂ℓ/∂y)``, summed over the samples. Vmapped over the k
partitions, JAX turns it into one *batch-grouped* convolution (``batch_group_count = k``), which
XLA:CPU runs several times slower than k ordinary ones (``benchmarks/results/partition_grads*.json``).
:func:`conv_general_dilated`
keeps the forward pass and the input gradient as ``lax.conv_general_dilated`` and its transpose,
and gives the weight gradient a batching rule (``jax.custom_batching.custom_vmap``) that computes
one ordinary weight-gradient convolution per partition (per trial and partition under nested
vmaps) and stacks them: each is the very convolution the unbatched gradient runs, so the gradients
are bitwise those of ``vmap`` over ``nn.Conv``. The rule is used where :func:`conv_rule` says so (by default on the CPU backend only: other backends keep
JAX's batch-grouped convolution, which cuDNN-class libraries run well), for 2-D NHWC/HWIO convolutions without dilation, feature groups
or an explicit precision (``nn.Conv``'s defaults), and unrolls only convolutions of at least
:data:`UNROLL_MIN_MACS` multiply-adds per partition; anything else keeps JAX's own batching and
``lax.conv_general_dilated``. Costs: compile time grows with the number of unrolled convolutions,
and the layer supports first-order reverse-mode
differentiation only (``custom_vjp``: no ``jvp``/Hessians through it), which is all training uses.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import custom_batching, lax

__all__ = ["Dense", "dense_dot_general", "Conv", "conv_general_dilated", "conv_rule", "CONV_RULES"]

CONV_RULES = ("auto", "per_partition", "standard")
_CONV_RULE: contextvars.ContextVar[str] = contextvars.ContextVar("jax_ec_conv_rule", default="auto")


@contextlib.contextmanager
def conv_rule(rule: str):
    """Trace convolutions inside the block with the weight-gradient ``rule``: ``per_partition`` (the
    batching rule below, any backend), ``standard`` (JAX's batch-grouped convolution) or ``auto``
    (the rule on the CPU backend only). :mod:`jax_ec.runtime` chooses it; the gradients are the
    same either way."""
    if rule not in CONV_RULES:
        raise ValueError(f"conv_rule: got {rule!r}; allowed: {', '.join(CONV_RULES)}")
    token = _CONV_RULE.set(rule)
    try:
        yield
    finally:
        _CONV_RULE.reset(token)


@jax.custom_vjp
def _dense(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x W`` over the last axis of ``x``."""
    return jnp.matmul(x, w)


def _dense_fwd(x, w):
    return jnp.matmul(x, w), (x, w)


def _dense_bwd(residuals, ct):
    x, w = residuals
    dx = jnp.matmul(ct, w.T)
    dw = jnp.einsum("ni,no->io", x.reshape(-1, x.shape[-1]), ct.reshape(-1, ct.shape[-1]))
    return dx, dw


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """A drop-in ``dot_general`` for ``nn.Dense``: its contraction (last axis of the input with the
    first of a 2-D kernel, no batch axes) with the gradient rule above; any other use falls back to
    ``lax.dot_general``."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    standard = (rhs.ndim == 2 and tuple(lhs_contract) == (lhs.ndim - 1,) and tuple(rhs_contract) == (0,)
                and not lhs_batch and not rhs_batch and precision is None
                and preferred_element_type in (None, lhs.dtype) and lhs.dtype == rhs.dtype)
    if not standard:
        return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                   preferred_element_type=preferred_element_type)
    return _dense(lhs, rhs)


# ``nn.Dense`` with the gradient rule above (same class, so the same parameter names and shapes).
Dense = functools.partial(nn.Dense, dot_general=dense_dot_general)


# ------------------------------------------------------------------------------------------------
# Convolution

_NHWC = ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))   # nn.Conv's 2-D ConvDimensionNumbers
_DN = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, strides, pads):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN)


# Smallest weight-gradient convolution (multiply-adds per batch element: samples × output pixels ×
# output channels × kernel taps × input channels) that the batching rule unrolls. Below it JAX's
# batch-grouped convolution is kept: small convolutions are cheap either way, and every unrolled
# convolution costs compile time (benchmarks/results/partition_grads_resnet18_w16.json).
UNROLL_MIN_MACS = 10 ** 7


@functools.lru_cache(maxsize=None)
def _weight_grad_fn(w_shape: tuple[int, ...], strides: tuple[int, ...], pads: tuple[tuple[int, int], ...]):
    """``(x, g) ↦ ∂ℓ/∂w`` of ``conv(x, w)`` for the output cotangent ``g`` (JAX's own transpose),
    batched by unrolling: one ordinary weight-gradient convolution per index of a vmapped axis
    (when each has at least :data:`UNROLL_MIN_MACS` multiply-adds)."""
    def ordinary(x, g):
        _, vjp_w = jax.vjp(lambda w: _conv(x, w, strides, pads), jnp.zeros(w_shape, x.dtype))
        return vjp_w(g)[0]

    @custom_batching.custom_vmap
    def weight_grad(x, g):
        return ordinary(x, g)

    @weight_grad.def_vmap
    def _rule(axis_size, in_batched, x, g):
        x_batched, g_batched = in_batched
        per_element = g.shape[1:] if g_batched else g.shape
        if math.prod(per_element) * math.prod(w_shape[:3]) < UNROLL_MIN_MACS:
            return jax.vmap(ordinary, in_axes=(0 if x_batched else None, 0 if g_batched else None))(x, g), True
        # Nested vmaps (trials × partitions) recurse: each inner call is batched again.
        parts = [weight_grad(x[j] if x_batched else x, g[j] if g_batched else g) for j in range(axis_size)]
        return jnp.stack(parts), True

    return weight_grad


@functools.lru_cache(maxsize=None)
def _conv_fn(strides: tuple[int, ...], pads: tuple[tuple[int, int], ...]):
    @jax.custom_vjp
    def conv(x, w):
        return _conv(x, w, strides, pads)

    def fwd(x, w):
        return _conv(x, w, strides, pads), (x, w)

    def bwd(residuals, g):
        x, w = residuals
        (dx,) = jax.vjp(lambda x_: _conv(x_, w, strides, pads), x)[1](g)   # the ordinary input gradient
        return dx, _weight_grad_fn(tuple(w.shape), strides, pads)(x, g).astype(w.dtype)

    conv.defvjp(fwd, bwd)
    return conv


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """A drop-in ``lax.conv_general_dilated`` for ``nn.Conv`` whose weight gradient runs one
    ordinary convolution per partition under ``vmap`` (see the module docstring); other
    convolutions, and every backend but the CPU, go to ``lax.conv_general_dilated``."""
    rule = _CONV_RULE.get()
    enabled = rule == "per_partition" or (rule == "auto" and jax.default_backend() == "cpu")
    supported = (enabled and lhs.ndim == 4 and rhs.ndim == 4
                 and feature_group_count == 1 and precision is None and not kwargs
                 and tuple(lhs_dilation or (1, 1)) == (1, 1) and tuple(rhs_dilation or (1, 1)) == (1, 1)
                 and (dimension_numbers is None or tuple(map(tuple, dimension_numbers)) == _NHWC))
    if not supported:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision, **kwargs)
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        pads = tuple(tuple(p) for p in lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding))
    else:
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _conv_fn(strides, pads)(lhs, rhs)


# ``nn.Conv`` with the weight-gradient rule above (same class: the same parameter names and shapes).
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
