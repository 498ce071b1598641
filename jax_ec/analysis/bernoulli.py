"""Statistics of random Bernoulli codes: failure probability, smallest p, load concentration.

A Bernoulli code draws every entry of the allocation matrix independently,
``G[i, j] ~ Bernoulli(p)`` (n workers × k partitions, :func:`jax_ec.codes.draw_bernoulli`). This
module measures how well such codes protect the majority vote (docs/algorithm.md).

**Failure.** For partition signs ``s ∈ {±1}^k`` (one "pattern"), a Byzantine set and an attack,
the master's vote is ``v = election(G, s, byzantine, attack)`` (:func:`jax_ec.election.election`).
A pattern is compared with a *reference* sign ``ref``:

* sign model ``"uniform"``: ``s_j`` i.i.d. uniform ±1 and ``ref = µ = sign(Σ_j s_j)``, the true
  majority of the partition signs;
* sign model ``("correct", q)`` (or the string ``"correct:q"``): ``s_j = +1`` with probability
  ``q``, else ``−1``, taking the true gradient sign as +1, and ``ref = +1``: the master fails when
  it does not output the *true gradient sign*, even when the partitions' own majority is wrong.

The election **fails** when ``v ≠ ref`` **or** ``v = 0``: a tie at the master is a failure (the
coordinate does not move). With an even ``k`` the uniform model has patterns with ``µ = 0``; there is
no correct direction to output and every such pattern counts as a failure, so use an odd ``k`` with
uniform signs.

**Attacks.** Every vote attack of :mod:`jax_ec.attacks` (``none, reverse, directional, random,
omniscient, stealth``) with ``b`` Byzantine workers chosen by ``placement`` (``uniform``: ``b``
workers drawn uniformly once per code draw, fixed for all of that draw's patterns, as a trial of the
paper keeps its Byzantine set for the run; ``most_loaded``: the ``b`` workers of largest load, ties
to the lower index). The directional attack sends ``direction`` (default −1: against the true sign +1 of the
``correct`` model; with uniform signs the direction does not matter by the ±1 symmetry). The random
attack draws its messages from a key derived from the call's key.

``attack="worst_case"`` is the **omniscient worst case** of the perfect-tolerance definition: for
*each pattern* the adversary knows ``G`` and ``s`` and chooses which ``b`` workers to corrupt (the
placement is ignored), making them vote ``−ref``. Turning a ``ref``-voter costs the margin 2 and a
silent (0) voter 1 while a ``−ref``-voter cannot help, so the best choice is greedy: the ``ref``-voters
first, then silent ones. With ``A, Z, B`` honest workers voting ``ref, 0, −ref``, ``t = min(b, A)``,
the vote survives iff ``A − B − 2t − min(b − t, Z) > 0``. No attack with ``b`` Byzantine workers
fails a pattern that this one does not fail.

**Estimator and its interval.** ``draws`` codes are drawn, and for each code ``patterns_per_draw``
independent patterns; the per-draw failure rate ``f_d`` is the fraction of that draw's patterns that
fail, and the estimate is ``mean_d f_d`` — an unbiased estimate of
``P_fail = E_G E_byz E_s[fail]``. Failures are Bernoulli over (draw, pattern) pairs but strongly
correlated within a draw (the same ``G`` and Byzantine set serve all its patterns), so a binomial
interval over all pairs (Wilson, Clopper–Pearson) would be far too narrow. The draws are i.i.d., so
the interval is the Student-t interval of the mean of the ``f_d`` (:func:`jax_ec.results.mean_ci`).
When no draw saw a failure that interval degenerates to ``[0, 0]``; then the upper end is the
Clopper–Pearson bound ``1 − (α/2)^{1/draws}`` on the fraction of draws with any failure, which bounds
``P_fail`` because ``f_d ≤ 1{f_d > 0}`` (symmetrically when every pattern of every draw failed).

**Reproducibility and common random numbers.** One key gives fixed sub-keys for codes, Byzantine
sets, patterns and attack messages; draw ``d`` uses ``fold_in(sub_key, d)``, so a draw's numbers do
not depend on the chunking or on how many draws follow it. ``jax.random.bernoulli(key, p)`` is
``uniform(key) < p``: calls with the same key and different ``p`` threshold the **same** uniforms
``U``, so the codes are nested (``G(p) ≤ G(p')`` entrywise for ``p ≤ p'``) and every other random
number is shared. The estimate is then a deterministic step function of ``p``, smooth enough to
bisect and far less noisy than independent estimates. It is *not* guaranteed monotone — adding a
partition can turn a correct worker into a tie — and on a fine grid (steps of 2^-7, n = 15–21,
16,384 pairs) it rises at a few steps by at most about 2e-3; on coarse grids (steps of 0.1) it
decreases (see the tests). :func:`smallest_p` relies only on its bracketing invariant. ``nonempty_rows=True`` (redraw the
whole matrix until no row is empty) weakens the coupling: the number of redraws depends on ``p``.

Everything random is one jitted call per setting (``jax.lax.map`` over draws in vmapped chunks),
with ``p`` and ``b`` traced, so a bisection over ``p`` compiles once.
"""

