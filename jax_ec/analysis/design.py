"""Deterministic perfectly b-Byzantine-tolerant codes with low redundancy, and the repetition baseline.

All codes here have ``k = n`` partitions, so the redundancy ``r = (number of ones) / n`` is the mean
computation per worker relative to uncoded SignSGD-MV (each partition is ``1/n`` of the minibatch).
The construction, its proof and a comparison with the exact minimum are in ``docs/codes.md``;
the essentials follow.

Notation. ``µ = +1`` without loss of generality (``m ↦ −m`` flips every vote). A worker's *cost* on
a pattern is ``κ = 2`` if it votes ``−µ``, 1 if it ties, 0 if it votes ``µ``. With ``A, B, Z`` the
numbers of ``µ``-, ``−µ``- and 0-voters, ``A − B = n − (2B + Z) = n − Σ κ``, so (criterion of
:mod:`jax_ec.analysis.verify`)

    G is b-tolerant  ⇔  Σ_i κ_i(m) ≤ T := n − 2b − 1  for every non-tied pattern m.      (1)

**Lemma 1 (minimal patterns).** Turning a ``−1`` sign into ``+1`` (keeping ``µ = +1``) never raises
a worker's local sum, so never raises its cost. Hence the maximum of ``Σ κ`` is attained on a pattern
with the fewest minus signs: ``|M| = β`` with ``β = (k − 1)/2`` for odd ``k`` (``Σ m = 1``) and
``β = k/2 − 1`` for even ``k`` (``Σ m = 2``; tied patterns are skipped), ``M`` the set of minus
positions. Any ``|M| ≤ β`` can be completed to ``|M| = β`` without lowering the cost.

**Lemma 2 (full-type workers).** A worker holding all ``k`` partitions (odd ``k``), or any ``k − 1``
of them (even ``k``: its sum is ``Σ m − m_z ≥ 2 − 1``) votes ``µ`` on every non-tied pattern: ``κ = 0``.

**Lemma 3 (disjoint light sets).** Let the other ("light") workers hold pairwise disjoint sets
``S_1..S_p``. With ``c_i = |S_i ∩ M|``, ``κ_i = 2`` if ``c_i > |S_i|/2``, 1 if ``c_i = |S_i|/2``,
else 0, and every vector ``(c_i)`` with ``0 ≤ c_i ≤ |S_i|``, ``Σ c_i ≤ β`` is realised by some
``M`` (disjointness; Lemma 1 for the leftover minuses). So ``max_M Σ κ`` is the knapsack value

    V = max { Σ_i κ(c_i, |S_i|) : Σ_i c_i ≤ β }:
    a set of even size 2a yields 1 at price a (tie) or 2 at price a + 1 (flip), a singleton 2 at price 1.

**Fixers (odd k).** A *fixer* is a worker holding every partition except a singleton's ``z``:
its sum is ``1 − m_z`` on a minimal pattern, so ``κ = 1 − [z ∈ M]``, and together with the
singleton ``{z}`` the pair costs ``1 + [z ∈ M]``: a constant 1 plus one unit per minus on ``z``.
**Idle workers** (``allow_idle``) always tie: ``κ = 1``.

**Theorem.** The code with ``w`` full-type workers, ``φ`` fixers, ``i`` idle workers and disjoint
light sets ``E ∪ {x singletons}`` (``E``: sets of even size) is b-tolerant iff

    i + φ + 2·s + f + V_E(β − s − f) ≤ T,   s = min(x − φ, β),   f = min(φ, β − s),       (2)

where ``V_E(c)`` is the knapsack value of ``E`` with ``c`` minuses. (Proof: by (1) and Lemmas 1–3
the worst case is the adversary's best split of ``β`` minuses; a minus on a plain singleton earns 2,
on a fixed singleton 1, and moving one minus out of an even set loses at most 1, so an optimal split
fills the plain singletons first, then the fixed ones.)

:func:`deterministic` returns the code of this family with the fewest ones that satisfies (2),
found by an exact search over the multiset ``E`` (incremental knapsack tables, pruned by
``V_E(β) ≤ T``) and the counts ``x, φ, i``; every partition is held by at least one worker and
(unless ``allow_idle``) every worker holds at least one partition. Explicit members:

* ``b = 0``: ``G = I`` (``x = n`` singletons; ``V = 2β = n − 1 = T`` for odd ``n``).
* odd ``n``, ``1 ≤ b ≤ (n − 1)/4``: ``x = β − 2b`` singletons, ``y = ⌊(β + 2b + 1)/2⌋`` pairs,
  ``w = ⌈(n + 1 + 4b)/4⌉`` full workers, ``φ = min(x, w)`` of them turned into fixers: the worst
  case puts ``x`` minuses on the singletons and the rest on the pairs, ``V = β + x = T``.
* odd ``n``, ``b = (n − 1)/2``: all ``n`` workers full (``T = 0``).

A perfectly b-tolerant code needs ``T ≥ 0``, i.e. ``b < n/2``.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from .. import _checks

__all__ = ["Design", "deterministic", "deterministic_design", "repetition"]


def _check_nb(n: object, b: object) -> tuple[int, int]:
    n = _checks.integer("n", n, 1, hint=" (workers)")
    b = _checks.integer("b", b, hint=f" with 0 <= b < n/2 = {n / 2:g}")
    if not 0 <= 2 * b < n:
        raise ValueError(f"b: got {b}; a perfectly b-tolerant code with n = {n} workers needs "
                         f"0 <= b < n/2 = {n / 2:g}")
    return n, b


@dataclasses.dataclass(frozen=True)
class Design:
    """The structure of a :func:`deterministic` code (``k = n``).

    Attributes:
      n, b, k: workers, tolerated Byzantine workers, partitions.
      even_sets: sizes of the light sets of even size (pairwise disjoint).
      singletons: number of light workers holding one partition.
      fixers: number of full workers that drop one singleton's partition (odd k).
      full: number of full-type workers (all partitions; all but one for even k), fixers excluded.
      idle: number of workers holding nothing (only with ``allow_idle``).
      worst_cost: the knapsack value (2) — the largest ``2B + Z`` over patterns; ``≤ n − 2b − 1``.
      ones: number of ones of the matrix; ``redundancy = ones / n``.
    """

    n: int
    b: int
    k: int
    even_sets: tuple[int, ...]
    singletons: int
    fixers: int
    full: int
    idle: int
    worst_cost: int
    ones: int

    @property
    def redundancy(self) -> float:
        return self.ones / self.n

    @property
    def budget(self) -> int:
        """``T = n − 2b − 1``: the largest admissible ``2B + Z``."""
        return self.n - 2 * self.b - 1


def _add_even_set(V: list[int], size: int) -> list[int]:
    """Knapsack table of ``E ∪ {size}`` from that of ``E`` (``V[c]``: best value with c minuses)."""
    a = size // 2
    out = V[:]
    for c in range(len(V)):
        if c >= a:
            out[c] = max(out[c], V[c - a] + 1)
        if c >= a + 1:
            out[c] = max(out[c], V[c - a - 1] + 2)
    return out


def _value(VE: list[int], beta: int, x: int, phi: int, idle: int) -> int:
    """Left-hand side of (2): the worst ``2B + Z`` of the code."""
    s = min(x - phi, beta)
    f = min(phi, beta - s)
    return idle + phi + 2 * s + f + VE[beta - s - f]


@lru_cache(maxsize=None)
def _search(n: int, b: int, allow_idle: bool) -> Design:
    k = n
    odd = k % 2 == 1
    beta = (k - 1) // 2 if odd else k // 2 - 1
    full_ones = k if odd else k - 1
    T = n - 2 * b - 1
    max_even = k - 1 if odd else k - 2  # a light set must not be full-type
    best: list = [None]

    def consider(E: tuple[int, ...], VE: list[int]) -> None:
        sumE = sum(E)
        room = k - sumE
        for idle in range(0, (T if allow_idle else 0) + 1):
            if VE[beta] + idle > T:
                break
            for x in range(min(room, n - len(E) - idle), -1, -1):
                w_all = n - len(E) - x - idle          # full-type workers incl. fixers
                phi_max = min(x, w_all) if odd else 0
                if x <= beta:  # then (2) does not depend on φ: take as many fixers as possible
                    phi = phi_max
                    if _value(VE, beta, x, phi, idle) > T:
                        continue
                else:
                    for phi in range(phi_max, -1, -1):
                        if _value(VE, beta, x, phi, idle) <= T:
                            break
                    else:
                        continue
                light = len(E) + x
                ones = w_all * full_ones - phi + sumE + x
                if not odd and light == 0 and w_all > 0:
                    ones += 1                          # someone must hold the omitted partition
                if w_all == 0 and sumE + x < k:
                    continue                           # some partition would be held by nobody
                key = (ones, idle, -x, E)
                if best[0] is None or key < best[0][0]:
                    worst = _value(VE, beta, x, phi, idle)
                    best[0] = (key, Design(n, b, k, E, x, phi, w_all - phi, idle, worst, ones))
                break  # fewer singletons only adds full workers

    def rec(E: tuple[int, ...], VE: list[int], max_size: int, room: int) -> None:
        consider(E, VE)
        for size in range(min(max_size, room) - (min(max_size, room) % 2), 1, -2):
            V2 = _add_even_set(VE, size)
            if V2[beta] > T:
                continue
            rec(E + (size,), V2, size, room - size)

    rec((), [0] * (beta + 1), max_even, k)
    if best[0] is None:  # pragma: no cover - all-full always satisfies (2)
        raise AssertionError(f"no design found for n={n}, b={b}")
    return best[0][1]


def deterministic_design(n: int, b: int, allow_idle: bool = False) -> Design:
    """The structure (:class:`Design`) of :func:`deterministic` ``(n, b, allow_idle)``."""
    n, b = _check_nb(n, b)
    return _search(n, b, bool(allow_idle))


def _matrix(d: Design) -> np.ndarray:
    n, k = d.n, d.k
    odd = k % 2 == 1
    G = np.zeros((n, k), dtype=np.int8)
    row, col = 0, 0
    for size in d.even_sets:
        G[row, col:col + size] = 1
        row, col = row + 1, col + size
    single_cols = list(range(col, col + d.singletons))
    for c in single_cols:
        G[row, c] = 1
        row += 1
    row += d.idle                                       # idle workers: zero rows
    for z in single_cols[:d.fixers]:                    # fixers: everything but a singleton's column
        G[row] = 1
        G[row, z] = 0
        row += 1
    light = len(d.even_sets) + d.singletons
    for j in range(d.full):
        G[row] = 1
        if not odd and (light > 0 or j > 0):
            G[row, 0] = 0                               # column 0 is held by a light set (or row 0)
        row += 1
    assert row == n
    return G


def deterministic(n: int, b: int, allow_idle: bool = False) -> np.ndarray:
    """A perfectly b-Byzantine-tolerant ``n × n`` allocation matrix with low redundancy (int8).

    Full-type workers, fixers and light workers on pairwise disjoint sets (singletons and sets of
    even size), chosen by an exact search to minimise the number of ones subject to the tolerance
    condition (2) of the module docstring; see there (and ``docs/codes.md``) for the proof.
    Every partition is held by some worker and, unless ``allow_idle=True``, every worker holds at
    least one partition; with ``allow_idle=True`` idle workers (each costing 1 in (2)) are allowed
    too, which for odd ``n`` gives the repetition code's ``r = 2b + 1``.

    Requires ``0 <= b < n/2`` (no code tolerates ``b >= n/2``). Light workers come first (even sets,
    then singletons), then idle workers, fixers and full workers.
    """
    return _matrix(deterministic_design(n, b, allow_idle))


def repetition(n: int, b: int) -> np.ndarray:
    """The repetition baseline: ``2b + 1`` copies of the full data, ``n − 2b − 1`` idle workers.

    Workers ``0 .. 2b`` hold all ``k = n`` partitions (they always vote the true majority ``µ``),
    the others hold nothing (they send 0). Then ``A − B = 2b + 1`` on every non-tied pattern, so the
    code is perfectly b-tolerant, with redundancy exactly ``r = (2b + 1)·k / n = 2b + 1``. This is
    DRACO's "every sample is processed by 2b + 1 workers" expressed as an election-coding
    allocation; DRACO's own layout (groups of ``2b + 1`` workers sharing a block of partitions,
    every worker busy) is *not* b-tolerant under the majority-of-majorities decoder.
    """
    n, b = _check_nb(n, b)
    G = np.zeros((n, n), dtype=np.int8)
    G[: 2 * b + 1] = 1
    return G


# ---------------------------------------------------------------------------------------------
# Printable table and plot
# ---------------------------------------------------------------------------------------------


