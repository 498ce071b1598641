"""Byzantine attacks (one table, for sign votes and for real-valued messages) and Byzantine placement.

A Byzantine worker replaces its honest message by one chosen by the adversary: for election
coding its local vote ``c_i`` (a vector in {−1, 0, +1}^d), for the real-valued baselines its mean
gradient ``M_i``. :data:`ATTACK_TABLE` lists every attack with both forms, where they exist:

* ``none``        — honest behaviour (the no-attack baseline);
* ``reverse``     — votes ``−c_i`` (the official code negates each partition sign, which negates the
  vote); real ``−M_i``;
* ``directional`` — a constant vector ``sign · 1`` (the attack's sign: the CIFAR script −1, the Amazon
  script +1), for votes and real messages alike;
* ``random``      — votes: i.i.d. uniform ±1 per worker and coordinate (the official Amazon script,
  ``amazon_employer/MPI_main.py``, ``attackType = 0``); real: i.i.d. N(0, 1);
* ``random_per_partition`` — votes only: a uniform ±1 per held partition and coordinate, and the
  sign of their sum (the official CIFAR script, ``cifar10/main.py``, ``--attack_type random``): a
  worker holding ``L_i`` partitions sends ``sign(2·X − L_i)`` with ``X ~ Binomial(L_i, 1/2)``, so
  a worker of even load sends 0 with probability ``C(L_i, L_i/2) / 2^L_i``. It has no real form;
* ``omniscient``  — votes ``−sign(Σ_j s_j)``, against the true majority of all partition signs (NaN
  signs count as 0); real ``−(mean of all partition gradients)``;
* ``stealth``     — votes only: against the no-attack vote, and only where that overturns it
  (:func:`stealth_flips`); elsewhere a Byzantine worker sends its honest vote. It has no real form
  (see :func:`stealth_flips`).

Real-valued only (the attacks of the Byzantine-robust learning literature, as ByzFL 0.0.11 defines
them; each reads the honest workers' messages ``M_i``, ``i ∈ H`` (h = |H| = n − b), through the
Byzantine mask; every Byzantine worker sends the same vector). They have no vote form
(``docs/algorithm.md``, "Attack zoo", says why):

* ``sign_flip`` — ``−μ_H``, ``μ_H = (1/h) Σ_{i∈H} M_i`` (ByzFL ``SignFlipping``: the negated mean of
  the honest messages; ``reverse`` negates each worker's own message instead);
* ``ipm``       — inner-product manipulation ``−ε · μ_H`` (Xie et al. 2019; ByzFL
  ``InnerProductManipulation(tau=ε)``), ε the scheme's ``attack_scale`` (default
  :data:`IPM_DEFAULT_SCALE`);
* ``alie``      — "a little is enough" ``μ_H − z · σ_H`` per coordinate (Baruch et al. 2019), σ_H the
  honest messages' sample standard deviation (ddof = 1, as ByzFL; 0 when h = 1),
  ``z = Φ⁻¹((n − s)/n)`` with ``s = ⌊n/2 + 1⌋ − b`` (ByzFL ``ALittleIsEnough(tau=−z)``; ByzFL
  takes a fixed τ = 1.5 by default), s clipped to at least 1 (the config refuses b > ⌊n/2⌋);
* ``mimic``     — a copy of the first honest worker's message (ByzFL ``Mimic(epsilon=0)``).

Placement of the ``b`` Byzantine workers (``b`` may be an array: one compiled program serves every b):

* ``uniform``     — ``b`` distinct workers drawn uniformly per trial, fixed for the run (the paper);
* ``most_loaded`` — the ``b`` workers with the largest loads (code-aware adversary; ties to the
  lower index);
* ``per_step``    — ``b`` workers redrawn uniformly at every step;
* ``adaptive``, ``adaptive_exact`` (:data:`ADAPTIVE_PLACEMENTS`) — chosen at every step from ``G``
  and the step's partition signs, the set whose omniscient messages flip the most coordinates of
  the vote (greedy, or exact for small n and b): :mod:`jax_ec.adaptive`. They have no set before
  the first step (:func:`byzantine_mask` gives none).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import _checks
from .aggregators import stable_ranks

__all__ = ["Attack", "ATTACK_TABLE", "ATTACKS", "PLACEMENTS", "ADAPTIVE_PLACEMENTS", "RANDOM_ATTACKS",
           "SIGN_ONLY_ATTACKS", "COORDINATEWISE_ATTACKS", "VOTE_ATTACKS", "REAL_ATTACKS", "REAL_ONLY_ATTACKS",
           "IPM_DEFAULT_SCALE", "alie_z", "attack_messages", "stealth_flips", "real_attack_messages",
           "binomial_half_sign", "uniform_placement", "most_loaded_placement", "byzantine_mask", "check_attack"]


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


# ------------------------------------------------------------------------------------------------
# Sign messages: (C, S, key, sign, loads, reduce) -> (n, d), what every worker sends if Byzantine.
# C: honest local votes (n, d); S: partition signs (k, d); loads (n,); reduce sums partial counts
# over devices when S holds only this device's partitions.


def _vote_none(C, S, key, sign, loads, reduce):
    return C


def _vote_reverse(C, S, key, sign, loads, reduce):
    return -C


def _vote_directional(C, S, key, sign, loads, reduce):
    return jnp.broadcast_to(jnp.asarray(sign, C.dtype), C.shape)


def _vote_random(C, S, key, sign, loads, reduce):
    return jax.random.rademacher(key, C.shape, dtype=C.dtype)


def _vote_random_per_partition(C, S, key, sign, loads, reduce):
    if reduce is not None:
        raise ValueError("attack: random_per_partition needs every partition on one device (gather first)")
    return binomial_half_sign(key, loads[:, None], C.shape, max_load=S.shape[0]).astype(C.dtype)


def _vote_omniscient(C, S, key, sign, loads, reduce):
    counts = jnp.ones((S.shape[0],), S.dtype) @ jnp.where(jnp.isnan(S), 0.0, S)
    truth = jnp.sign(counts if reduce is None else reduce(counts))
    return jnp.broadcast_to(-truth, C.shape)


def stealth_flips(honest: jax.Array, own: jax.Array, count: int | jax.Array) -> tuple[jax.Array, jax.Array]:
    """The coordinates the stealth attack overturns, and the no-attack vote ``v0`` it overturns.

    Per coordinate, with ``H = Σ_{i∉B} sign(c_i)`` the messages of the honest workers, ``O = Σ_{i∈B}
    c_i`` the honest votes of the ``|B| = count`` Byzantine workers (noiseless: a Byzantine worker
    draws no computation noise) and ``v0 = sign(H + O)`` the vote had nobody attacked: were every
    Byzantine worker to send ``−v0``, the master's count would be ``H − |B|·v0``. The attack
    **overturns** a coordinate when ``v0 ≠ 0`` and ``sign(H − |B|·v0) ≠ v0`` (the vote reverses or
    becomes a tie); there every Byzantine worker sends ``−v0``, elsewhere its honest vote (the count
    stays ``H + O``, the vote ``v0``: nothing to see). Returns ``(flip, v0)``, both shaped like ``H``.

    There is no real-valued form: "b messages can overturn the output" is a property of a count of
    ±1 messages against a threshold; under the median or the mean the reach of b messages depends
    on their magnitudes (unbounded for the mean), so the condition has no aggregator-free meaning.
    """
    v0 = jnp.sign(honest + own)
    flip = (v0 != 0) & (jnp.sign(honest - count * v0) != v0)
    return flip, v0


def _vote_stealth(C, S, key, sign, loads, reduce, byzantine):
    # C holds every worker's honest vote (under partition sharding too: the counts were reduced).
    ones = jnp.ones((C.shape[0],), C.dtype)
    mask = byzantine[:, None]
    flip, v0 = stealth_flips(ones @ jnp.where(mask, 0.0, C), ones @ jnp.where(mask, C, 0.0),
                             byzantine.sum().astype(C.dtype))
    return jnp.where(flip, -v0, C)


# Real messages: (M, grads, key, sign, byzantine, scale) -> (n, d). M: honest worker means (n, d);
# grads (k, d); byzantine (n,) bool; scale: the attack's ε (ipm).

IPM_DEFAULT_SCALE = 0.1   # ε of the IPM attack when the scheme names none (Xie et al. 2019's small ε)


def _real_none(M, grads, key, sign, byzantine, scale):
    return M


def _real_reverse(M, grads, key, sign, byzantine, scale):
    return -M


def _real_directional(M, grads, key, sign, byzantine, scale):
    return jnp.broadcast_to(jnp.asarray(sign, M.dtype), M.shape)


def _real_random(M, grads, key, sign, byzantine, scale):
    return jax.random.normal(key, M.shape, M.dtype)


def _real_omniscient(M, grads, key, sign, byzantine, scale):
    return jnp.broadcast_to(-grads.mean(axis=0), M.shape)


def _honest(byzantine, dtype):
    """The honest workers' 0/1 weights (n,) and their number h (at least 1)."""
    w = (~jnp.asarray(byzantine, jnp.bool_)).astype(dtype)
    return w, jnp.maximum(w.sum(), 1.0)


