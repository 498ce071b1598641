"""The election: partition signs → local votes → Byzantine replacement → global vote.

For a flat parameter vector of length ``d``, ``k`` data partitions and ``n`` workers with
allocation matrix ``G`` (n × k, 0/1), one step of election-coded SignSGD computes

1. ``S = sign(g_j + σ ξ_j)``, ``j = 1..k``, ``ξ_j ~ N(0, I)``: the partition signs (k × d);
2. ``C = sign(G @ S)``: the local majority vote of every worker ("polling station"); a tie, and a
   worker holding no partition, give 0;
3. ``C'_i = m_i`` for Byzantine workers ``i`` (see :mod:`jax_ec.attacks`), ``C'_i = C_i`` otherwise;
4. ``v = sign(1ᵀ sign(C'))``: the master's majority vote; a tie gives 0 (the coordinate does not
   move). The master reads every message as its sign, and a NaN message as 0, so garbage from a
   Byzantine worker counts at most as one ±1 vote.

Everything is pure ``jax.numpy`` and safe under ``jit`` and ``vmap``. Two forms compute the same
votes. The matmul form (the default of :func:`election`): both sums are matrix products (XLA:CPU
reduces a matmul with a ones vector far faster than ``sum(axis=0)``); all operands are small
integers stored in float32, so the results are exact. The fused form (``fused=True``,
:func:`fused_election`): the k signs of a coordinate packed into bit sets and every worker's count
taken with population counts, in one elementwise pass over S.
"""

from __future__ import annotations

import functools
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .attacks import RANDOM_ATTACKS, attack_messages, check_attack

__all__ = ["partition_signs", "local_votes", "corrupt", "global_vote", "election", "fused_election", "fused_applies", "elect"]


def partition_signs(partition_grads: jax.Array, key: jax.Array | None = None,
                    noise_std: float | jax.Array = 0.0) -> jax.Array:
    """``S_j = sign(g_j + σ ξ_j)``; without a key (or with σ = 0) no noise is added."""
    g = partition_grads
    if key is not None:
        g = g + noise_std * jax.random.normal(key, g.shape, g.dtype)
    return jnp.sign(g)


def local_votes(G: jax.Array, S: jax.Array) -> jax.Array:
    """``C = sign(G @ S)``: each worker's majority over the signs of the partitions it holds."""
    return jnp.sign(G.astype(S.dtype) @ S)


def corrupt(C: jax.Array, byzantine: jax.Array, messages: jax.Array) -> jax.Array:
    """Replace the votes of Byzantine workers (``byzantine``: (n,) bool) by their messages."""
    return jnp.where(byzantine[:, None], messages, C)


def global_vote(C: jax.Array) -> jax.Array:
    """``v = sign(Σ_i sign(C_i))`` with NaN messages read as 0 (a tie gives 0)."""
    messages = jnp.sign(jnp.where(jnp.isnan(C), 0.0, C))
    return jnp.sign(jnp.ones((C.shape[0],), C.dtype) @ messages)


# Largest n·⌈k/32⌉ (popcount terms per coordinate) for which ``election(..., fused=True)`` writes the
# vote as one elementwise expression (it is unrolled over the n workers).
FUSED_MAX_TERMS = 1024
# Attacks whose message at a coordinate is a function of that coordinate's values only.
_FUSED_ATTACKS = ("none", "reverse", "directional", "omniscient")


