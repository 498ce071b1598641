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

:func:`deterministic` returns the code of this family with the fewest ones that satisfies (2);
every partition is held by at least one worker and (unless ``allow_idle``) every worker holds at
least one partition. The search is exact and polynomial (:func:`_search`): the knapsack value
``V_E(c)`` exceeds a bound ``T'`` iff the ``⌈(T' + 1)/2⌉`` smallest sets are cheap enough to flip,
so for given counts ``x, i`` the best ``E`` is a balanced one, in closed form. Explicit members:

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


def check_nb(n: object, b: object, n_name: str = "n", b_name: str = "b") -> tuple[int, int]:
    """``n >= 1`` workers and ``0 <= b < n/2`` Byzantine workers: the range of perfectly
    b-tolerant codes (``T = n − 2b − 1 >= 0``)."""
    n = _checks.integer(n_name, n, 1, hint=" (workers)")
    return n, _checks.integer(b_name, b, 0, (n - 1) // 2,
                              hint=f" (a perfectly b-tolerant code with n = {n} workers needs b < n/2)")


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


def _knapsack_table(E: tuple[int, ...], beta: int) -> list[int]:
    """``V_E(c)`` for ``c = 0 .. β``."""
    V = [0] * (beta + 1)
    for size in E:
        V = _add_even_set(V, size)
    return V


def _value(VE, beta: int, x: int, phi: int, idle: int) -> int:
    """Left-hand side of (2): the worst ``2B + Z`` of the code (``VE[c] = V_E(c)``)."""
    s = min(x - phi, beta)
    f = min(phi, beta - s)
    return idle + phi + 2 * s + f + VE[beta - s - f]