from __future__ import annotations

import itertools
import math
from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from .. import _checks
from ..attacks import VOTE_ATTACKS, most_loaded_placement, uniform_placement
from ..codes import check_nonempty_rows, draw_bernoulli, min_nonempty_p
from ..election import election, local_votes
from ..results import mean_ci

__all__ = [
    "ATTACK_NAMES",
    "PLACEMENT_NAMES",
    "Estimate",
    "failure_probability",
    "draw_trials",
    "exact_failure_probability",
    "exact_expected_failure_probability",
    "smallest_p",
    "load_deviation",
    "load_deviation_curve",
    "load_deviation_exact",
    "hoeffding_bound",
]

ATTACK_NAMES: tuple[str, ...] = (*VOTE_ATTACKS, "worst_case")
"""Attacks accepted here: the vote attacks of :mod:`jax_ec.attacks` plus the per-pattern omniscient worst case."""

PLACEMENT_NAMES: tuple[str, ...] = ("uniform", "most_loaded")
"""Byzantine placements accepted here (one set per code draw)."""

_MEMORY_BUDGET = 48 * 2**20  # bytes of per-chunk intermediates (keeps n = 201 well inside 24 GiB)


class Estimate(NamedTuple):
    """A probability estimate with its confidence interval.

    ``trials`` is the number of Bernoulli trials behind it: (draw, pattern) pairs for
    :func:`failure_probability`, rows (worker loads) for :func:`load_deviation`.
    """

    mean: float
    ci_low: float
    ci_high: float
    trials: int


# ---------------------------------------------------------------------------------------------
# Validation (at the boundary, before anything compiles)
# ---------------------------------------------------------------------------------------------

def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    return _checks.integer(name, value, low, high)


def _check_prob(name: str, value: object, open_ends: bool = False) -> float:
    return _checks.probability(name, value, open_ends)


def _check_attack(attack: object, name: str = "attack") -> str:
    return _checks.one_of(name, attack, ATTACK_NAMES, what="attack")


def _check_placement(placement: object) -> str:
    return _checks.one_of("placement", placement, PLACEMENT_NAMES, what="placement")


def _check_direction(direction: object) -> int:
    return _checks.sign("direction", direction)


def _parse_sign_model(sign_model: object, name: str = "sign_model") -> tuple[str, float]:
    """``"uniform"`` → ("uniform", 0.5); ``("correct", q)`` or ``"correct:q"`` → ("correct", q)."""
    allowed = "allowed: 'uniform', ('correct', q) or 'correct:q' with q in [0, 1]"
    if isinstance(sign_model, str):
        if sign_model == "uniform":
            return "uniform", 0.5
        head, sep, tail = sign_model.partition(":")
        if head == "correct" and sep:
            try:
                q = float(tail)
            except ValueError:
                raise ValueError(f"{name}: got {sign_model!r}; {allowed}") from None
            return "correct", _check_prob(f"{name} q", q)
        raise ValueError(f"{name}: unknown sign model {sign_model!r}; {allowed}")
    if isinstance(sign_model, (tuple, list)) and len(sign_model) == 2 and sign_model[0] == "correct":
        return "correct", _check_prob(f"{name} q", sign_model[1])
    raise ValueError(f"{name}: unknown sign model {_checks.brief(sign_model)}; {allowed}")


def _as_key(key: object) -> jax.Array:
    """A PRNG key (raw uint32 ``(2,)`` or typed) — or an integer seed, read as ``PRNGKey(seed)``."""
    return _checks.prng_key("key", key)