def _honest_mean(M, byzantine):
    w, h = _honest(byzantine, M.dtype)
    return (w @ M) / h


def _real_sign_flip(M, grads, key, sign, byzantine, scale):
    return jnp.broadcast_to(-_honest_mean(M, byzantine), M.shape)


def _real_ipm(M, grads, key, sign, byzantine, scale):
    return jnp.broadcast_to(-jnp.asarray(scale, M.dtype) * _honest_mean(M, byzantine), M.shape)


def alie_z(n: int, b) -> jax.Array:
    """ALIE's ``z = Φ⁻¹((n − s)/n)``, ``s = ⌊n/2 + 1⌋ − b`` clipped to ``[1, n]`` (``b`` may be traced)."""
    s = jnp.clip(n // 2 + 1 - jnp.asarray(b, jnp.int32), 1, n)
    return jax.scipy.special.ndtri((n - s).astype(jnp.float32) / n)


def _real_alie(M, grads, key, sign, byzantine, scale):
    w, h = _honest(byzantine, M.dtype)
    mu = (w @ M) / h
    var = (w @ jnp.square(M - mu)) / jnp.maximum(h - 1.0, 1.0)
    z = alie_z(M.shape[0], jnp.asarray(byzantine).sum())
    return jnp.broadcast_to(mu - z.astype(M.dtype) * jnp.sqrt(var), M.shape)


def _real_mimic(M, grads, key, sign, byzantine, scale):
    first = jnp.argmax(~jnp.asarray(byzantine, jnp.bool_))   # the first honest worker
    return jnp.broadcast_to(M[first], M.shape)


class Attack(NamedTuple):
    """One attack: its vote message and its real-valued message (None: no such form), whether it
    needs random numbers, and whether its vote at a coordinate depends on that coordinate's values
    alone (then the fused vote and the touched-coordinates formulation can run it; False when it
    has no vote form); whether its vote message reads the Byzantine set (it is then passed as
    ``byzantine=``)."""
    name: str
    vote: Callable | None
    real: Callable | None
    random: bool
    coordinatewise: bool
    reads_byzantine: bool = False


ATTACK_TABLE: dict[str, Attack] = {a.name: a for a in (
    Attack("none", _vote_none, _real_none, False, True),
    Attack("reverse", _vote_reverse, _real_reverse, False, True),
    Attack("directional", _vote_directional, _real_directional, False, True),
    Attack("random", _vote_random, _real_random, True, False),
    Attack("random_per_partition", _vote_random_per_partition, None, True, False),
    Attack("stealth", _vote_stealth, None, False, True, reads_byzantine=True),
    Attack("omniscient", _vote_omniscient, _real_omniscient, False, True),
    Attack("sign_flip", None, _real_sign_flip, False, False),
    Attack("ipm", None, _real_ipm, False, False),
    Attack("alie", None, _real_alie, False, False),
    Attack("mimic", None, _real_mimic, False, False),
)}
ATTACKS: tuple[str, ...] = tuple(ATTACK_TABLE)
VOTE_ATTACKS: tuple[str, ...] = tuple(a for a, x in ATTACK_TABLE.items() if x.vote is not None)
REAL_ATTACKS: tuple[str, ...] = tuple(a for a, x in ATTACK_TABLE.items() if x.real is not None)
REAL_ONLY_ATTACKS: frozenset[str] = frozenset(a for a, x in ATTACK_TABLE.items() if x.vote is None)
ADAPTIVE_PLACEMENTS: tuple[str, ...] = ("adaptive", "adaptive_exact")
PLACEMENTS: tuple[str, ...] = ("uniform", "most_loaded", "per_step", *ADAPTIVE_PLACEMENTS)
RANDOM_ATTACKS: frozenset[str] = frozenset(a for a, x in ATTACK_TABLE.items() if x.random)
SIGN_ONLY_ATTACKS: frozenset[str] = frozenset(a for a, x in ATTACK_TABLE.items() if x.real is None)
COORDINATEWISE_ATTACKS: tuple[str, ...] = tuple(a for a, x in ATTACK_TABLE.items() if x.coordinatewise)


def check_attack(attack: object, field: str = "attack", form: str | None = None) -> str:
    """Return ``attack`` if it names a known attack (with a ``form`` of ``"vote"`` or ``"real"``,
    one that has that form), else raise one clear ``ValueError``."""
    attack = _checks.one_of(field, attack, ATTACKS, what="attack")
    allowed = {"vote": VOTE_ATTACKS, "real": REAL_ATTACKS}.get(form, ATTACKS)
    if attack not in allowed:
        raise ValueError(f"{field}: got {attack!r}; it has no {form}-valued form; allowed: {', '.join(allowed)}")
    return attack


def attack_messages(attack: str, C: jax.Array, S: jax.Array, key: jax.Array | None,
                    sign: int | jax.Array = 1, reduce=None, loads: jax.Array | None = None,
                    byzantine: jax.Array | None = None) -> jax.Array:
    """What every worker would send if it were Byzantine, shape ``(n, d)`` like the honest votes ``C``.

    ``S`` (k, d) holds the partition signs; ``key`` is needed only by the random attacks, ``loads``
    (n,) only by ``random_per_partition``, ``byzantine`` ((n,) bool) only by ``stealth``; ``sign`` is
    the directional attack's ±1. The caller keeps the honest votes of honest workers.
    """
    entry = ATTACK_TABLE[check_attack(attack, form="vote")]
    if entry.random and key is None:
        raise ValueError(f"key: the {attack} attack needs a PRNG key; pass key=jax.random.PRNGKey(...)")
    if attack == "random_per_partition" and loads is None:
        raise ValueError("loads: the random_per_partition attack needs the workers' loads")
    if entry.reads_byzantine:
        if byzantine is None:
            raise ValueError(f"byzantine: the {attack} attack needs the Byzantine set ((n,) booleans)")
        return entry.vote(C, S, key, sign, loads, reduce, byzantine=byzantine)
    return entry.vote(C, S, key, sign, loads, reduce)


def real_attack_messages(attack: str, M: jax.Array, grads: jax.Array, key: jax.Array | None,
                         sign: int | jax.Array = 1, byzantine: jax.Array | None = None,
                         scale: float | jax.Array | None = None) -> jax.Array:
    """What every worker would send if it were Byzantine, for real-valued schemes (n, d).

    ``M`` (n, d): the workers' honest messages; ``grads`` (k, d): the partition gradients;
    ``byzantine`` (n,) bool: the Byzantine set, read by the attacks built on the honest messages
    (``sign_flip``, ``ipm``, ``alie``, ``mimic``; mask arithmetic, so it may be traced); ``scale``:
    the ``ipm`` attack's ε (:data:`IPM_DEFAULT_SCALE` when None). The caller keeps the honest
    messages of honest workers.
    """
    entry = ATTACK_TABLE[check_attack(attack, form="real")]
    if entry.random and key is None:
        raise ValueError(f"key: the {attack} attack needs a PRNG key")
    if byzantine is None and attack in REAL_ONLY_ATTACKS:
        raise ValueError(f"byzantine: the {attack} attack reads the honest messages; pass the (n,) Byzantine mask")
    if byzantine is not None and jnp.shape(byzantine) != M.shape[:1]:
        raise ValueError(f"byzantine: has shape {jnp.shape(byzantine)}; expected ({M.shape[0]},) booleans, one per "
                         "worker")
    return entry.real(M, grads, key, sign, byzantine, IPM_DEFAULT_SCALE if scale is None else scale)


def _lowest_ranked(scores: jax.Array, b: int | jax.Array) -> jax.Array:
    """Boolean mask of the ``b`` entries with the smallest score (stable: ties to the lower index)."""
    rank = stable_ranks(scores)
    return rank < b


def uniform_placement(key: jax.Array, n: int, b: int | jax.Array) -> jax.Array:
    """``b`` distinct Byzantine workers out of ``n``, uniformly at random: boolean mask ``(n,)``."""
    return _lowest_ranked(jax.random.uniform(key, (n,)), b)


def most_loaded_placement(G: jax.Array, b: int | jax.Array) -> jax.Array:
    """The ``b`` workers with the largest loads ``Σ_j G[i, j]`` (ties to the lower index)."""
    return _lowest_ranked(-jnp.asarray(G, jnp.float32).sum(axis=1), b)


def byzantine_mask(placement: str, key: jax.Array, G: jax.Array, b: int | jax.Array) -> jax.Array:
    """Byzantine set for a trial (``per_step`` gives the first step's set; redraw with the step key;
    the adaptive placements give no worker: their set is chosen at every step from that step's signs)."""
    placement = _checks.one_of("placement", placement, PLACEMENTS, what="placement")
    if placement in ADAPTIVE_PLACEMENTS:
        return jnp.zeros((G.shape[0],), jnp.bool_)
    if placement in ("uniform", "per_step"):
        return uniform_placement(key, G.shape[0], b)
    return most_loaded_placement(G, b)
