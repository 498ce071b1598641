"""The election: partition signs → local votes → Byzantine replacement → global vote.

For a flat parameter vector of length ``d``, ``k`` data partitions and ``n`` workers with
allocation matrix ``G`` (n × k, 0/1), one step of election-coded SignSGD computes

1. ``s_ij = sign(g_j + σ ξ_ij)`` for every worker i and partition j it holds, ``ξ_ij ~ N(0, I)``
   independent over (i, j) (the official ``main.py``: each worker adds its own noise to each
   partition gradient it computes); without noise ``s_ij = s_j = sign(g_j)``, the partition signs
   ``S`` (k × d);
2. ``c_i = sign(Σ_j G[i, j] s_ij)``: the local majority vote of every worker ("polling station");
   a tie, and a worker holding no partition, give 0 (without noise: ``C = sign(G @ S)``);
3. ``C'_i = m_i`` for Byzantine workers ``i`` (see :mod:`jax_ec.attacks`), ``C'_i = c_i`` otherwise;
4. ``v = sign(1ᵀ sign(C'))``: the master's majority vote; a tie gives 0 (the coordinate does not
   move). The master reads every message as its sign, and a NaN message as 0, so garbage from a
   Byzantine worker counts at most as one ±1 vote.

A NaN partition sign ``s_j`` at a coordinate voids (0) the local vote of every worker holding
partition j there, and of no other worker; the omniscient adversary counts it as 0.

Everything is pure ``jax.numpy`` and safe under ``jit`` and ``vmap``. Without noise two forms
compute the same votes. The matmul form (the default of :func:`election`): both sums are matrix
products (XLA:CPU reduces a matmul with a ones vector faster than ``sum(axis=0)``); all
operands are small integers stored in float32, so the results are exact. The fused form
(``fused=True``, :func:`fused_election`): the k signs of a coordinate packed into bit sets and
every worker's count taken with population counts, in one elementwise pass over S. With noise,
:func:`per_copy_election` loops over the workers and over the partitions each one holds, so that
nothing of size n × k × d exists.
"""

from __future__ import annotations

import functools
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .attacks import (COORDINATEWISE_ATTACKS, RANDOM_ATTACKS, attack_messages, binomial_half_sign, check_attack,
                      stealth_flips)

__all__ = ["partition_signs", "local_votes", "corrupt", "global_vote", "election", "fused_election",
           "fused_applies", "per_copy_election", "per_copy_noise_sums", "signed_sum_election", "elect", "NOISE_MODELS", "MAX_PARTITIONS"]