def _resolve_b(n: int, b: object, b_fraction: object, names: tuple[str, str] = ("b", "b_fraction")) -> int:
    """``b``, or ``floor(b_fraction · n)``: a count in ``[0, n − 1]`` (exactly one of them given)."""
    if (b is None) == (b_fraction is None):
        raise ValueError(f"{names[0]}: give exactly one of {names[0]} (a count) and {names[1]} (a fraction of n)")
    if b_fraction is not None:
        frac = _check_prob(names[1], b_fraction)
        b = int(math.floor(frac * n + 1e-9))
        if b >= n:
            raise ValueError(f"{names[1]}: got {b_fraction!r}; floor({names[1]} · n) = {b} must be < n = {n}")
        return b
    return _check_int(names[0], b, 0, n - 1)


# Largest memory of one draw's intermediates (code, votes, patterns) in the Monte Carlo estimators.
MAX_DRAW_BYTES = 2 ** 31
# Most draws per estimate: draw indices are uint32 and the per-draw results one float32 each.
MAX_DRAWS = 2 ** 28


def _draw_bytes(n: int, k: int, patterns: int) -> int:
    """Bytes of one draw's float32 intermediates: the code and its votes (3·n·k), the patterns
    (2·k·patterns) and the local votes and messages (3·n·patterns)."""
    return 4 * (3 * n * k + 2 * k * patterns + 3 * n * patterns)


def _check_draw_size(n: int, k: int, patterns: int, name: str = "n") -> None:
    size = _draw_bytes(n, k, patterns)
    if size > MAX_DRAW_BYTES:
        raise ValueError(f"{name}: one draw with n = {n} workers, k = {k} partitions and {patterns} patterns needs "
                         f"{size / 2**30:.3g} GiB of intermediates; expected at most "
                         f"{MAX_DRAW_BYTES / 2**30:g} GiB (fewer workers, partitions or patterns per draw)")


def _check_nonempty(nonempty_rows: object, n: int, k: int, p: float | None) -> bool:
    """``nonempty_rows`` as a bool; at ``p`` (when given) the redraws must stay bounded."""
    nonempty_rows = _checks.flag("nonempty_rows", nonempty_rows)
    if nonempty_rows and p is not None:
        check_nonempty_rows(n, k, p)
    return nonempty_rows


def _common_args(n, k, b, attack, sign_model, placement, direction):
    n = _check_int("n", n, 1)
    k = n if k is None else _check_int("k", k, 1)
    b = _check_int("b", b, 0, n - 1)
    return (n, k, b, _check_attack(attack), _parse_sign_model(sign_model), _check_placement(placement),
            _check_direction(direction))


# ---------------------------------------------------------------------------------------------
# The Monte Carlo estimator
# ---------------------------------------------------------------------------------------------

