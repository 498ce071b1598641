"""Adaptive, code-aware Byzantine placement: at every step, the b workers whose corruption flips the
most coordinates of the global vote (docs/algorithm.md, section 3).

Setting. ``n`` workers, ``k`` partitions, allocation ``G`` (n × k). At a step the adversary sees
``G`` and the step's partition signs ``S`` (k × d), hence every honest local vote
``C = sign(G S)`` (n × d; row ``c_i``), the honest count ``T = 1ᵀC`` and the no-attack vote
``v0 = sign(T)``. Each Byzantine worker sends the omniscient message ``m = −sign(1ᵀS)`` (the
``omniscient`` attack of :mod:`jax_ec.attacks`, NaN signs counted as 0), the same for all of them.
Corrupting a set ``B`` replaces ``c_i`` by ``m`` for ``i ∈ B``, so the count becomes

    T_B = T + Σ_{i∈B} (m − c_i),        v_B = sign(T_B).

**Flipped.** A coordinate is *flipped* by ``B`` when ``v_B ≠ v0``: the vote reverses, a decided
vote becomes a tie (0: the coordinate does not move), or a tie becomes decided. The objective is
the number of flipped coordinates, ``F(B) = #{t : v_B[t] ≠ v0[t]}`` (:func:`flip_count`); the
placement is a set of exactly ``b`` workers maximizing it.

**Greedy** (``placement: adaptive``, :func:`greedy_placement`). ``b`` rounds; round r adds the worker
``i ∉ B`` maximizing ``F(B ∪ {i})`` (ties to the lower index). A round evaluates every candidate at
every coordinate, ``T_B + (m − c_i)``: O(n·d) work, O(b·n·d) per step. ``b`` may be a traced
integer (the rounds run in a ``fori_loop`` to ``b``): one compiled program serves every b.
*No approximation guarantee.* Where ``m ≠ 0`` every ``m − c_i`` has the sign of ``m`` (or is 0), so
``T_B`` moves monotonically toward ``m`` as ``B`` grows and a coordinate's flip indicator is a
threshold of the modular sum ``Σ_{i∈B} |m − c_i|``. A threshold of a sum is not submodular (two
workers that flip a coordinate only together have a joint gain larger than the sum of their
gains), so ``F`` is coverage-like but not submodular and greedy's ``1 − 1/e`` bound does not apply;
``tests/test_adaptive.py`` commits a case where greedy falls short of the optimum and reports the gap.

**Exact** (``placement: adaptive_exact``, :func:`exact_placement`). Every set of exactly ``b``
workers, the first best one in lexicographic order. The sets of every size up to a static
``max_b`` are enumerated once (NumPy ``itertools``) and a ``lax.switch`` on ``b`` picks those of
size b, so ``b`` may be traced; at most ``C(15, 3) = 455`` sets at the limits the config allows
(n ≤ 15, b ≤ 3: :data:`EXACT_MAX_WORKERS`, :data:`EXACT_MAX_B`), each costing O(n·d).

With partition signs in {±1}, a perfectly b-tolerant code (:mod:`jax_ec.analysis.verify`) loses
no coordinate whose partition majority ``µ = sign(1ᵀS)`` is strict: there ``v0 = µ = −m`` and no
set of b workers sending ``−µ`` changes the master's output, so ``F`` counts only coordinates with
``1ᵀS = 0``. For the signed-sum scheme
(:func:`signed_sum_inputs`) ``C`` and ``m`` are those of the summed real gradients.

Everything is pure ``jax.numpy``, safe under ``jit`` and ``vmap``. Counts are small integers held
exactly in float32.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from .attacks import ADAPTIVE_PLACEMENTS
from .election import local_votes

__all__ = ["EXACT_MAX_WORKERS", "EXACT_MAX_B", "omniscient_inputs", "signed_sum_inputs", "attacked_count",
           "flipped", "flip_count", "greedy_placement", "exact_placement", "adaptive_placement"]

EXACT_MAX_WORKERS = 15   # adaptive_exact: at most this many workers ...
EXACT_MAX_B = 3          # ... and this many Byzantine ones (576 sets to try at n = 15)


def omniscient_inputs(G: jax.Array, S: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(C, m)`` of the majority vote: the honest local votes ``sign(G S)`` (n, d) (a worker
    holding a NaN partition sign votes 0 there) and the omniscient message ``−sign(1ᵀS)`` (d,)."""
    C = local_votes(G, S)
    m = -jnp.sign(jnp.ones((S.shape[0],), S.dtype) @ jnp.where(jnp.isnan(S), 0.0, S))
    return C, m