@dataclasses.dataclass(frozen=True)
class _Sets:
    """The cheapest multiset ``E`` of ``m`` even sets whose ``u`` smallest have half-sizes summing
    to at least ``A`` (``u = 0``: ``m`` pairs): the ``u`` smallest balanced with half-sizes summing
    to ``A``, the others of half-size ``⌈A/u⌉``."""

    m: int
    u: int = 0
    A: int = 0

    @property
    def top(self) -> int:
        return -(-self.A // self.u) if self.u else 1

    def sizes(self) -> tuple[int, ...]:
        """The sizes, non-increasing."""
        if not self.u:
            return (2,) * self.m
        q, r = divmod(self.A, self.u)
        return (2 * self.top,) * (self.m - self.u + r) + (2 * q,) * (self.u - r)


def _fixers(odd: bool, x, w_all, idle: int, beta: int, T: int):
    """The most fixers ``φ ≤ min(x, w_all)`` for which (2) holds (−1: none), given ``x`` singletons,
    ``idle`` idle workers and (for ``x ≤ β``) light sets satisfying (2); elementwise over arrays.

    For ``x ≤ β``, (2) reads ``idle + 2x + V_E(β − x) ≤ T`` whatever ``φ``. For ``x > β`` the
    minuses all land on singletons (``V_E(0) = 0``): the left-hand side is ``idle + 2β + φ`` for
    ``φ ≤ x − β`` and ``idle + x + β`` beyond."""
    phi_max = np.minimum(x, w_all) if odd else np.zeros_like(x)
    over = np.where((idle + x + beta <= T) & (phi_max > x - beta), phi_max,
                    np.maximum(np.minimum(np.minimum(phi_max, x - beta), T - idle - 2 * beta), -1))
    return np.where(x <= beta, phi_max, over)


_BLOCK = 2 ** 18   # (idle, x) cells evaluated at once by _search


@lru_cache(maxsize=None)
def _search(n: int, b: int, allow_idle: bool) -> Design:
    """The member of the family with the fewest ones satisfying (2), in ``O(n)`` vectorised steps
    (``O(n²)`` with idle workers): every count of idle workers and singletons at once.

    For given counts of idle workers and singletons, (2) constrains ``E`` only through
    ``V_E(c) ≤ T'``. As the values are 0, 1, 2 per set (nothing, a tie at price ``a``, a flip at
    price ``a + 1`` for a set of size ``2a``), the cheapest way to reach value ``v`` is to flip the
    ``⌈v/2⌉`` smallest sets (a tie instead of the last flip for odd ``v``):
    ``price(v) = Σ_{⌈v/2⌉ smallest} a + ⌊v/2⌋``. So ``V_E(c) ≤ T'`` iff either ``2|E| ≤ T'`` (any
    ``E``: pairs are cheapest) or, with ``u = ⌈(T' + 1)/2⌉ ≤ |E|``, the ``u`` smallest half-sizes
    sum to at least ``A = c − ⌊(T' + 1)/2⌋ + 1``; then the fewest ones for ``m`` sets are those of
    :class:`_Sets`. The number of ones is convex piecewise linear in ``m`` (kink where the full
    workers stop outnumbering the singletons, which bounds the fixers), so its minimum over each
    range of ``m`` is at an end or the kink; ties go to fewer idle workers, more singletons, then
    the lexicographically smaller ``E``.
    """
    k = n
    odd = k % 2 == 1
    beta = (k - 1) // 2 if odd else k // 2 - 1
    full_ones = k if odd else k - 1
    T = n - 2 * b - 1
    max_half = (k - 1 if odd else k - 2) // 2   # a light set must not be full-type
    best = None                                  # ((ones, idle, -x), sets, idle, x, phi, w_all)
    x = np.arange(k + 1)[None, :]                # singletons (columns) ...
    idles = np.arange((T if allow_idle else 0) + 1)
    block = max(1, _BLOCK // (k + 1))
    for first in range(0, idles.size, block):
        idle = idles[first:first + block, None]  # ... by idle workers (rows)
        room = np.minimum(n - x - idle, (k - x) // 2) if max_half >= 1 else np.zeros_like(x + idle)
        over = x > beta                          # then E plays no part in (2): pairs
        Tp = T - idle - 2 * x                    # x ≤ β: (2) is V_E(β − x) ≤ T'
        u = np.maximum(Tp // 2 + 1, 1)
        A = np.maximum(beta - x - (Tp + 1) // 2 + 1, u)
        top = -(-A // u)
        zero = np.zeros_like(Tp)
        regimes = [  # (u, A, lo, hi, feasible): m pairs, then m balanced sets
            (zero, zero, zero, np.where(over, room, np.minimum(u - 1, room)),
             np.where(over, (idle + 2 * beta <= T) | (idle + x + beta <= T), Tp >= 0)),
            (u, A, u, np.minimum(n - x - idle, u + (k - x - 2 * A) // (2 * top)),
             ~over & (Tp >= 0) & (top <= max_half) & (2 * A + x <= k)),
        ]
        for ru, rA, lo, hi, ok in regimes:
            kink = np.clip(n - 2 * x - idle, lo, np.maximum(hi, lo))
            for m in (lo, hi, np.maximum(lo, hi - 1), kink):
                w_all = n - m - x - idle         # full-type workers incl. fixers
                sumE = np.where(ru > 0, 2 * (rA + (m - ru) * top), 2 * m)
                phi = _fixers(odd, x, w_all, idle, beta, T)
                ones = w_all * full_ones - phi + sumE + x
                if not odd:
                    ones = ones + ((m + x == 0) & (w_all > 0))   # someone must hold the omitted partition
                good = (ok & (lo <= hi) & (w_all >= 0) & (sumE + x <= k) & (phi >= 0)
                        & ~((w_all == 0) & (sumE + x < k)))      # every partition held
                if not good.any():
                    continue
                for r, c in np.argwhere(good & (ones == ones[good].min())):
                    sets = _Sets(int(m[r, c]), int(ru[r, c]), int(rA[r, c]))
                    key = (int(ones[r, c]), int(idle[r, 0]), -int(c))
                    if best is None or key < best[0] or (key == best[0] and sets.sizes() < best[1].sizes()):
                        best = (key, sets, int(idle[r, 0]), int(c), int(phi[r, c]), int(w_all[r, c]))
    if best is None:  # pragma: no cover - all-full always satisfies (2)
        raise AssertionError(f"no design found for n={n}, b={b}")
    (ones, _, _), sets, idle, x, phi, w_all = best
    E = sets.sizes()
    worst = _value(_knapsack_table(E, beta), beta, x, phi, idle)
    if worst > T:  # pragma: no cover - the exact knapsack re-checks the closed form
        raise AssertionError(f"internal error: design for n={n}, b={b} has worst cost {worst} > {T}")
    return Design(n, b, k, E, x, phi, w_all - phi, idle, worst, ones)


def deterministic_design(n: int, b: int, allow_idle: bool = False) -> Design:
    """The structure (:class:`Design`) of :func:`deterministic` ``(n, b, allow_idle)``, without
    building the matrix: ``O(n)`` vectorised steps, ``O(n²)`` with ``allow_idle``."""
    n, b = check_nb(n, b)
    return _search(n, b, _checks.flag("allow_idle", allow_idle))


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
    n, b = check_nb(n, b)
    _checks.matrix_size("n", n, n)
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
    n, b = check_nb(n, b)
    _checks.matrix_size("n", n, n)
    G = np.zeros((n, n), dtype=np.int8)
    G[: 2 * b + 1] = 1
    return G


# ---------------------------------------------------------------------------------------------
# Printable table and plot
# ---------------------------------------------------------------------------------------------