def _sub_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Fixed sub-keys by purpose: codes, Byzantine sets, sign patterns, attack messages."""
    code, byz, signs, attack = jax.random.split(key, 4)
    return code, byz, signs, attack


def _draw_code_and_byzantine(code_key, byz_key, d, p, b, n, k, placement, nonempty_rows):
    G = draw_bernoulli(jax.random.fold_in(code_key, d), n, k, p, nonempty_rows)
    if placement == "most_loaded":
        byz = most_loaded_placement(G, b)
    else:
        byz = uniform_placement(jax.random.fold_in(byz_key, d), n, b)
    return G, byz


def _draw_signs(key, k, patterns, kind, q):
    if kind == "uniform":
        return jax.random.rademacher(key, (k, patterns), dtype=jnp.float32)
    return jnp.where(jax.random.uniform(key, (k, patterns)) < q, 1.0, -1.0).astype(jnp.float32)


def _reference(S, kind):
    if kind == "uniform":
        return jnp.sign(jnp.ones((S.shape[0],), S.dtype) @ S)
    return jnp.ones((S.shape[1],), S.dtype)


def _worst_case_fail(C, ref, b):
    """Greedy omniscient adversary per pattern (module docstring): corrupt ref-voters, then silent ones."""
    A = jnp.sum(C == ref, axis=0)
    Z = jnp.sum(C == 0, axis=0)
    B = jnp.sum(C == -ref, axis=0)
    t = jnp.minimum(b, A)
    margin = A - B - 2 * t - jnp.minimum(b - t, Z)
    return (margin <= 0) | (ref == 0)


def _chunk(n: int, k: int, patterns: int, draws: int) -> int:
    return int(max(1, min(draws, _MEMORY_BUDGET // _draw_bytes(n, k, patterns))))


@partial(jax.jit, static_argnames=("n", "k", "draws", "patterns", "attack", "kind", "placement",
                                   "nonempty_rows", "batch"))
def _failure_rates(key, p, b, q, direction, *, n, k, draws, patterns, attack, kind, placement,
                   nonempty_rows, batch):
    """Per-draw failure rates ``f_d`` (draws,), one jitted call; ``p, b, q, direction`` are traced."""
    code_key, byz_key, sign_key, attack_key = _sub_keys(key)

    def one_draw(d):
        G, byz = _draw_code_and_byzantine(code_key, byz_key, d, p, b, n, k, placement, nonempty_rows)
        S = _draw_signs(jax.random.fold_in(sign_key, d), k, patterns, kind, q)
        ref = _reference(S, kind)
        if attack == "worst_case":
            fail = _worst_case_fail(local_votes(G, S), ref, b)
        else:
            v = election(G, S, byz, attack, jax.random.fold_in(attack_key, d), direction)
            fail = (v != ref) | (v == 0)
        return jnp.mean(fail.astype(jnp.float32))

    return jax.lax.map(one_draw, jnp.arange(draws, dtype=jnp.uint32), batch_size=batch)


def _estimate_from_rates(rates: np.ndarray, patterns: int, level: float) -> Estimate:
    rates = np.asarray(rates, dtype=np.float64)
    D = rates.size
    mean, low, high = (float(x) for x in mean_ci(rates, level=level, bounds=(0.0, 1.0)))  # a rate: clipped to [0, 1]
    alpha = 1.0 - level
    if np.all(rates == 0.0):
        low, high = 0.0, 1.0 - (alpha / 2.0) ** (1.0 / D)
    elif np.all(rates == 1.0):
        low, high = (alpha / 2.0) ** (1.0 / D), 1.0
    return Estimate(mean, max(0.0, low), min(1.0, high), D * patterns)


def _rates(key, n, k, p, b, attack, sign, placement, nonempty_rows, direction, draws, patterns):
    kind, q = sign
    return np.asarray(_failure_rates(
        key, jnp.float32(p), jnp.int32(b), jnp.float32(q), jnp.float32(direction),
        n=n, k=k, draws=draws, patterns=patterns, attack=attack, kind=kind, placement=placement,
        nonempty_rows=nonempty_rows, batch=_chunk(n, k, patterns, draws)))


def failure_probability(key, n: int, p: float, b: int, attack: str = "reverse", k: int | None = None,
                        draws: int = 1000, patterns_per_draw: int = 256,
                        sign_model: object = "uniform", placement: str = "uniform",
                        nonempty_rows: bool = False, direction: int = -1,
                        level: float = 0.95) -> Estimate:
    """Monte Carlo estimate of the probability that the master's vote is wrong (or a tie).

    ``P_fail = E_G E_byz E_s 1{v(G, s, byz) ≠ ref or v = 0}`` over ``G ~ Bernoulli(p)^{n×k}``
    (``k`` defaults to ``n``), ``b`` Byzantine workers placed by ``placement`` and patterns from
    ``sign_model``; see the module docstring for the reference sign, the attacks (incl.
    ``"worst_case"``), the tie rule and why the ``level`` interval is a Student-t interval over the
    ``draws`` per-draw rates. ``key`` is a PRNG key (or an integer seed); the same key gives the same
    numbers, and keys shared across ``p`` give common random numbers.
    """
    key = _as_key(key)
    n, k, b, attack, sign, placement, direction = _common_args(n, k, b, attack, sign_model, placement,
                                                               direction)
    p = _check_prob("p", p)
    draws = _check_int("draws", draws, 2, MAX_DRAWS)
    patterns = _check_int("patterns_per_draw", patterns_per_draw, 1)
    level = _check_prob("level", level, open_ends=True)
    nonempty_rows = _check_nonempty(nonempty_rows, n, k, p)
    _check_draw_size(n, k, patterns)
    rates = _rates(key, n, k, p, b, attack, sign, placement, nonempty_rows, direction, draws, patterns)
    return _estimate_from_rates(rates, patterns, level)


@partial(jax.jit, static_argnames=("n", "k", "draws", "placement", "nonempty_rows"))
def _draw_trials(key, p, b, *, n, k, draws, placement, nonempty_rows):
    code_key, byz_key, _, _ = _sub_keys(key)
    return jax.vmap(lambda d: _draw_code_and_byzantine(code_key, byz_key, d, p, b, n, k, placement,
                                                       nonempty_rows))(jnp.arange(draws, dtype=jnp.uint32))


def draw_trials(key, n: int, p: float, b: int, k: int | None = None, draws: int = 1000,
                placement: str = "uniform", nonempty_rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The codes ``G`` (draws, n, k) int8 and Byzantine masks (draws, n) bool that
    :func:`failure_probability` uses with the same arguments — to compare it draw by draw with
    :func:`exact_failure_probability`."""
    key = _as_key(key)
    n = _check_int("n", n, 1)
    k = n if k is None else _check_int("k", k, 1)
    b = _check_int("b", b, 0, n - 1)
    p = _check_prob("p", p)
    draws = _check_int("draws", draws, 1, MAX_DRAWS)
    _checks.matrix_size("draws", draws * n, k)
    G, byz = _draw_trials(key, jnp.float32(p), jnp.int32(b), n=n, k=k, draws=draws,
                          placement=_check_placement(placement),
                          nonempty_rows=_check_nonempty(nonempty_rows, n, k, p))
    return np.asarray(G, dtype=np.int8), np.asarray(byz, dtype=bool)


