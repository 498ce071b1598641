"""Exact minimum redundancy of a perfectly b-Byzantine-tolerant code, by integer programming.

**Search space.** All ``n × k`` 0/1 allocation matrices: any rows (subsets of the ``k``
partitions), repeated rows allowed, a partition may be held by nobody; with ``allow_idle=False``
every row must be nonempty. ``k`` is fixed per search and defaults to ``k = n`` (partitions of
``1/n`` of the minibatch, so ``r`` compares directly with uncoded SignSGD-MV). ``r_min(n, b)``
depends on ``k``: e.g. ``k = 1`` makes the all-ones ``n × 1`` matrix b-tolerant for every
``b < n/2`` with ``r = 1``, but each worker then processes the whole minibatch; compare codes
with different ``k`` by the normalised redundancy ``ones / k`` (work per worker in units of an
uncoded worker's), which equals ``r`` at ``k = n``.

**Formulation.** A code is a multiset of rows, so the unknowns are the multiplicities
``x_S ∈ {0..n}`` of every subset ``S ⊆ [k]`` (``2^k`` integers), with ``Σ_S x_S = n``. By the
criterion of :mod:`jax_ec.analysis.verify` and Lemma 1 of :mod:`jax_ec.analysis.design`,
``G`` is b-tolerant iff for every minimal pattern (``µ = +1`` and ``β`` minus signs on a set
``M``: ``β = (k − 1)/2`` for odd ``k``, ``k/2 − 1`` for even ``k``; tied patterns have no correct
answer and are skipped)

    Σ_S κ(S, M) x_S ≤ n − 2b − 1,   κ(S, M) = 2 if |S ∩ M| > |S|/2, 1 if = |S|/2, else 0,

one linear constraint per ``M`` (``m ↦ −m`` symmetry: ``µ = −1`` gives the same constraints).
Minimise ``Σ_S |S| x_S`` (the number of ones, ``r = ones / n``). Column-permutation symmetry is
broken by ordering the column degrees ``Σ_{S ∋ j} x_S`` non-increasingly, which every code
satisfies after a column permutation. Solved with HiGHS through :func:`scipy.optimize.milp`
(no extra dependency); every optimum returned is re-checked with :func:`verify`.

Practical range (2 CPU cores): ``k = n ≤ 9`` is solved to optimality for every ``b`` in at most
a few minutes (``n = 9, b = 1`` is the hardest, 1–4 minutes); ``n = 10, 11`` often stop at the
time limit with a gap, reported as ``lower_bound`` < ``ones``. ``k ≤ 12`` is accepted.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import numpy as np

from .. import _checks
from .design import check_nb
from .verify import verify

__all__ = ["SearchResult", "min_redundancy", "brute_force_min_ones", "MAX_SEARCH_K"]

MAX_SEARCH_K = 12


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Outcome of :func:`min_redundancy`.

    Attributes:
      n, b, k, allow_idle: the problem searched.
      ones: number of ones of the best code found (None if none was found in time).
      lower_bound: proven lower bound on the number of ones (= ``ones`` when ``optimal``).
      optimal: whether ``ones`` is proven minimal.
      G: the best code found, ``(n, k)`` int8 (verified b-tolerant), or None.
      seconds: solver wall time.
      status: the solver's message.
    """

    n: int
    b: int
    k: int
    allow_idle: bool
    ones: int | None
    lower_bound: int
    optimal: bool
    G: np.ndarray | None
    seconds: float
    status: str

    @property
    def r_min(self) -> float | None:
        """``ones / n`` when proven optimal, else None."""
        return self.ones / self.n if self.optimal and self.ones is not None else None

    @property
    def redundancy(self) -> float | None:
        """``ones / n`` of the best code found (an upper bound on r_min)."""
        return None if self.ones is None else self.ones / self.n

    @property
    def redundancy_lower_bound(self) -> float:
        return self.lower_bound / self.n

    @property
    def normalized_redundancy(self) -> float | None:
        """``ones / k``: work per worker relative to an uncoded worker (``= r`` at ``k = n``)."""
        return None if self.ones is None else self.ones / self.k


def _check_problem(n, b, k):
    n, b = check_nb(n, b)
    if k is None and n > MAX_SEARCH_K:
        raise ValueError(f"n: got {n}, so k = n = {n} partitions; the exact search has 2^k unknowns and accepts "
                         f"k <= {MAX_SEARCH_K} (give a smaller k)")
    k = _checks.integer("k", n if k is None else k, 1, MAX_SEARCH_K,
                        hint=" (partitions: the exact search has 2^k unknowns)")
    return n, b, k


def _minimal_patterns(k: int) -> np.ndarray:
    """All ``µ = +1`` patterns with the fewest minus signs (Σ m = 1 for odd k, 2 for even k)."""
    beta = (k - 1) // 2 if k % 2 else k // 2 - 1
    pats = []
    for minus in itertools.combinations(range(k), beta):
        m = np.ones(k, dtype=np.int64)
        m[list(minus)] = -1
        pats.append(m)
    return np.array(pats, dtype=np.int64)


