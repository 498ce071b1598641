"""A keyed pseudo-random permutation of ``{0, …, n − 1}``, evaluated at any index in O(1).

The data order of an epoch (``task.shuffle: true``) is a permutation ``π_e`` of the training rows;
a step needs only ``π_e`` at its own ``B`` positions. Drawing the whole permutation
(``jax.random.permutation``, a sort of ``n`` random keys) in every step of every trial costs
``O(n log n)`` per trial-step, which dominated the step of small models and made the cost of ``T``
trials grow with ``T·n``. :func:`permute` evaluates ``π`` at the positions asked for, in
``O(B)`` work per step.

Construction (format-preserving encryption; Black & Rogaway, CT-RSA 2002):

* a Feistel network on the ``m = ⌈log₂ n⌉`` bits of an index: split ``x = (L, R)`` into its high
  ``a = ⌈m/2⌉`` and low ``b = ⌊m/2⌋`` bits and apply :data:`ROUNDS` rounds that alternately
  update one half from the other, ``L ← L ⊕ F_i(R) mod 2^a`` (even ``i``) and
  ``R ← R ⊕ F_i(L) mod 2^b`` (odd ``i``), with ``F_i(u) = mix32(u ⊕ k_i)``. Each round is
  invertible whatever ``F_i`` is (apply it again), so the network is a bijection of
  ``{0, …, 2^m − 1}``; with independent pseudo-random round functions four rounds already give a
  strong pseudo-random permutation (Luby & Rackoff 1988). The round keys ``k_i`` are 32-bit words
  drawn from the JAX key (``jax.random.bits``); ``mix32`` is a 32-bit integer hash;
* *cycle walking* restricts it to ``{0, …, n − 1}``: apply the network until the value falls
  below ``n``. This is a bijection of ``{0, …, n − 1}`` (each cycle of the network is walked in
  the same order, skipping the values ``≥ n``); since ``2^m < 2n`` a value leaves the range with
  probability below 1/2 per application, so walks are short (they run :data:`WALK_UNROLL`
  applications per loop iteration).

The result depends only on the key's bits and integer arithmetic: it is the same on every
backend, under ``jit``/``vmap``/``shard_map``, and equals the plain NumPy reference of the tests
(:func:`permute_reference`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ROUNDS", "WALK_UNROLL", "permute", "permute_reference", "round_keys"]

# Feistel rounds (four suffice for a strong pseudo-random permutation with ideal round functions;
# more give margin for the cheap hash as round function; the cost is O(B) either way).
ROUNDS = 8
# Network applications per cycle-walking loop iteration (fewer loop iterations, same result).
WALK_UNROLL = 4
_MASK32 = 0xFFFFFFFF


def _halves(n: int) -> tuple[int, int]:
    """``(a, b)``: the bit widths of the high and low halves of ``m = ⌈log₂ n⌉`` bits."""
    m = max(int(n) - 1, 0).bit_length()
    return (m + 1) // 2, m // 2


def round_keys(key: jax.Array) -> jax.Array:
    """The :data:`ROUNDS` 32-bit round keys of the permutation keyed by ``key``."""
    return jax.random.bits(key, (ROUNDS,), jnp.uint32)


def _mix32(x: jax.Array) -> jax.Array:
    """A 32-bit integer hash (xor-shift-multiply; "lowbias32", C. Wellons): a bijection of uint32."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def permute(key: jax.Array, n: int, index: jax.Array) -> jax.Array:
    """``π_key(index)``: the images of ``index`` (any shape, values in ``[0, n)``) under the
    pseudo-random permutation of ``{0, …, n − 1}`` keyed by ``key``; int32, same shape.

    Distinct indices give distinct images, so the positions ``e·S … e·S + B − 1`` of one
    epoch's permutation never repeat a row. ``n`` is static (a Python int ≥ 1, < 2^31).
    """
    n = int(n)
    if not 1 <= n < 2 ** 31:
        raise ValueError(f"permute: n must be in [1, 2^31), got {n}")
    index = jnp.asarray(index)
    if n == 1:
        return jnp.zeros(index.shape, jnp.int32)
    a, b = _halves(n)
    mask_a, mask_b = jnp.uint32((1 << a) - 1), jnp.uint32((1 << b) - 1)
    keys = round_keys(key)

    def network(x):
        left, right = x >> b, x & mask_b
        for i in range(ROUNDS):
            if i % 2 == 0:
                left = left ^ (_mix32(right ^ keys[i]) & mask_a)
            else:
                right = right ^ (_mix32(left ^ keys[i]) & mask_b)
        return (left << b) | right

    def walk(x):
        for _ in range(WALK_UNROLL):
            x = jnp.where(x >= n, network(x), x)
        return x

    x = walk(network(index.astype(jnp.uint32)))
    x = jax.lax.while_loop(lambda x: jnp.any(x >= n), walk, x)
    return x.astype(jnp.int32)


def permute_reference(keys: np.ndarray, n: int, index: int) -> int:
    """The same permutation, one index at a time in plain Python integers (the tests' reference):
    ``keys`` are the round keys (:func:`round_keys`)."""
    if n == 1:
        return 0
    a, b = _halves(n)

    def mix(x: int) -> int:
        x ^= x >> 16
        x = (x * 0x7FEB352D) & _MASK32
        x ^= x >> 15
        x = (x * 0x846CA68B) & _MASK32
        return x ^ (x >> 16)

    x = int(index)
    while True:
        left, right = x >> b, x & ((1 << b) - 1)
        for i, k in enumerate(keys):
            if i % 2 == 0:
                left ^= mix(right ^ int(k)) & ((1 << a) - 1)
            else:
                right ^= mix(left ^ int(k)) & ((1 << b) - 1)
        x = (left << b) | right
        if x < n:
            return x
