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

Everything is pure ``jax.numpy`` and safe under ``jit`` and ``vmap``. Both sums are matrix products
(XLA:CPU reduces a matmul with a ones vector far faster than ``sum(axis=0)``); all operands are small
integers stored in float32, so the results are exact.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .attacks import RANDOM_ATTACKS, attack_messages, check_attack

__all__ = ["partition_signs", "local_votes", "corrupt", "global_vote", "election", "fused_election", "elect"]


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


# Largest n·k for which ``election(..., fused=True)`` writes the vote as one unrolled elementwise expression.
FUSED_MAX_TERMS = 1024
# Attacks whose message at a coordinate is a function of that coordinate's values only.
_FUSED_ATTACKS = ("none", "reverse", "directional", "omniscient")


def election(G: jax.Array, S: jax.Array, byzantine: jax.Array, attack: str,
             key: jax.Array | None = None, direction: int | jax.Array = 1,
             reduce: Callable[[jax.Array], jax.Array] | None = None, fused: bool | None = None) -> jax.Array:
    """Steps 2–4 on given partition signs ``S``; ``attack`` is static, everything else is data.

    ``reduce``: for a partition-sharded election, ``S`` holds this device's partitions and ``G``
    the matching columns; ``reduce`` (e.g. ``lambda x: lax.psum(x, "parts")``) sums the partial
    counts ``G_local @ S_local`` over devices before the sign. The counts are small integers, so the
    result equals the unsharded election exactly.

    ``fused=True`` (unsharded, n·k ≤ :data:`FUSED_MAX_TERMS`, an attack acting coordinate by
    coordinate) runs the same arithmetic as one elementwise expression (:func:`fused_election`): S
    is read once and nothing of size n × d is materialized — 3.7× faster than the matmul form for
    the election alone at d = 11M on the CPU (benchmarks/vote_kernel), but inside a whole ResNet
    step, where the election is ~2.5% of the time, it doubled the compile time on the CPU, so the
    default (``None``) is the matmul form. Both forms sum small integers: identical votes.
    """
    n, k = G.shape
    if (fused is True and reduce is None and attack in _FUSED_ATTACKS and n * k <= FUSED_MAX_TERMS
            and S.ndim == 2):
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
    """The election as one elementwise expression, unrolled over the n·k entries of ``G``.

    ``v = sign(Σ_i m_i)`` with ``m_i = sign(Σ_j G[i, j] S_j)`` for honest workers and the attack's
    message for Byzantine ones (``reverse``: ``−c_i``; ``directional``: ``direction``;
    ``omniscient``: ``−sign(Σ_j S_j)``). The sums are of small integers: exact in any order.
    """
    if attack not in _FUSED_ATTACKS:
        raise ValueError(f"attack: {attack!r} has no fused form; allowed: {', '.join(_FUSED_ATTACKS)}")
    n, k = G.shape
    G = G.astype(S.dtype)
    rows = [S[j] for j in range(k)]
    if attack == "omniscient":
        truth = rows[0]
        for j in range(1, k):
            truth = truth + rows[j]
        lie = -jnp.sign(truth)
    total = jnp.zeros(S.shape[1:], S.dtype)
    for i in range(n):
        count = G[i, 0] * rows[0]
        for j in range(1, k):
            count = count + G[i, j] * rows[j]
        c = jnp.sign(count)
        if attack == "reverse":
            c = jnp.where(byzantine[i], -c, c)
        elif attack == "directional":
            c = jnp.where(byzantine[i], jnp.asarray(direction, S.dtype), c)
        elif attack == "omniscient":
            c = jnp.where(byzantine[i], lie, c)
        total = total + jnp.where(jnp.isnan(c), 0.0, c)   # the master reads a NaN message as 0
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