def signed_sum_inputs(G: jax.Array, grads: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(C, m)`` of the signed-sum scheme: ``c_i = sign(Σ_j G[i, j] g_j)`` (0 where a held partition
    gradient is not finite) and the omniscient message ``−sign(Σ_j g_j)`` (non-finite entries as 0)."""
    finite = jnp.isfinite(grads)
    clean = jnp.where(finite, grads, 0.0)
    Gf = G.astype(grads.dtype)
    bad = (Gf @ (~finite).astype(grads.dtype)) > 0
    return jnp.where(bad, 0.0, jnp.sign(Gf @ clean)), -jnp.sign(clean.sum(axis=0))


def attacked_count(C: jax.Array, m: jax.Array, byzantine: jax.Array) -> jax.Array:
    """``T_B = 1ᵀC + Σ_{i∈B} (m − c_i)``: the master's count when the workers of ``byzantine`` ((n,)
    bool) send ``m`` (d,) instead of their votes ``C`` (n, d)."""
    ones = jnp.ones((C.shape[0],), C.dtype)
    return ones @ C + byzantine.astype(C.dtype) @ (m[None, :] - C)


def flipped(C: jax.Array, m: jax.Array, byzantine: jax.Array) -> jax.Array:
    """(d,) bool: the coordinates where the attacked vote ``sign(T_B)`` differs from the no-attack
    vote ``sign(1ᵀC)`` (a reversal, a decided vote turned into a tie, or a tie turned decided)."""
    v0 = jnp.sign(jnp.ones((C.shape[0],), C.dtype) @ C)
    return jnp.sign(attacked_count(C, m, byzantine)) != v0


def flip_count(C: jax.Array, m: jax.Array, byzantine: jax.Array) -> jax.Array:
    """``F(B)``: the number of flipped coordinates (int32)."""
    return flipped(C, m, byzantine).sum(dtype=jnp.int32)


def _check(C, m) -> None:
    if getattr(C, "ndim", None) != 2 or getattr(m, "shape", None) != C.shape[1:]:
        raise ValueError(f"C, m: have shapes {getattr(C, 'shape', None)} and {getattr(m, 'shape', None)}; "
                         "expected (n, d) votes and a (d,) message")


def greedy_placement(C: jax.Array, m: jax.Array, b: int | jax.Array) -> jax.Array:
    """``b`` rounds of greedy maximization of :func:`flip_count` (module docstring): (n,) bool.

    Each round adds the worker with the most flipped coordinates; among equals, the one pushing
    hardest toward flipping (``Σ |m − c_i|`` over the coordinates not flipped yet where moving the
    count toward ``m`` can flip it, ``m ≠ 0 ≠ m − v0``), then the lowest index. ``b`` (clipped to
    ``0..n``) may be traced; the rounds run to ``b`` in a ``fori_loop`` (under ``vmap`` over
    trials of different b, to the largest, each trial keeping its own b rounds). The counts are
    small integers, held in int8 (int32 past n = 42), which halves a round's time against float32."""
    _check(C, m)
    n = C.shape[0]
    small = jnp.int8 if 3 * n < 128 else jnp.int32      # |count| <= n + 2b < 3n
    C, m = C.astype(small), m.astype(small)             # votes and message in {-1, 0, 1}
    total = C.sum(axis=0, dtype=jnp.int32).astype(small)
    v0 = jnp.sign(total)
    movable = (m != 0) & (v0 != m)                      # moving the count toward m can flip these

    def add_one(_, carry):
        chosen, count = carry
        # m − C is recomputed inside the reduction (a materialized (n, d) copy costs more).
        gains = (jnp.sign(count[None, :] + (m[None, :] - C)) != v0).sum(axis=1, dtype=jnp.int32)
        gains = jnp.where(chosen, -1, gains)
        top = gains == gains.max()

        def tie_break(_):
            pending = movable & (jnp.sign(count) == v0)
            pressure = jnp.where(pending, jnp.abs(m[None, :] - C), 0).sum(axis=1, dtype=jnp.int32)
            return jnp.argmax(jnp.where(top, pressure, -1))

        # The push is needed only to break a tie (a branch outside vmap; both sides under it).
        best = jax.lax.cond(top.sum() > 1, tie_break, lambda _: jnp.argmax(gains), None)
        return chosen.at[best].set(True), count + (m - C[best])

    rounds = jnp.clip(jnp.asarray(b, jnp.int32), 0, n)
    chosen, _ = jax.lax.fori_loop(0, rounds, add_one, (jnp.zeros((n,), jnp.bool_), total))
    return chosen