# How noise before the sign is drawn: ``per_copy`` — each worker draws its own noise for each
# partition it holds (the official CIFAR code); ``per_partition`` — one draw per partition, shared
# by every worker holding it.
NOISE_MODELS: tuple[str, ...] = ("per_copy", "per_partition")
# The matmul form counts a NaN partition sign as NAN_WEIGHT (exact in float32 while
# k · NAN_WEIGHT < 2^24); a count above k then flags a worker holding a NaN partition. So k must
# stay below NAN_WEIGHT / 2.
NAN_WEIGHT = 4096.0
MAX_PARTITIONS = int(NAN_WEIGHT // 2) - 1


def _real(name: str, value, what: str):
    """Trace-time check of the jit-safe functions' arrays: an array of real numbers (NumPy, JAX
    or traced), not a list, string or None."""
    dtype = getattr(value, "dtype", None)
    if not hasattr(value, "shape") or dtype is None or not (
            dtype == np.bool_ or jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        raise ValueError(f"{name}: got {_checks.brief(value)}; expected {what}")
    return value


def _check_election(G, S, byzantine=None) -> None:
    """``G`` (n, k), ``S`` (k, ...) and ``byzantine`` (n,): arrays of matching shapes."""
    _real("G", G, "an (n, k) allocation array")
    if G.ndim != 2:
        raise ValueError(f"G: has shape {G.shape}; expected (n, k)")
    _real("S", S, f"a (k, d) array of partition signs with k = {G.shape[1]}")
    if S.ndim < 1 or S.shape[0] != G.shape[1]:
        raise ValueError(f"S: has shape {S.shape}; expected (k, d) with k = {G.shape[1]} (the columns of G)")
    if byzantine is not None:
        _real("byzantine", byzantine, f"({G.shape[0]},) booleans, one per worker")
        if byzantine.shape != (G.shape[0],):
            raise ValueError(f"byzantine: has shape {byzantine.shape}; expected ({G.shape[0]},), one per worker")


def partition_signs(partition_grads: jax.Array, key: jax.Array | None = None,
                    noise_std: float | jax.Array = 0.0) -> jax.Array:
    """``S_j = sign(g_j + σ ξ_j)``; without a key (or with σ = 0) no noise is added."""
    g = _real("partition_grads", partition_grads, "an array of real numbers")
    if key is not None:
        g = g + noise_std * jax.random.normal(_checks.prng_key("key", key), g.shape, g.dtype)
    return jnp.sign(g)


def _counts(G: jax.Array, S: jax.Array) -> jax.Array:
    """``G @ S'`` with a NaN sign counted as :data:`NAN_WEIGHT`: a count above ``k`` marks a worker
    holding a NaN partition at that coordinate (its honest count is ``|Σ_j G[i, j] s_j| ≤ k``)."""
    return G.astype(S.dtype) @ jnp.where(jnp.isnan(S), jnp.asarray(NAN_WEIGHT, S.dtype), S)


def _votes_of_counts(counts: jax.Array) -> jax.Array:
    """Local votes from :func:`_counts`: ``sign(count)``, 0 (void) where a held partition was NaN.

    An honest count is at most k ≤ :data:`MAX_PARTITIONS` in magnitude; one NaN among a worker's
    partitions lifts it to at least ``NAN_WEIGHT − (k − 1) > MAX_PARTITIONS``."""
    return jnp.where(counts > MAX_PARTITIONS, 0.0, jnp.sign(counts)).astype(counts.dtype)


def local_votes(G: jax.Array, S: jax.Array) -> jax.Array:
    """``C = sign(G @ S)``: each worker's majority over the signs of the partitions it holds; a
    worker holding a NaN partition sign votes 0 at that coordinate."""
    _check_election(G, S)
    if G.shape[1] > MAX_PARTITIONS:
        raise ValueError(f"G: has {G.shape[1]} partitions; at most {MAX_PARTITIONS} are supported")
    return _votes_of_counts(_counts(G, S))


def corrupt(C: jax.Array, byzantine: jax.Array, messages: jax.Array) -> jax.Array:
    """Replace the votes of Byzantine workers (``byzantine``: (n,) bool) by their messages."""
    return jnp.where(byzantine[:, None], messages, C)


def global_vote(C: jax.Array) -> jax.Array:
    """``v = sign(Σ_i sign(C_i))`` with NaN messages read as 0 (a tie gives 0)."""
    _real("C", C, "an (n, ...) array of messages")
    messages = jnp.sign(jnp.where(jnp.isnan(C), 0.0, C))
    return jnp.sign(jnp.ones((C.shape[0],), C.dtype) @ messages)


# Largest n·⌈k/32⌉ (popcount terms per coordinate) for which ``election(..., fused=True)`` writes the
# vote as one elementwise expression (it is unrolled over the n workers).
FUSED_MAX_TERMS = 1024


def fused_applies(n: int, k: int, attack: str) -> bool:
    """Whether ``election(..., fused=True)`` takes the fused form for ``n`` workers, ``k``
    partitions and ``attack`` (unsharded; an attack acting coordinate by coordinate)."""
    return attack in COORDINATEWISE_ATTACKS and n * -(-k // 32) <= FUSED_MAX_TERMS


def _finish(C: jax.Array, S: jax.Array, byzantine: jax.Array, attack: str, key: jax.Array | None,
            direction: int | jax.Array, reduce: Callable | None, loads: jax.Array) -> jax.Array:
    """Steps 3–4: Byzantine replacement of the honest votes ``C`` (n, d), then the master's vote."""
    if attack != "none":
        C = corrupt(C, byzantine, attack_messages(attack, C, S, key, direction, reduce, loads, byzantine))
    return global_vote(C)


def election(G: jax.Array, S: jax.Array, byzantine: jax.Array, attack: str,
             key: jax.Array | None = None, direction: int | jax.Array = 1,
             reduce: Callable[[jax.Array], jax.Array] | None = None, fused: bool | None = None,
             finite: bool = False) -> jax.Array:
    """Steps 2–4 on given partition signs ``S``; ``attack`` is static, everything else is data.

    ``finite=True`` promises that ``S`` holds no NaN (signs read from integers): the matmul form
    then skips the NaN bookkeeping (the same votes on such input).

    ``reduce``: for a partition-sharded election, ``S`` holds this device's partitions and ``G``
    the matching columns; ``reduce`` (e.g. ``lambda x: lax.psum(x, "parts")``) sums the partial
    counts ``G_local @ S_local`` over devices before the sign. The counts are small integers, so the
    result equals the unsharded election exactly.

    ``fused=True`` (unsharded, an attack acting coordinate by coordinate, n·⌈k/32⌉ ≤
    :data:`FUSED_MAX_TERMS`: :func:`fused_applies`) computes the same votes with bit-packed signs
    in one elementwise pass (:func:`fused_election`): S is read once and nothing of size n × d is
    materialized. The default (``None``) is the matmul form. Both forms sum small integers:
    identical votes (tested).
    """
    _check_election(G, S, byzantine)
    n, k = G.shape
    if fused is True and reduce is None and S.ndim == 2 and fused_applies(n, k, attack):
        return fused_election(G, S, byzantine, attack, direction)
    if k > MAX_PARTITIONS:
        raise ValueError(f"G: has {k} partitions; at most {MAX_PARTITIONS} are supported")
    counts = G.astype(S.dtype) @ S if finite else _counts(G, S)
    loads = G.sum(axis=1)
    if reduce is not None:
        counts, loads = reduce(counts), reduce(loads)
    C = jnp.sign(counts) if finite else _votes_of_counts(counts)
    return _finish(C, S, byzantine, attack, key, direction, reduce, loads)


def signed_sum_election(G: jax.Array, grads: jax.Array, byzantine: jax.Array, attack: str,
                        key: jax.Array | None = None, direction: int | jax.Array = 1,
                        count_noise: jax.Array | None = None) -> jax.Array:
    """The signed-sum baseline: worker i sends ``c_i = sign(Σ_j G[i, j] g_j)`` (the sign of its
    partitions' summed real gradients, not the majority of their signs); then steps 3–4.

    A non-finite (NaN or ±Inf) partition gradient voids the local vote of every worker holding it,
    and of no other. ``count_noise`` (n, d), if given, is added to the honest sums before the sign
    (computation noise, see :func:`per_copy_noise_sums`); Byzantine messages are computed from
    the noiseless values. The omniscient adversary votes against ``sign(Σ_j g_j)``; the stealth
    attack sees the honest workers' (noisy) votes and the Byzantine workers' noiseless ones.
    """
    finite = jnp.isfinite(grads)
    clean = jnp.where(finite, grads, 0.0)
    Gf = G.astype(grads.dtype)
    sums = Gf @ clean
    bad = (Gf @ (~finite).astype(grads.dtype)) > 0
    honest = sums if count_noise is None else sums + count_noise
    C_clean = jnp.where(bad, 0.0, jnp.sign(sums))
    C = jnp.where(bad, 0.0, jnp.sign(honest))
    if attack != "none":
        # Byzantine rows noiseless, honest rows as sent (row-wise attacks read their own row only).
        seen = jnp.where(byzantine[:, None], C_clean, C)
        C = corrupt(C, byzantine, attack_messages(attack, seen, clean, key, direction, None, G.sum(axis=1),
                                                  byzantine))
    return global_vote(C)


def per_copy_noise_sums(G: jax.Array, key: jax.Array, noise_std: float | jax.Array, d: int,
                        dtype=jnp.float32) -> jax.Array:
    """Noise of worker i's summed partition gradients when each copy gets its own draw:
    ``Σ_j G[i, j] σ ξ_ij``, drawn as ``σ √L_i ξ_i`` (``L_i`` the load; the same distribution:
    a sum of ``L_i`` independent N(0, σ²) is N(0, L_i σ²)); ``ξ_i = normal(fold_in(key, i), (d,))``."""
    n = G.shape[0]
    xi = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (d,), dtype))(jnp.arange(n))
    return (noise_std * jnp.sqrt(G.sum(axis=1).astype(dtype)))[:, None] * xi


def per_copy_election(G: jax.Array, grads: jax.Array, byzantine: jax.Array, attack: str,
                      noise_key: jax.Array, noise_std: float | jax.Array, key: jax.Array | None = None,
                      direction: int | jax.Array = 1) -> jax.Array:
    """The election with noise drawn per worker copy: ``s_ij = sign(g_j + σ ξ_ij)``.

    Worker i votes ``c_i = sign(Σ_{j : G[i, j] = 1} sign(g_j + σ ξ_ij))`` with
    ``ξ_ij = normal(fold_in(fold_in(noise_key, i), j), (d,))``, independent over (i, j): two workers
    holding the same partition see independent noise, as each worker of the official CIFAR code
    adds its own draw (``grad_extract += variance * randn``) to every partition gradient it
    computes. Each partition gradient ``g_j`` is still computed once (it is an input here); only
    the noise and the sign are per copy. The loop runs over the n workers and, inside, over the
    ``L_i`` partitions worker i holds, so ``Σ_i L_i = r·n`` noise vectors of length d are drawn
    and nothing larger than (k, d) is held.

    Byzantine workers compute no noise (the official code adds it in the honest branch only):
    ``reverse`` sends ``−sign(Σ_j G[i, j] sign(g_j))``, ``omniscient`` ``−sign(Σ_j sign(g_j))``;
    ``directional`` sends ``direction``; ``random`` ``rademacher(fold_in(key, i), (d,))``;
    ``random_per_partition`` the sign of ``L_i`` uniform ±1 values (:func:`binomial_half_sign`
    with ``fold_in(key, i)``); ``stealth`` compares the honest workers' noisy votes with the
    Byzantine workers' noiseless ones (:func:`jax_ec.attacks.stealth_flips`). A NaN in ``g_j``
    voids the votes of the workers holding j.
    """
    n, k = G.shape
    d = grads.shape[1]
    dtype = grads.dtype
    held_mask = G != 0
    loads = held_mask.sum(axis=1).astype(jnp.int32)
    held = jnp.argsort(~held_mask, axis=1, stable=True).astype(jnp.int32)  # held partitions first
    signs = jnp.sign(grads)
    if attack == "omniscient":
        lie = -jnp.sign(jnp.sum(jnp.where(jnp.isnan(signs), 0.0, signs), axis=0))

    def worker(i, carry):
        total, own = carry     # own: the Byzantine workers' noiseless votes (stealth only)
        worker_key = jax.random.fold_in(noise_key, i)

        def copy(t, acc):
            j = held[i, t]
            xi = jax.random.normal(jax.random.fold_in(worker_key, j), (d,), dtype)
            return acc + jnp.sign(grads[j] + noise_std * xi)

        c = jnp.sign(jax.lax.fori_loop(0, loads[i], copy, jnp.zeros((d,), dtype)))  # NaN stays NaN
        if attack == "reverse":
            m = -jnp.sign(jnp.sum(jnp.where(held_mask[i][:, None], signs, 0.0), axis=0))
        elif attack == "directional":
            m = jnp.broadcast_to(jnp.asarray(direction, dtype), (d,))
        elif attack == "random":
            m = jax.random.rademacher(jax.random.fold_in(key, i), (d,), dtype=dtype)
        elif attack == "random_per_partition":
            m = binomial_half_sign(jax.random.fold_in(key, i), loads[i], (d,), k).astype(dtype)
        elif attack == "omniscient":
            m = lie
        if attack == "stealth":     # its message needs every vote: decided after the loop
            clean = jnp.sign(jnp.sum(jnp.where(held_mask[i][:, None], signs, 0.0), axis=0))
            own = own + jnp.where(byzantine[i] & ~jnp.isnan(clean), clean, 0.0)
            c = jnp.where(byzantine[i], 0.0, c)
        elif attack != "none":
            c = jnp.where(byzantine[i], m, c)
        return total + jnp.sign(jnp.where(jnp.isnan(c), 0.0, c)), own

    zero = jnp.zeros((d,), dtype)
    total, own = jax.lax.fori_loop(0, n, worker, (zero, zero))
    if attack == "stealth":
        total = _stealth_total(total, own, byzantine)
    return jnp.sign(total)


def _stealth_total(honest: jax.Array, own: jax.Array, byzantine: jax.Array) -> jax.Array:
    """The master's count under the stealth attack from the honest workers' count ``honest`` and
    the Byzantine workers' honest count ``own`` (:func:`jax_ec.attacks.stealth_flips`)."""
    count = byzantine.sum().astype(honest.dtype)
    flip, v0 = stealth_flips(honest, own, count)
    return jnp.where(flip, honest - count * v0, honest + own)


def fused_election(G: jax.Array, S: jax.Array, byzantine: jax.Array, attack: str,
                   direction: int | jax.Array = 1) -> jax.Array:
    """The election as one elementwise pass over bit-packed signs: O(k + n·⌈k/32⌉) integer
    operations per coordinate (the matmul form: 2·n·k flops and an (n, d) intermediate).

    At every coordinate the k partition signs become three bit sets over the partitions,
    ``P = {j : S_j > 0}``, ``N = {j : S_j < 0}`` and ``Z = {j : S_j is NaN}`` (32-bit words), and
    worker i's allocation row becomes the bit set ``A_i = {j : G[i, j] = 1}``. Then

        Σ_j G[i, j] S_j = |P ∩ A_i| − |N ∩ A_i|      (population counts),

    so worker i's local vote is ``c_i = sign(|P ∩ A_i| − |N ∩ A_i|)``, void (0) where
    ``Z ∩ A_i ≠ ∅`` (it holds a NaN partition there). Byzantine workers send the attack's message
    instead (``reverse``: ``−c_i``; ``directional``: ``direction``; ``omniscient``:
    ``−sign(|P| − |N|)``; ``stealth``: decided from the honest and the Byzantine counts at the end),
    and ``v = sign(Σ_i m_i)``. Every sum is of small integers: the votes
    equal the matmul form's exactly (tested), with no (n, d) intermediate and S read once.

    Only the signs of ``S`` are read (``S > 0``, ``S < 0``, NaN), so ``S`` may be the raw partition
    gradients: the votes are those of their signs, ±0, ±Inf and NaN included (tested). The trainer
    passes the gradients, which spares a sign pass that XLA would otherwise materialize (it would
    read each value three times).
    """
    if attack not in COORDINATEWISE_ATTACKS:
        raise ValueError(f"attack: {attack!r} has no fused form; allowed: {', '.join(COORDINATEWISE_ATTACKS)}")
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

    if attack == "omniscient":
        lie = -jnp.sign(sum(popcount(pos[w]) - popcount(neg[w]) for w in range(words))).astype(S.dtype)
    total = jnp.zeros(S.shape[1:], S.dtype)
    own = jnp.zeros(S.shape[1:], S.dtype)   # the Byzantine workers' honest votes (stealth only)
    for i in range(n):
        count = sum(popcount(pos[w] & masks[w][i]) - popcount(neg[w] & masks[w][i]) for w in range(words))
        void = functools.reduce(jnp.bitwise_or, [nan[w] & masks[w][i] for w in range(words)]) != 0
        c = jnp.where(void, 0.0, jnp.sign(count).astype(S.dtype))
        if attack == "reverse":
            c = jnp.where(byzantine[i], -c, c)
        elif attack == "directional":
            c = jnp.where(byzantine[i], jnp.asarray(direction, S.dtype), c)
        elif attack == "omniscient":
            c = jnp.where(byzantine[i], lie, c)
        elif attack == "stealth":
            own = own + jnp.where(byzantine[i], c, 0.0)
            c = jnp.where(byzantine[i], 0.0, c)
        total = total + c
    if attack == "stealth":
        total = _stealth_total(total, own, byzantine)
    return jnp.sign(total)


@partial(jax.jit, static_argnames=("attack", "noise_model"))
def _elect(G, grads, byzantine, attack, key, noise_std, direction, noise_model):
    noise_key, attack_key = jax.random.split(key)
    if noise_model == "per_copy":
        return per_copy_election(G, grads, byzantine, attack, noise_key, noise_std, attack_key, direction)
    S = partition_signs(grads, noise_key if noise_model == "per_partition" else None, noise_std)
    return election(G, S, byzantine, attack, attack_key, direction)


def elect(G, partition_grads, byzantine, attack: str = "reverse", key: jax.Array | None = None,
          noise_std: float = 0.0, direction: int = 1, noise_model: str = "per_copy") -> jax.Array:
    """One election on partition gradients; returns the global vote in {−1, 0, +1}^d.

    Args:
      G: allocation matrix (n, k), 0/1.
      partition_grads: (k, d) gradients of the k partitions.
      byzantine: (n,) booleans, True for Byzantine workers.
      attack: one of ``none, reverse, directional, random, random_per_partition, omniscient, stealth``.
      key: PRNG key, or an integer seed in ``[0, 2^32)`` read as ``PRNGKey(seed)``; required by the
        random attacks and by ``noise_std > 0``.
      noise_std: σ of the Gaussian noise added before the sign (a standard deviation: the official
        ``--variance 1e-4`` is σ = 1e-4, i.e. σ² = 1e-8).
      direction: the integer +1 or −1, the constant message of the directional attack.
      noise_model: ``per_copy`` (default: each worker draws its own noise for each partition it
        holds, :func:`per_copy_election`) or ``per_partition`` (one draw per partition, shared by
        every worker holding it).
    """
    attack = check_attack(attack, form="vote")
    noise_model = _checks.one_of("noise_model", noise_model, NOISE_MODELS, what="noise model")
    direction = _checks.sign("direction", direction)
    noise_std = _checks.number("noise_std", noise_std, 0)
    if not isinstance(G, jax.core.Tracer):
        from .codes import validate_allocation
        G = validate_allocation(G)
    G = jnp.asarray(G, jnp.float32)
    n, k = G.shape
    grads = _checks.real_array("partition_grads", partition_grads,
                               f"a (k, d) array of real numbers with k = {k} (the number of columns of G)")
    if grads.ndim != 2 or grads.shape[0] != k:
        raise ValueError(f"partition_grads: has shape {grads.shape}; expected (k, d) with k = {k} "
                         "(the number of columns of G)")
    grads = jnp.asarray(grads, jnp.float32)
    byz = _checks.real_array("byzantine", byzantine, f"({n},) booleans, one per worker")
    if byz.shape != (n,):
        raise ValueError(f"byzantine: has shape {byz.shape}; expected ({n},) booleans, one per worker")
    if byz.dtype != np.bool_:
        if not isinstance(byz, jax.core.Tracer) and not np.isin(np.asarray(byz), (0, 1)).all():
            raise ValueError(f"byzantine: got {_checks.brief(np.asarray(byz).tolist())}; expected ({n},) booleans "
                             "(or 0/1), one per worker")
    byz = jnp.asarray(byz).astype(jnp.bool_)
    use_noise = noise_std > 0
    if key is None:
        if attack in RANDOM_ATTACKS or use_noise:
            raise ValueError(f"key: attack={attack!r} with noise_std={noise_std} needs a PRNG key "
                             "(jax.random.PRNGKey(seed)) or an integer seed")
        key = jax.random.PRNGKey(0)  # unused: no random operation consumes it
    else:
        key = _checks.prng_key("key", key)
    return _elect(G, grads, byz, attack, key, jnp.float32(noise_std), jnp.float32(direction),
                  noise_model if use_noise else "none")