def _subsets(k: int) -> np.ndarray:
    return ((np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1).astype(np.int64)


def min_redundancy(n: int, b: int, allow_idle: bool = False, k: int | None = None,
                   time_limit: float = 120.0, upper_bound: int | None = None) -> SearchResult:
    """Exact minimum number of ones (``r_min = ones / n``) of a perfectly b-tolerant ``n × k`` code.

    Args:
      n: workers; b: Byzantine workers, ``0 <= b < n/2``.
      allow_idle: allow workers holding no partition (the repetition code needs them).
      k: partitions, default ``n``; at most :data:`MAX_SEARCH_K` (``2^k`` unknowns).
      time_limit: solver time limit in seconds; on expiry the result carries the best code found and
        a proven lower bound, with ``optimal=False``.
      upper_bound: optional known number of ones of some b-tolerant code (prunes the search).

    See the module docstring for the search space and the formulation.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    n, b, k = _check_problem(n, b, k)
    time_limit = _checks.number("time_limit", time_limit, 0, low_open=True, hint=" (seconds)")
    allow_idle = _checks.flag("allow_idle", allow_idle)
    if upper_bound is not None:
        upper_bound = _checks.integer("upper_bound", upper_bound, 0, hint=" (a number of ones)")
    subsets = _subsets(k)
    pats = _minimal_patterns(k)
    s = subsets @ pats.T                                       # (2^k, patterns) local sums
    sizes = subsets.sum(axis=1)
    kappa = np.where(s < 0, 2, np.where(s == 0, 1, 0))
    T = n - 2 * b - 1
    upper = np.full(len(subsets), n, dtype=float)
    if not allow_idle:
        upper[0] = 0
    constraints = [LinearConstraint(kappa.T.astype(float), -np.inf, T),
                   LinearConstraint(np.ones((1, len(subsets))), n, n)]
    if k > 1:
        deg = subsets.T.astype(float)                          # (k, 2^k): column degrees
        constraints.append(LinearConstraint(deg[:-1] - deg[1:], 0, np.inf))
    if upper_bound is not None:
        constraints.append(LinearConstraint(sizes[None, :].astype(float), -np.inf, float(upper_bound)))
    t0 = time.perf_counter()
    res = milp(sizes.astype(float), integrality=np.ones(len(subsets)), bounds=Bounds(0, upper),
               constraints=constraints, options={"time_limit": float(time_limit)})
    seconds = time.perf_counter() - t0
    G = None
    ones = None
    if res.x is not None:
        mult = np.round(res.x).astype(np.int64)
        G = np.repeat(subsets, mult, axis=0).astype(np.int8)
        G = G[np.lexsort(G.T[::-1])][::-1].copy()              # rows in decreasing lexicographic order
        ones = int(G.sum())
        if G.shape != (n, k) or not verify(G, b).tolerant:     # pragma: no cover - solver bug guard
            raise AssertionError(f"min_redundancy: solver returned a non-tolerant code for n={n}, b={b}")
    optimal = res.status == 0 and ones is not None
    bound = getattr(res, "mip_dual_bound", None)
    if optimal:
        lower = ones
    elif bound is not None and np.isfinite(bound):
        lower = int(math.ceil(bound - 1e-6))
    else:
        lower = 0
    return SearchResult(n, b, k, bool(allow_idle), ones, lower, optimal, G, seconds, str(res.message))


def brute_force_min_ones(n: int, b: int, k: int, allow_idle: bool = False) -> int:
    """Minimum number of ones over *all* ``2^(n·k)`` matrices (tiny ``n·k`` only, ≤ 16): tests.

    Checks every matrix with the criterion ``A − B ≥ 2b + 1`` on every non-tied pattern (all
    ``2^k`` patterns, no symmetry used), vectorised with NumPy.
    """
    n, b, k = _check_problem(n, b, k)
    allow_idle = _checks.flag("allow_idle", allow_idle)
    if n * k > 16:
        raise ValueError(f"n, k: n·k = {n * k} > 16; brute force covers at most 2^16 matrices")
    bits = ((np.arange(2 ** (n * k))[:, None] >> np.arange(n * k)[None, :]) & 1).astype(np.int8)
    Gs = bits.reshape(-1, n, k)
    if not allow_idle:
        Gs = Gs[(Gs.sum(axis=2) > 0).all(axis=1)]
    pats = 2 * _subsets(k) - 1                                  # (2^k, k) all ±1 patterns
    mu = np.sign(pats.sum(axis=1))
    keep = mu != 0
    pats, mu = pats[keep], mu[keep]
    votes = np.sign(np.einsum("gnk,pk->gpn", Gs.astype(np.int64), pats))
    A = (votes == mu[None, :, None]).sum(axis=2)
    B = (votes == -mu[None, :, None]).sum(axis=2)
    tolerant = (A - B >= 2 * b + 1).all(axis=1)
    return int(Gs[tolerant].sum(axis=(1, 2)).min())