def fused_applies(n: int, k: int, attack: str) -> bool:
    """Whether ``election(..., fused=True)`` takes the fused form for ``n`` workers, ``k``
    partitions and ``attack`` (unsharded; an attack acting coordinate by coordinate)."""
    return attack in _FUSED_ATTACKS and n * -(-k // 32) <= FUSED_MAX_TERMS


def election(G: jax.Array, S: jax.Array, byzantine: jax.Array, attack: str,
             key: jax.Array | None = None, direction: int | jax.Array = 1,
             reduce: Callable[[jax.Array], jax.Array] | None = None, fused: bool | None = None) -> jax.Array:
    """Steps 2–4 on given partition signs ``S``; ``attack`` is static, everything else is data.

    ``reduce``: for a partition-sharded election, ``S`` holds this device's partitions and ``G``
    the matching columns; ``reduce`` (e.g. ``lambda x: lax.psum(x, "parts")``) sums the partial
    counts ``G_local @ S_local`` over devices before the sign. The counts are small integers, so the
    result equals the unsharded election exactly.

    ``fused=True`` (unsharded, an attack acting coordinate by coordinate, n·⌈k/32⌉ ≤
    :data:`FUSED_MAX_TERMS`: :func:`fused_applies`) computes the same votes with bit-packed signs
    in one elementwise pass (:func:`fused_election`): S is read once and nothing of size n × d is
    materialized (CPU, n = k = 15, sign included: d = 9,610: 104 µs vs 234 µs; d = 11M: 282 ms vs
    567 ms). The default (``None``) is the matmul form; the trainer picks the fused form for models
    without convolutions (:attr:`jax_ec.train.Trainer.fused_vote`). Both forms sum small integers:
    identical votes (tested).
    """
    n, k = G.shape
    if fused is True and reduce is None and S.ndim == 2 and fused_applies(n, k, attack):
        return fused_election(G, S, byzantine, attack, direction)
    counts = G.astype(S.dtype) @ S
    if reduce is not None:
        counts = reduce(counts)
    C = jnp.sign(counts)
    if attack != "none":
        C = corrupt(C, byzantine, attack_messages(attack, C, S, key, direction, reduce))
    return global_vote(C)


def fused_election(G: jax.Array, S: jax.Array, byzantine: jax.Array, attack: str,
                   direction: int | jax.Array = 1) -> jax.Array:
    """The election as one elementwise pass over bit-packed signs: O(k + n·⌈k/32⌉) integer
    operations per coordinate (the matmul form: 2·n·k flops and an (n, d) intermediate).

    At every coordinate the k partition signs become three bit sets over the partitions,
    ``P = {j : S_j > 0}``, ``N = {j : S_j < 0}`` and ``Z = {j : S_j is NaN}`` (32-bit words), and
    worker i's allocation row becomes the bit set ``A_i = {j : G[i, j] = 1}``. Then

        Σ_j G[i, j] S_j = |P ∩ A_i| − |N ∩ A_i|      (population counts),

    so worker i's local vote is ``c_i = sign(|P ∩ A_i| − |N ∩ A_i|)``. A NaN partition sign at a
    coordinate makes every count there NaN in the matmul form (``0 · NaN = NaN``), so every local
    vote there is void (the master reads NaN as 0) when ``Z ≠ ∅``; the same here. Byzantine
    workers send the attack's message instead (``reverse``: ``−c_i``; ``directional``:
    ``direction``; ``omniscient``: ``−sign(|P| − |N|)``, void if ``Z ≠ ∅``), and
    ``v = sign(Σ_i m_i)``. Every sum is of small integers: the votes equal the matmul form's
    exactly (tested), with no (n, d) intermediate and S read once.

    Only the signs of ``S`` are read (``S > 0``, ``S < 0``, NaN), so ``S`` may be the raw partition
    gradients: the votes are those of their signs, ±0, ±Inf and NaN included (tested). The trainer
    passes the gradients, which spares a sign pass that XLA would otherwise materialize (it reads
    each value three times): digits MLP on the CPU, 64 vmapped trials: 289 → 249 µs per trial-step.
    """
    if attack not in _FUSED_ATTACKS:
        raise ValueError(f"attack: {attack!r} has no fused form; allowed: {', '.join(_FUSED_ATTACKS)}")
    n, k = G.shape
    words = -(-k // 32)
    zero = jnp.zeros(S.shape[1:], jnp.uint32)
    pos, neg, nan = [], [], []
    for w in range(words):
        p_w, n_w, z_w = zero, zero, zero
        for j in range(32 * w, min(32 * (w + 1), k)):
            bit = jnp.uint32(1 << (j - 32 * w))
            p_w = p_w | jnp.where(S[j] > 0, bit, jnp.uint32(0))
            n_w = n_w | jnp.where(S[j] < 0, bit, jnp.uint32(0))
            z_w = z_w | jnp.where(jnp.isnan(S[j]), bit, jnp.uint32(0))
        pos.append(p_w)
        neg.append(n_w)
        nan.append(z_w)
    # A_i as words: the bits of G's row i (distinct powers of two: their sum is their union).
    shifts = jnp.arange(k, dtype=jnp.uint32) % 32
    bits = (G != 0).astype(jnp.uint32) << shifts
    masks = [jnp.sum(bits[:, 32 * w:32 * (w + 1)], axis=1, dtype=jnp.uint32) for w in range(words)]

    def popcount(x):
        return jax.lax.population_count(x).astype(jnp.int32)

    def vote_of(count, void):
        return jnp.where(void, 0.0, jnp.sign(count).astype(S.dtype))

    void = functools.reduce(jnp.bitwise_or, nan) != 0
    if attack == "omniscient":
        lie = -vote_of(sum(popcount(pos[w]) - popcount(neg[w]) for w in range(words)), void)
    total = jnp.zeros(S.shape[1:], S.dtype)
    for i in range(n):
        count = sum(popcount(pos[w] & masks[w][i]) - popcount(neg[w] & masks[w][i]) for w in range(words))
        c = vote_of(count, void)
        if attack == "reverse":
            c = jnp.where(byzantine[i], -c, c)
        elif attack == "directional":
            c = jnp.where(byzantine[i], jnp.asarray(direction, S.dtype), c)
        elif attack == "omniscient":
            c = jnp.where(byzantine[i], lie, c)
        total = total + c
    return jnp.sign(total)


@partial(jax.jit, static_argnames=("attack", "use_noise"))
def _elect(G, grads, byzantine, attack, key, noise_std, direction, use_noise):
    noise_key, attack_key = jax.random.split(key)
    S = partition_signs(grads, noise_key if use_noise else None, noise_std)
    return election(G, S, byzantine, attack, attack_key, direction)


def elect(G, partition_grads, byzantine, attack: str = "reverse", key: jax.Array | None = None,
          noise_std: float = 0.0, direction: int = 1) -> jax.Array:
    """One election on partition gradients; returns the global vote in {−1, 0, +1}^d.

    Args:
      G: allocation matrix (n, k), 0/1.
      partition_grads: (k, d) gradients of the k partitions.
      byzantine: (n,) booleans, True for Byzantine workers.
      attack: one of ``none, reverse, directional, random, omniscient``.
      key: PRNG key; required by the random attack and by ``noise_std > 0``.
      noise_std: σ of the Gaussian noise added to each partition gradient before its sign.
      direction: +1 or −1, the constant message of the directional attack.
    """
    check_attack(attack)
    if not isinstance(G, jax.core.Tracer):
        from .codes import validate_allocation
        G = validate_allocation(G)
    G = jnp.asarray(G, jnp.float32)
    grads = jnp.asarray(partition_grads, jnp.float32)
    byz = jnp.asarray(byzantine)
    if grads.ndim != 2 or grads.shape[0] != G.shape[1]:
        raise ValueError(f"partition_grads: has shape {grads.shape}; expected (k, d) with k = {G.shape[1]} "
                         "(the number of columns of G)")
    if byz.shape != (G.shape[0],):
        raise ValueError(f"byzantine: has shape {byz.shape}; expected ({G.shape[0]},) booleans, one per worker")
    if byz.dtype != jnp.bool_:
        if not isinstance(byz, jax.core.Tracer) and not np.isin(np.asarray(byz), (0, 1)).all():
            raise ValueError("byzantine: expected booleans (or 0/1), one per worker")
        byz = byz.astype(jnp.bool_)
    if isinstance(direction, bool) or direction not in (1, -1):
        raise ValueError(f"direction: got {direction!r}; allowed: 1, -1")
    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std: got {noise_std!r}; expected a finite value >= 0")
    use_noise = noise_std > 0
    if key is None:
        if attack in RANDOM_ATTACKS or use_noise:
            raise ValueError(f"key: attack={attack!r} with noise_std={noise_std} needs a PRNG key")
        key = jax.random.PRNGKey(0)  # unused: no random operation consumes it
    return _elect(G, grads, byz, attack, key, jnp.float32(noise_std), jnp.float32(direction), use_noise)