@lru_cache(maxsize=None)
def _subsets(n: int, size: int) -> np.ndarray:
    """Every subset of ``range(n)`` of ``size`` workers as rows of a 0/1 matrix, in lexicographic
    order (:func:`itertools.combinations`)."""
    rows = np.zeros((math.comb(n, size), n), np.float32)
    for row, combo in zip(rows, itertools.combinations(range(n), size)):
        row[list(combo)] = 1.0
    return rows


def _best_of_size(C: jax.Array, m: jax.Array, size: int) -> jax.Array:
    """The first set of ``size`` workers (lexicographic order) with the most flipped coordinates."""
    sets = jnp.asarray(_subsets(C.shape[0], size))
    delta = m[None, :] - C
    total = jnp.ones((C.shape[0],), C.dtype) @ C
    v0 = jnp.sign(total)

    def flips(row):
        return (jnp.sign(total + row.astype(C.dtype) @ delta) != v0).sum(dtype=jnp.int32)

    # A few dozen sets at a time: a (sets, d) intermediate stays small at Amazon's d.
    scores = jax.lax.map(flips, sets, batch_size=min(len(sets), 32))
    return sets[jnp.argmax(scores)] > 0


def exact_placement(C: jax.Array, m: jax.Array, b: int | jax.Array, max_b: int = EXACT_MAX_B) -> jax.Array:
    """The set of exactly ``b`` workers with the most flipped coordinates, the lexicographically
    first among equals: (n,) bool.

    Every set of each size ``0..max_b`` (static) is enumerated once at trace time and a
    ``lax.switch`` on ``b`` evaluates those of size ``b`` (under ``vmap`` a switch evaluates every
    branch: ``Σ_{s ≤ max_b} C(n, s)`` sets, 576 at n = 15). Each set costs O(n·d), so this is for
    small ``n·d`` or few steps; the greedy search is the one for long runs. ``b`` may be traced but
    must not exceed ``max_b``: a concrete larger ``b`` raises, a traced one is clipped to ``max_b``
    (the config refuses it before anything compiles)."""
    _check(C, m)
    n = C.shape[0]
    top = min(max_b, n)
    if not isinstance(b, jax.core.Tracer) and not 0 <= int(b) <= top:
        raise ValueError(f"b: got {int(b)}; adaptive_exact enumerates sets of 0..{top} workers "
                         f"(max_b = {max_b}, n = {n})")
    count = sum(math.comb(n, s) for s in range(top + 1))
    if count > 2 ** 16:
        raise ValueError(f"max_b: got {max_b}; {count} sets of at most {max_b} of n = {n} workers are too many "
                         "to enumerate (use greedy_placement)")
    branches = [lambda C, m, size=size: _best_of_size(C, m, size) for size in range(top + 1)]
    return jax.lax.switch(jnp.clip(jnp.asarray(b, jnp.int32), 0, top), branches, C, m)


def adaptive_placement(placement: str, C: jax.Array, m: jax.Array, b: int | jax.Array) -> jax.Array:
    """The Byzantine set of ``placement`` (``adaptive``: greedy; ``adaptive_exact``: exact) for
    votes ``C`` and the omniscient message ``m``."""
    if placement not in ADAPTIVE_PLACEMENTS:
        raise ValueError(f"placement: got {placement!r}; allowed: {', '.join(ADAPTIVE_PLACEMENTS)}")
    if placement == "adaptive":
        return greedy_placement(C, m, b)
    return exact_placement(C, m, b)