# ---------------------------------------------------------------------------------------------
# Exact enumeration (small k), written independently of the election module
# ---------------------------------------------------------------------------------------------

def _all_patterns(k: int) -> np.ndarray:
    """All 2^k sign patterns as columns, (k, 2^k) of ±1 (int64)."""
    bits = (np.arange(2**k)[None, :] >> np.arange(k)[:, None]) & 1
    return 2 * bits - 1


def _pattern_weights(S: np.ndarray, kind: str, q: float) -> np.ndarray:
    k = S.shape[0]
    if kind == "uniform":
        return np.full(S.shape[1], 2.0**-k)
    plus = (S == 1).sum(axis=0)
    return q**plus * (1.0 - q) ** (k - plus)


def _fail_of_total(total: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (np.sign(total) != ref) | (total == 0)


def _pattern_failures(G: np.ndarray, S: np.ndarray, ref: np.ndarray, byz: np.ndarray | None, b: int,
                      attack: str, direction: int) -> np.ndarray:
    """Failure probability per (code, pattern), (D, M), for given Byzantine masks ``byz`` (D, n).

    The only randomness left is the random attack's messages, summed exactly: ``nb`` Rademacher
    messages add ``2J − nb`` with ``J ~ Binomial(nb, 1/2)``.
    """
    C = np.sign(np.einsum("dnk,km->dnm", G.astype(np.int64), S))  # (D, n, M) honest votes
    if attack == "worst_case":
        A = (C == ref).sum(axis=1)
        Z = (C == 0).sum(axis=1)
        B = (C == -ref).sum(axis=1)
        t = np.minimum(b, A)
        margin = A - B - 2 * t - np.minimum(b - t, Z)
        return ((margin <= 0) | (ref == 0)).astype(np.float64)
    if attack == "none":
        return _fail_of_total(C.sum(axis=1), ref).astype(np.float64)
    mask = byz[:, :, None]
    honest = np.where(mask, 0, C).sum(axis=1)  # (D, M)
    nb = byz.sum(axis=1)[:, None]  # (D, 1)
    if attack == "reverse":
        return _fail_of_total(honest - np.where(mask, C, 0).sum(axis=1), ref).astype(np.float64)
    if attack == "directional":
        return _fail_of_total(honest + direction * nb, ref).astype(np.float64)
    if attack == "omniscient":
        truth = np.sign(S.sum(axis=0))
        return _fail_of_total(honest - nb * truth, ref).astype(np.float64)
    if attack == "stealth":   # against the no-attack vote v0, only where b votes overturn it
        own = np.where(mask, C, 0).sum(axis=1)
        v0 = np.sign(honest + own)
        flip = (v0 != 0) & (np.sign(honest - nb * v0) != v0)
        return _fail_of_total(np.where(flip, honest - nb * v0, honest + own), ref).astype(np.float64)
    # random: exact average over the Byzantine messages
    out = np.zeros(honest.shape)
    for j in range(int(nb.max()) + 1):
        out += stats.binom.pmf(j, nb, 0.5) * _fail_of_total(honest + 2 * j - nb, ref)
    return out


def _byzantine_sets(G: np.ndarray, b: int, placement: str, byzantine) -> list[tuple[np.ndarray, float]]:
    """(masks (D, n), weight) pairs whose weighted mean is the average over the Byzantine sets."""
    D, n, _ = G.shape
    if byzantine is not None:
        byz = np.asarray(byzantine)
        if byz.ndim == 1:
            byz = np.broadcast_to(byz, (D, n))
        if byz.shape != (D, n) or not np.isin(byz, (0, 1)).all():
            raise ValueError(f"byzantine: has shape {byz.shape}; expected ({n},) or ({D}, {n}) booleans")
        return [(byz.astype(bool), 1.0)]
    if placement == "most_loaded":
        loads = G.sum(axis=2)
        rank = np.argsort(np.argsort(-loads, axis=1, kind="stable"), axis=1, kind="stable")
        return [(rank < b, 1.0)]
    subsets = math.comb(n, b)
    if subsets > 5000:
        raise ValueError(f"byzantine: averaging over all C({n}, {b}) = {subsets} uniform Byzantine sets is "
                         "too many; pass byzantine= (the masks of draw_trials) instead")
    sets = []
    for combo in itertools.combinations(range(n), b):
        mask = np.zeros(n, dtype=bool)
        mask[list(combo)] = True
        sets.append((np.broadcast_to(mask, (D, n)), 1.0 / subsets))
    return sets


def exact_failure_probability(G, b: int, attack: str = "reverse", sign_model: object = "uniform",
                              placement: str = "uniform", byzantine=None, direction: int = -1):
    """Exact failure probability of given code(s) by enumerating all 2^k sign patterns (k ≤ 16).

    ``G``: one code (n, k) → a float, or a batch (D, n, k) → an array (D,). Patterns are weighted
    ``2^{-k}`` (uniform) or ``q^{#(+1)} (1 − q)^{#(−1)}`` (``("correct", q)``); failure and attacks as
    in :func:`failure_probability`, but computed here with NumPy, independently of the election
    module. The Byzantine set is ``byzantine`` when given ((n,) or (D, n) booleans, e.g. from
    :func:`draw_trials`); otherwise ``most_loaded`` uses the most loaded workers and ``uniform``
    averages over all ``C(n, b)`` sets. The random attack's messages are averaged exactly.
    """
    arr = np.asarray(_checks.real_array("G", G, "a 0/1 matrix (n, k) or a batch (D, n, k)"))
    single = arr.ndim == 2
    if arr.ndim not in (2, 3) or not np.isin(arr, (0, 1)).all():
        raise ValueError(f"G: has shape {arr.shape}; expected a 0/1 matrix (n, k) or a batch (D, n, k)")
    G3 = arr[None] if single else arr
    _, n, k = G3.shape
    if k > 16:
        raise ValueError(f"G: has k = {k} partitions; exact enumeration of 2^k patterns needs k <= 16")
    n, k, b, attack, (kind, q), placement, direction = _common_args(n, k, b, attack, sign_model,
                                                                    placement, direction)
    S = _all_patterns(k)
    w = _pattern_weights(S, kind, q)
    ref = np.sign(S.sum(axis=0)) if kind == "uniform" else np.ones(S.shape[1], dtype=np.int64)
    if attack in ("worst_case", "none"):
        sets = [(None, 1.0)]
    else:
        sets = _byzantine_sets(G3, b, placement, byzantine)
    prob = sum(weight * (_pattern_failures(G3, S, ref, byz, b, attack, direction) @ w)
               for byz, weight in sets)
    return float(prob[0]) if single else np.asarray(prob)


def exact_expected_failure_probability(n: int, p: float, b: int, attack: str = "reverse",
                                       k: int | None = None, sign_model: object = "uniform",
                                       placement: str = "uniform", nonempty_rows: bool = False,
                                       direction: int = -1) -> float:
    """``E_G[exact_failure_probability(G)]`` by enumerating all ``2^{nk}`` codes (``n·k ≤ 16``).

    Each code has weight ``p^{ones} (1 − p)^{nk − ones}``; with ``nonempty_rows`` only codes without
    an empty row count, renormalised (the distribution of the redraw-until-nonempty code).
    """
    n = _check_int("n", n, 1)
    k = n if k is None else _check_int("k", k, 1)
    p = _check_prob("p", p)
    nonempty_rows = _checks.flag("nonempty_rows", nonempty_rows)
    if n * k > 16:
        raise ValueError(f"n: n·k = {n * k}; enumerating all 2^(n·k) codes needs n·k <= 16")
    bits = (np.arange(2 ** (n * k))[:, None] >> np.arange(n * k)[None, :]) & 1
    G = bits.reshape(-1, n, k)
    ones = bits.sum(axis=1)
    weight = p**ones * (1.0 - p) ** (n * k - ones)
    if nonempty_rows:
        weight = np.where((G.sum(axis=2) > 0).all(axis=1), weight, 0.0)
        if weight.sum() == 0:
            raise ValueError(f"p: got {p!r}; with nonempty_rows every code has an empty row")
        weight = weight / weight.sum()
    keep = weight > 0
    probs = exact_failure_probability(G[keep], b, attack, sign_model, placement=placement, direction=direction)
    return float(probs @ weight[keep])


# ---------------------------------------------------------------------------------------------
# Smallest p for a target failure probability
# ---------------------------------------------------------------------------------------------

def smallest_p(key, n: int, target: float, b: int | None = None, b_fraction: float | None = None,
               attack: str = "reverse", k: int | None = None, draws: int = 512,
               patterns_per_draw: int = 256, sign_model: object = "uniform",
               placement: str = "uniform", nonempty_rows: bool = False, direction: int = -1,
               resolution_bits: int = 10) -> float:
    """Smallest connection probability ``p`` whose estimated failure probability is ≤ ``target``.

    ``b`` Byzantine workers, or ``b = floor(b_fraction · n)``. The estimate ``f(p)`` is
    :func:`failure_probability` with one key for every ``p`` (common random numbers: the same
    uniforms thresholded at ``p``, the same patterns, Byzantine sets and messages), so ``f`` is a
    deterministic step function of ``p``. Bisection on the grid ``p ∈ 2^{-m} ℤ ∩ [0, 1]``,
    ``m = resolution_bits``, keeps ``f(lo) > target ≥ f(hi)`` and stops at ``hi − lo = 2^{-m}``; it
    returns ``hi``. So the result ``p*`` satisfies ``f(p*) ≤ target < f(p* − 2^{-m})`` exactly (for
    the same key and sample sizes). It is the smallest such grid point when ``f`` is monotone; ``f``
    is only nearly so (module docstring), so a smaller grid point whose ``f`` wiggles just below the
    target may exist — the error this allows is of the order of those wiggles, far below the
    Monte Carlo uncertainty of ``f`` itself.
    Returns ``0.0`` when ``f(0) ≤ target`` and ``nan`` when even ``f(1) > target`` (e.g. ``b ≥ n/2``
    with the reverse attack, or a ``correct`` sign model whose partition majority itself is too often
    wrong). Resolution of ``f``: ``1 / (draws · patterns_per_draw)``; keep it well below ``target``.
    With ``nonempty_rows`` the grid starts at the first point ``≥`` :func:`jax_ec.codes.min_nonempty_p`
    (below it a draw without an empty row is too rare to wait for), returned when it meets the target.
    """
    key = _as_key(key)
    n = _check_int("n", n, 1)
    b = _resolve_b(n, b, b_fraction)
    n, k, b, attack, sign, placement, direction = _common_args(n, k, b, attack, sign_model, placement,
                                                               direction)
    target = _check_prob("target", target, open_ends=True)
    draws = _check_int("draws", draws, 2, MAX_DRAWS)
    patterns = _check_int("patterns_per_draw", patterns_per_draw, 1)
    m = _check_int("resolution_bits", resolution_bits, 1, 20)
    nonempty_rows = _check_nonempty(nonempty_rows, n, k, None)
    _check_draw_size(n, k, patterns)
    # with nonempty_rows, grid points below min_nonempty_p would redraw (nearly) for ever
    start = math.ceil(min_nonempty_p(n, k) * 2**m) if nonempty_rows else 0

    def f(p: float) -> float:
        return float(_rates(key, n, k, p, b, attack, sign, placement, nonempty_rows, direction,
                            draws, patterns).mean())

    if f(1.0) > target:
        return math.nan
    if f(start / 2**m) <= target:
        return start / 2**m
    lo, hi = start, 2**m  # in units of 2^-m
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if f(mid / 2**m) <= target:
            hi = mid
        else:
            lo = mid
    return hi / 2**m


# ---------------------------------------------------------------------------------------------
# Load concentration
# ---------------------------------------------------------------------------------------------

@partial(jax.jit, static_argnames=("n", "draws", "batch"))
def _loads(key, p, *, n, draws, batch):
    """Row sums of ``draws`` codes ``G ~ Bernoulli(p)^{n×n}``: (draws, n) int32."""
    def one(d):
        return draw_bernoulli(jax.random.fold_in(key, d), n, n, p).sum(axis=1).astype(jnp.int32)
    return jax.lax.map(one, jnp.arange(draws, dtype=jnp.uint32), batch_size=batch)


def _deviates(loads: np.ndarray, n: int, p: float, eps: float) -> np.ndarray:
    """``|load − np| ≥ nε``, with a 1e-9·n slack so that float rounding of ``np`` and ``nε`` cannot
    drop an exact equality."""
    return np.abs(loads - n * p) >= n * eps - 1e-9 * n


def _clopper_pearson(successes: int, trials: int, level: float) -> tuple[float, float]:
    alpha = 1.0 - level
    low = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return low, high


def _check_eps(eps_grid: object) -> list[float]:
    """The deviations ``ε``: one number or a non-empty sequence of them, each finite and > 0."""
    values = np.atleast_1d(np.asarray(eps_grid, dtype=object)).tolist() if not isinstance(eps_grid, str) else [eps_grid]
    if not values:
        raise ValueError("eps: got no value; expected at least one deviation ε > 0")
    return [_checks.number("eps", e, 0, low_open=True) for e in values]


def load_deviation_curve(key, n: int, p: float, eps_grid: Sequence[float], draws: int = 2000,
                         level: float = 0.95) -> list[Estimate]:
    """:func:`load_deviation` for every ``ε`` of ``eps_grid`` on the same loads (one jitted draw)."""
    key = _as_key(key)
    n = _check_int("n", n, 1)
    p = _check_prob("p", p)
    draws = _check_int("draws", draws, 1, MAX_DRAWS)
    level = _check_prob("level", level, open_ends=True)
    eps_list = _check_eps(eps_grid)
    _checks.matrix_size("n", n, n)
    batch = int(max(1, min(draws, _MEMORY_BUDGET // (8 * n * n))))
    loads = np.asarray(_loads(key, jnp.float32(p), n=n, draws=draws, batch=batch), dtype=np.float64)
    trials = loads.size
    out = []
    for e in eps_list:
        hits = int(_deviates(loads, n, p, e).sum())
        low, high = _clopper_pearson(hits, trials, level)
        out.append(Estimate(hits / trials, low, high, trials))
    return out


def load_deviation(key, n: int, p: float, eps: float, draws: int = 2000, level: float = 0.95) -> Estimate:
    """Empirical ``P(|load_i − np| ≥ nε)`` for a worker's load in a Bernoulli code with ``k = n``.

    ``draws`` codes ``G ~ Bernoulli(p)^{n×n}`` are drawn (:func:`jax_ec.codes.draw_bernoulli`, one
    jitted call) and every row sum counts: rows are i.i.d. ``Binomial(n, p)``, so the ``draws · n``
    trials are independent and the interval is the exact Clopper–Pearson binomial interval (here,
    unlike for failures, a binomial interval is the right one). Compare with :func:`hoeffding_bound`
    ``2·exp(−2ε²n)`` and the exact tail :func:`load_deviation_exact`.
    """
    return load_deviation_curve(key, n, p, [eps], draws, level)[0]


def hoeffding_bound(n: int, eps: float | np.ndarray) -> float | np.ndarray:
    """Hoeffding: ``P(|Σ_j X_j − np| ≥ nε) ≤ 2·exp(−2ε²n)`` for ``n`` independent ``X_j ∈ [0, 1]``."""
    n = _check_int("n", n, 1)
    eps = _checks.real_array("eps", eps, "finite numbers >= 0 (deviations ε)", kinds="iuf")
    if not (np.all(np.isfinite(eps)) and np.all(np.asarray(eps) >= 0)):
        raise ValueError(f"eps: got {_checks.brief(eps)}; expected finite numbers >= 0 (deviations ε)")
    return 2.0 * np.exp(-2.0 * np.square(eps) * n)


def load_deviation_exact(n: int, p: float, eps: float) -> float:
    """The exact tail ``P(|L − np| ≥ nε)`` for ``L ~ Binomial(n, p)`` (same boundary rule as the estimate)."""
    n = _check_int("n", n, 1)
    p = _check_prob("p", p)
    eps = _checks.number("eps", eps, 0, low_open=True)
    values = np.arange(n + 1, dtype=np.float64)
    return float(stats.binom.pmf(values, n, p)[_deviates(values, n, p, eps)].sum())


# ---------------------------------------------------------------------------------------------
# Plots (Agg canvas, no pyplot state) and tables
# ---------------------------------------------------------------------------------------------

