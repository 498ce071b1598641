"""Byzantine attacks and Byzantine placement.

A Byzantine worker replaces its honest local vote ``c_i`` (a vector in {−1, 0, +1}^d) by a message
chosen by the adversary. Attacks (DESIGN.md §1):

* ``reverse``     — ``−c_i`` (the official code negates each partition sign, which negates the vote);
* ``directional`` — a constant vector ``direction · 1`` (CIFAR script: −1, Amazon script: +1);
* ``random``      — i.i.d. uniform ±1 per worker and coordinate (the official Amazon script,
  ``amazon_employer/MPI_main.py``, ``attackType = 0``);
* ``random_per_partition`` — a uniform ±1 per held partition and coordinate, and the sign of
  their sum (the official CIFAR script, ``cifar10/main.py``, ``--attack_type random``): a worker
  holding ``L_i`` partitions sends ``sign(2·X − L_i)`` with ``X ~ Binomial(L_i, 1/2)``, so a worker
  of even load sends 0 with probability ``C(L_i, L_i/2) / 2^L_i``;
* ``omniscient``  — ``−sign(Σ_j s_j)``: a vote against the true majority of all partition signs.
* ``none``        — honest behaviour (the no-attack baseline).

Placement of the ``b`` Byzantine workers:

* ``uniform``     — ``b`` distinct workers drawn uniformly per trial, fixed for the run (the paper);
* ``most_loaded`` — the ``b`` workers with the largest loads (code-aware adversary; ties to the
  lower index);
* ``per_step``    — ``b`` workers redrawn uniformly at every step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["ATTACKS", "PLACEMENTS", "RANDOM_ATTACKS", "SIGN_ONLY_ATTACKS", "attack_messages",
           "binomial_half_sign", "uniform_placement", "most_loaded_placement", "byzantine_mask",
           "check_attack"]

ATTACKS: tuple[str, ...] = ("none", "reverse", "directional", "random", "random_per_partition", "omniscient")
PLACEMENTS: tuple[str, ...] = ("uniform", "most_loaded", "per_step")
# Attacks whose messages need randomness.
RANDOM_ATTACKS: frozenset[str] = frozenset({"random", "random_per_partition"})
# Attacks that only have a sign form (votes), with no real-valued message of their own.
SIGN_ONLY_ATTACKS: frozenset[str] = frozenset({"random_per_partition"})


def check_attack(attack: object, field: str = "attack") -> str:
    """Return ``attack`` if it names a known attack, else raise one clear ``ValueError``."""
    if attack not in ATTACKS:
        raise ValueError(f"{field}: unknown attack {attack!r}; allowed: {', '.join(ATTACKS)}")
    return str(attack)


def binomial_half_sign(key: jax.Array, load: jax.Array, shape: tuple[int, ...], max_load: int) -> jax.Array:
    """``sign(2·X − L)`` with ``X ~ Binomial(L, 1/2)`` drawn independently per entry (float32).

    ``X`` is the population count of ``L`` uniformly random bits, so the draw is exact: the sum of
    ``L`` independent uniform ±1 values is ``2·X − L``. ``load`` (``L``, integers in
    ``0..max_load``) broadcasts against ``shape``; ``max_load`` (static) sets how many 32-bit
    words are drawn per entry.
    """
    words = max(1, -(-max_load // 32))
    bits = jax.random.bits(key, (words, *shape), jnp.uint32)
    load = jnp.asarray(load, jnp.int32)
    count = jnp.zeros(shape, jnp.int32)
    for w in range(words):
        used = jnp.clip(load - 32 * w, 0, 32)           # bits of this word that count
        mask = jnp.where(used >= 32, jnp.uint32(0xFFFFFFFF),
                         (jnp.uint32(1) << used.astype(jnp.uint32)) - jnp.uint32(1))
        count = count + jax.lax.population_count(bits[w] & mask).astype(jnp.int32)
    return jnp.sign(2 * count - load).astype(jnp.float32)


def attack_messages(attack: str, C: jax.Array, S: jax.Array, key: jax.Array | None,
                    direction: int | jax.Array = 1, reduce=None, loads: jax.Array | None = None) -> jax.Array:
    """What every worker would send if it were Byzantine, shape ``(n, d)`` like the honest votes ``C``.

    ``S`` (k, d) holds the partition signs (used by the omniscient attack; NaN signs count as 0);
    ``key`` is needed only by the random attacks, ``loads`` (n,) only by ``random_per_partition``.
    The caller keeps the honest votes of honest workers. ``reduce`` sums partial counts over
    devices when ``S`` holds only this device's partitions (see :func:`jax_ec.election.election`).
    """
    if attack == "none":
        return C
    if attack == "reverse":
        return -C
    if attack == "directional":
        return jnp.broadcast_to(jnp.asarray(direction, C.dtype), C.shape)
    if attack == "random":
        if key is None:
            raise ValueError("key: the random attack needs a PRNG key; pass key=jax.random.PRNGKey(...)")
        return jax.random.rademacher(key, C.shape, dtype=C.dtype)
    if attack == "random_per_partition":
        if key is None or loads is None:
            raise ValueError("key: the random_per_partition attack needs a PRNG key and the workers' loads")
        if reduce is not None:
            raise ValueError("attack: random_per_partition needs every partition on one device (gather first)")
        return binomial_half_sign(key, loads[:, None], C.shape, max_load=S.shape[0]).astype(C.dtype)
    if attack == "omniscient":
        counts = jnp.ones((S.shape[0],), S.dtype) @ jnp.where(jnp.isnan(S), 0.0, S)
        truth = jnp.sign(counts if reduce is None else reduce(counts))
        return jnp.broadcast_to(-truth, C.shape)
    raise ValueError(f"attack: unknown attack {attack!r}; allowed: {', '.join(ATTACKS)}")


def _lowest_ranked(scores: jax.Array, b: int | jax.Array) -> jax.Array:
    """Boolean mask of the ``b`` entries with the smallest score (stable: ties to the lower index)."""
    rank = jnp.argsort(jnp.argsort(scores, stable=True), stable=True)
    return rank < b


def uniform_placement(key: jax.Array, n: int, b: int | jax.Array) -> jax.Array:
    """``b`` distinct Byzantine workers out of ``n``, uniformly at random: boolean mask ``(n,)``."""
    return _lowest_ranked(jax.random.uniform(key, (n,)), b)


def most_loaded_placement(G: jax.Array, b: int | jax.Array) -> jax.Array:
    """The ``b`` workers with the largest loads ``Σ_j G[i, j]`` (ties to the lower index)."""
    return _lowest_ranked(-jnp.asarray(G, jnp.float32).sum(axis=1), b)


def byzantine_mask(placement: str, key: jax.Array, G: jax.Array, b: int | jax.Array) -> jax.Array:
    """Byzantine set for a trial (``per_step`` gives the first step's set; redraw with the step key)."""
    if placement in ("uniform", "per_step"):
        return uniform_placement(key, G.shape[0], b)
    if placement == "most_loaded":
        return most_loaded_placement(G, b)
    raise ValueError(f"placement: unknown placement {placement!r}; allowed: {', '.join(PLACEMENTS)}")
