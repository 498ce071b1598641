"""Exact verification of perfect b-Byzantine tolerance of an allocation matrix.

Setting (docs/algorithm.md, section 2). ``G`` is an ``n × k`` 0/1 allocation matrix. For a partition-sign pattern
``m ∈ {±1}^k`` the true majority is ``µ = sign(Σ_j m_j)``, worker ``i`` votes honestly
``c_i = sign(Σ_j G_ij m_j)`` (0 on a tie and for an empty worker), and the master outputs
``sign(Σ_i c'_i)`` where ``c'_i`` is what it receives. ``G`` is **perfectly b-tolerant** when for
every pattern and every set of at most ``b`` Byzantine workers sending *anything* the master outputs
``µ``; a master tie (output 0) counts as a failure.

The adversary. The master reads each message as its sign, so a Byzantine worker contributes one of
``−1, 0, +1`` (in the direction of ``µ``). Corrupting a set ``T`` (|T| ≤ b) changes the master's sum
(measured along ``µ``) from ``Σ_i µc_i`` to ``Σ_{i∉T} µc_i − |T|`` at best for the adversary, i.e.
it removes ``µc_i + 1`` per corrupted worker: 2 for a ``µ``-voter, 1 for a 0-voter, 0 for a
``−µ``-voter. So the strongest adversary, who knows ``G`` and ``m``, turns ``x = min(b, A)``
``µ``-voters and then ``y = min(b − x, Z)`` 0-voters into ``−µ``-voters, where

    A = #{i : c_i = µ},   B = #{i : c_i = −µ},   Z = #{i : c_i = 0}.

Every Byzantine worker then sends the constant ``−µ``: this is ``attack="directional"`` with
``direction = −µ`` of :func:`jax_ec.elect`, which :func:`replay` uses.

**Margin.** ``margin(m) = A − B − 2x − y`` is the master's sum along ``µ`` after the optimal
corruption, and ``margin(G, b) = min_m margin(m)``. ``G`` is b-tolerant iff ``margin ≥ 1``. When
``A ≥ b`` the margin is ``A − B − 2b``; when ``A < b`` it is ``≤ 0``. Hence (the criterion of
docs/algorithm.md, section 2) ``G`` is b-tolerant iff ``A − B ≥ 2b + 1`` for every pattern, and the largest
tolerated ``b`` is ``⌊(min_m (A − B) − 1) / 2⌋`` (:func:`max_tolerance`).

**Tie rule (even k).** A pattern with ``Σ_j m_j = 0`` has no true majority and therefore no correct
answer; such patterns are **skipped** (reported as ``patterns_skipped``). For odd ``k`` none exist.
A worker holding an even number of partitions can still tie on a non-tied pattern; that is a
0-vote, which the adversary may corrupt at cost 1.

**Search.** The check is exhaustive over all ``2^k`` patterns, reduced by exact symmetries:

* ``m`` and ``−m`` give the same ``A, B, Z`` (all votes and ``µ`` flip), so only one of each pair
  is evaluated (whenever some group below has odd size, which is always so for odd ``k``);
* identical columns of ``G`` are collapsed into groups: a pattern matters only through ``t_g``, the
  number of ``+1`` signs in group ``g`` of size ``s_g``, so ``Π_g (s_g + 1)`` configurations
  replace ``2^k`` patterns (each standing for ``Π_g C(s_g, t_g)`` patterns);
* identical rows are evaluated once and weighted by their multiplicity.

Configurations are decoded on the device from an integer range (mixed-radix digit extraction, bit
extraction when every group is a single column), the local sums are one matmul, and each chunk is one
jitted reduction returning its minimum margin and the index attaining it; only the chunk loop is in
Python.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..codes import validate_allocation

__all__ = ["VerifyResult", "verify", "replay", "max_tolerance", "tolerance_text", "margin_histogram", "configurations",
           "worst_case", "DEFAULT_MAX_CONFIGURATIONS"]

#: Largest number of configurations (after symmetry reduction) :func:`verify` evaluates by default:
#: all 2^25 patterns of a code with 25 distinct columns reduce to 2^24.
DEFAULT_MAX_CONFIGURATIONS = 2 ** 24
_DEFAULT_CHUNK = 2 ** 16


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`.

    Attributes:
      tolerant: whether ``G`` is perfectly ``b``-tolerant (``margin >= 1``).
      margin: ``min`` over non-tied patterns of the master's sum along the true majority ``µ`` after
        the optimal corruption of at most ``b`` workers (see the module docstring).
      n, k, b: the code's shape and the number of Byzantine workers checked.
      patterns_checked: number of sign patterns ``m ∈ {±1}^k`` covered (``2^k`` minus the tied ones).
      patterns_skipped: tied patterns (``Σ m = 0``, even ``k`` only): no correct answer, skipped.
      configurations: configurations actually evaluated after the symmetry reductions.
      column_groups, row_groups: number of distinct columns and distinct rows of ``G``.
      pattern: the worst pattern, ``(k,)`` int8 of ±1 (the counterexample when not tolerant).
      majority: its true majority ``µ`` (±1).
      byzantine: ``(n,)`` bool, the at most ``b`` workers the worst adversary corrupts.
      messages: ``(n,)`` int8, the vote the master receives from each worker under that attack:
        ``−µ`` from the Byzantine workers, the honest local vote from the others.
      honest_votes: ``(n,)`` int8, the honest local votes ``sign(G @ pattern)``.
      vote: the master's output ``sign(Σ messages)``; ``≠ µ`` exactly when not tolerant.

    When ``tolerant`` is False, ``(pattern, byzantine, messages)`` is a counterexample: replaying it
    with :func:`replay` (``jax_ec.elect`` with ``attack="directional", direction=−µ``) gives ``vote``.
    When ``tolerant`` is True they describe the tightest case (the master wins by ``margin``).
    """

    tolerant: bool
    margin: int
    n: int
    k: int
    b: int
    patterns_checked: int
    patterns_skipped: int
    configurations: int
    column_groups: int
    row_groups: int
    pattern: np.ndarray
    majority: int
    byzantine: np.ndarray
    messages: np.ndarray
    honest_votes: np.ndarray
    vote: int

    @property
    def direction(self) -> int:
        """The directional attack's constant message that realises the worst case: ``−µ``."""
        return -self.majority

    @property
    def counterexample(self) -> "VerifyResult | None":
        """``self`` when the code is not tolerant (the worst case is a counterexample), else None."""
        return None if self.tolerant else self


# ---------------------------------------------------------------------------------------------
# Input checks and the symmetry reduction
# ---------------------------------------------------------------------------------------------


def _positive(name: str, value: object) -> int:
    return _checks.integer(name, value, 1)


def _check_b(b: object, n: int) -> int:
    return _checks.integer("b", b, 0, n - 1, hint=f" (0 <= b < n = {n}, the number of workers)")


@dataclasses.dataclass(frozen=True)
class _Reduced:
    """``G`` with identical columns collapsed and identical rows weighted."""

    G: np.ndarray            # (n, k) int8, the validated input
    Gc: np.ndarray           # (row_groups, column_groups) 0/1
    row_weight: np.ndarray   # (row_groups,) multiplicity of each distinct row
    row_of: np.ndarray       # (n,) index of each worker's distinct row
    columns: list            # per column group, the list of original column indices
    sizes: np.ndarray        # (column_groups,) group sizes s_g
    radices: np.ndarray      # digit range per group (s_g + 1; (s_g + 1) / 2 for the halved group)
    halved: int              # index of the halved group, or -1
    total: int               # number of configurations


def _reduce(G: np.ndarray, collapse_columns: bool = True) -> _Reduced:
    n, k = G.shape
    if collapse_columns:
        uniq, col_group = np.unique(G.T, axis=0, return_inverse=True)
        col_group = col_group.reshape(-1)
        columns = [np.flatnonzero(col_group == g).tolist() for g in range(uniq.shape[0])]
        Gcols = uniq.T                                     # (n, groups)
    else:
        columns = [[j] for j in range(k)]
        Gcols = G
    sizes = np.array([len(c) for c in columns], dtype=np.int64)
    rows, row_of, row_weight = np.unique(Gcols, axis=0, return_inverse=True, return_counts=True)
    radices = sizes + 1
    odd = np.flatnonzero(sizes % 2 == 1)
    halved = -1
    if odd.size:
        # m ↔ −m maps t_g ↦ s_g − t_g; on an odd group it pairs t ≤ (s−1)/2 with t ≥ (s+1)/2, so
        # restricting that one digit keeps exactly one pattern of every pair {m, −m}.
        halved = int(odd[np.argmax(sizes[odd])])
        radices = radices.copy()
        radices[halved] = (sizes[halved] + 1) // 2
    total = math.prod(int(r) for r in radices)
    return _Reduced(G, rows.astype(np.int8), row_weight.astype(np.int64), row_of.reshape(-1),
                    columns, sizes, radices.astype(np.int64), halved, total)


# ---------------------------------------------------------------------------------------------
# The jitted per-chunk reduction
# ---------------------------------------------------------------------------------------------


def _digits(idx, strides, radices, binary):
    if binary:  # every radix is 2 (or 1 for a halved single column): bit extraction, strides = shifts
        return jnp.where(radices[None, :] == 1, 0, (idx[:, None] >> strides[None, :]) & 1)
    return (idx[:, None] // strides[None, :]) % radices[None, :]


def _chunk_margins(start, Gc_t, row_weight, sizes, strides, radices, total, b, chunk, binary):
    """Margins of configurations ``start .. start + chunk − 1`` and which of them count (in range
    and not tied)."""
    idx = start + jnp.arange(chunk, dtype=jnp.int32)
    t = _digits(idx, strides, radices, binary)                    # (chunk, groups) +1 counts
    v = (2 * t - sizes[None, :]).astype(jnp.float32)              # Σ of the signs in each group
    s = v @ Gc_t                                                  # (chunk, row_groups) local sums
    mu = jnp.sign(v.sum(axis=1))                                  # true majority (0: tied)
    agree = jnp.sign(s) * mu[:, None]                             # +1: votes µ, −1: votes −µ
    A = (agree > 0).astype(jnp.float32) @ row_weight
    B = (agree < 0).astype(jnp.float32) @ row_weight
    Z = row_weight.sum() - A - B
    x = jnp.minimum(b, A)
    y = jnp.minimum(b - x, Z)
    margin = A - B - 2.0 * x - y
    valid = (idx < total) & (mu != 0)
    return margin, valid, t


@partial(jax.jit, static_argnames=("chunk", "binary"))
def _chunk_min(start, Gc_t, row_weight, sizes, strides, radices, total, b, chunk, binary):
    margin, valid, _ = _chunk_margins(start, Gc_t, row_weight, sizes, strides, radices, total, b,
                                      chunk, binary)
    margin = jnp.where(valid, margin, jnp.inf)
    i = jnp.argmin(margin)
    return margin[i], start + i.astype(jnp.int32)


@partial(jax.jit, static_argnames=("chunk", "binary", "nbins"))
def _chunk_hist(start, Gc_t, row_weight, sizes, strides, radices, total, b, log_binom, lo,
                chunk, binary, nbins):
    margin, valid, t = _chunk_margins(start, Gc_t, row_weight, sizes, strides, radices, total, b,
                                      chunk, binary)
    # number of patterns a configuration stands for: Π_g C(s_g, t_g)
    logw = jnp.take_along_axis(log_binom[None, :, :], t[:, :, None], axis=2)[..., 0].sum(axis=1)
    w = jnp.where(valid, jnp.exp(logw), 0.0)
    bins = jnp.clip(margin.astype(jnp.int32) - lo, 0, nbins - 1)
    return jnp.zeros((nbins,), jnp.float32).at[bins].add(w)


def _device_args(red: _Reduced):
    # Pad to power-of-two shapes so that codes of similar size share one compilation: extra
    # column groups have size 0 (radix 1, sign sum 0), extra rows weight 0 (they count nowhere).
    groups, rows = len(red.radices), red.Gc.shape[0]
    G_pad, R_pad = _bucket(groups), _bucket(rows)
    radices = np.concatenate([red.radices, np.ones(G_pad - groups, np.int64)])
    sizes = np.concatenate([red.sizes, np.zeros(G_pad - groups, np.int64)])
    Gc_t = np.zeros((G_pad, R_pad), np.float32)
    Gc_t[:groups, :rows] = red.Gc.T
    weight = np.zeros(R_pad, np.float32)
    weight[:rows] = red.row_weight
    # mixed radix: digit g = (index // stride_g) % radix_g with stride_g = Π_{h<g} radix_h
    strides = np.cumprod(np.concatenate([[1], radices[:-1]])).astype(np.int64)
    binary = bool(np.all(radices <= 2))
    if binary:  # all strides are powers of two: pass the shifts instead
        strides = np.round(np.log2(strides)).astype(np.int64)
    return (jnp.asarray(Gc_t), jnp.asarray(weight), jnp.asarray(sizes, jnp.int32),
            jnp.asarray(strides, jnp.int32), jnp.asarray(radices, jnp.int32), binary)


def _bucket(x: int) -> int:
    return max(4, 1 << (x - 1).bit_length())


def _decode(red: _Reduced, index: int) -> np.ndarray:
    """The ``k`` signs of configuration ``index``: in group ``g`` the first ``t_g`` columns are +1."""
    m = -np.ones(red.G.shape[1], dtype=np.int8)
    for g, rdx in enumerate(red.radices):
        index, t = divmod(index, int(rdx))
        m[red.columns[g][:t]] = 1
    return m


def worst_case(G: np.ndarray, pattern: np.ndarray, b: int) -> dict:
    """The optimal attack on one pattern: honest votes, ``A, B, Z``, Byzantine set, messages, vote.

    Corrupts the ``min(b, A)`` lowest-indexed ``µ``-voters and then the lowest-indexed 0-voters up to
    ``b`` workers in all, each sending ``−µ``. ``pattern`` must not be tied.
    """
    G = validate_allocation(G)
    n, k = G.shape
    b = _check_b(b, n)
    m = _checks.real_array("pattern", pattern, f"({k},) signs +1/-1, one per partition")
    if m.shape != (k,) or not np.isin(m, (-1, 1)).all():
        raise ValueError(f"pattern: got {_checks.brief(np.asarray(m).tolist())}; expected ({k},) signs +1/-1, "
                         "one per partition (column of G)")
    m = np.asarray(m, dtype=np.int64)
    mu = int(np.sign(m.sum()))
    if mu == 0:
        raise ValueError("pattern: its majority is tied; a tied pattern has no correct answer")
    honest = np.sign(G.astype(np.int64) @ m).astype(np.int8)
    pro = np.flatnonzero(honest == mu)
    zero = np.flatnonzero(honest == 0)
    x = min(b, pro.size)
    y = min(b - x, zero.size)
    byz = np.zeros(n, dtype=bool)
    byz[pro[:x]] = True
    byz[zero[:y]] = True
    messages = np.where(byz, -mu, honest).astype(np.int8)
    total = int(messages.astype(np.int64).sum())
    return dict(majority=mu, honest_votes=honest, A=int(pro.size), B=int((honest == -mu).sum()),
                Z=int(zero.size), byzantine=byz, messages=messages, margin=mu * total,
                vote=int(np.sign(total)))


def configurations(G, collapse_columns: bool = True) -> int:
    """The number of configurations :func:`verify` evaluates for ``G``: ``Π_g (s_g + 1)`` over the
    groups of identical columns, halved on one odd group (the module docstring); ``2^(k−1)``
    without ``collapse_columns`` for odd ``k``. Polynomial to compute; compare it with
    ``max_configurations`` before verifying."""
    return _reduce(validate_allocation(G), _checks.flag("collapse_columns", collapse_columns)).total


def _prepare(G, b, max_configurations, chunk_size, collapse_columns):
    G = validate_allocation(G)
    b = _check_b(b, G.shape[0])
    max_configurations = _positive("max_configurations", max_configurations)
    chunk_size = _positive("chunk_size", chunk_size)
    red = _reduce(G, _checks.flag("collapse_columns", collapse_columns))
    if red.total > max_configurations:
        raise ValueError(
            f"G: {red.total} configurations to check ({len(red.columns)} distinct columns of {G.shape[1]}) "
            f"exceed max_configurations = {max_configurations}; exhaustive verification covers about "
            "k <= 25 distinct columns (raise max_configurations to go further)")
    if red.total >= 2 ** 31:
        raise ValueError(f"G: {red.total} configurations do not fit the int32 index range (at most 2^31 - 1)")
    chunk = 1 << max(0, (min(chunk_size, red.total) - 1).bit_length())
    return G, b, red, chunk


def verify(G, b: int, *, max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
           chunk_size: int = _DEFAULT_CHUNK, collapse_columns: bool = True) -> VerifyResult:
    """Decide exactly whether ``G`` is perfectly ``b``-Byzantine tolerant (see the module docstring).

    Args:
      G: allocation matrix ``(n, k)`` of 0/1 (validated by :func:`jax_ec.codes.validate_allocation`).
      b: number of Byzantine workers, an integer ``0 <= b < n``.
      max_configurations: refuse (``ValueError``) when more configurations than this remain after
        the symmetry reductions (default ``2^24``: any code with at most 25 distinct columns).
      chunk_size: configurations per jitted chunk (rounded up to a power of two).
      collapse_columns: use the identical-column reduction (False enumerates every pattern, up to
        the ``m ↔ −m`` symmetry; same answer, for testing and benchmarking).

    Returns:
      A :class:`VerifyResult`; when not tolerant its ``pattern``/``byzantine``/``messages`` are a
      counterexample that :func:`replay` turns into a wrong vote of :func:`jax_ec.elect`.
    """
    G, b, red, chunk = _prepare(G, b, max_configurations, chunk_size, collapse_columns)
    Gc_t, row_weight, sizes, strides, radices, binary = _device_args(red)
    total = jnp.int32(red.total)
    bf = jnp.float32(b)
    best, best_index = math.inf, -1
    for start in range(0, red.total, chunk):
        m, i = _chunk_min(jnp.int32(start), Gc_t, row_weight, sizes, strides, radices, total, bf,
                          chunk=chunk, binary=binary)
        m = float(m)
        if m < best:
            best, best_index = m, int(i)
    n, k = G.shape
    skipped = math.comb(k, k // 2) if k % 2 == 0 else 0
    if best_index < 0:  # every pattern tied: impossible for k >= 1 (all +1 is never tied)
        raise AssertionError("no untied pattern found")
    pattern = _decode(red, best_index)
    wc = worst_case(G, pattern, b)
    margin = int(best)
    if wc["margin"] != margin:  # the device reduction and the host replay must agree exactly
        raise AssertionError(f"internal error: device margin {margin} != host margin {wc['margin']}")
    return VerifyResult(
        tolerant=margin >= 1, margin=margin, n=n, k=k, b=b,
        patterns_checked=2 ** k - skipped, patterns_skipped=skipped, configurations=red.total,
        column_groups=len(red.columns), row_groups=int(red.Gc.shape[0]),
        pattern=pattern, majority=wc["majority"], byzantine=wc["byzantine"],
        messages=wc["messages"], honest_votes=wc["honest_votes"], vote=wc["vote"])


def replay(G, counterexample: VerifyResult) -> int:
    """Run the worst case through :func:`jax_ec.elect` and return the master's vote (−1, 0 or +1).

    The pattern becomes the ``(k, 1)`` partition gradients, the Byzantine set is the result's, and
    the attack is ``directional`` with ``direction = −µ`` (every Byzantine worker sends ``−µ``).
    For a non-tolerant code the returned vote differs from ``counterexample.majority``.
    """
    from ..election import elect

    if not isinstance(counterexample, VerifyResult):
        raise ValueError(f"counterexample: got {_checks.brief(counterexample)}; expected the VerifyResult of "
                         "verify(G, b)")
    G = validate_allocation(G, n=counterexample.n, k=counterexample.k)
    grads = np.asarray(counterexample.pattern, dtype=np.float32)[:, None]
    vote = elect(G, grads, np.asarray(counterexample.byzantine, dtype=bool), attack="directional",
                 direction=-int(counterexample.majority))
    return int(np.asarray(vote)[0])


def max_tolerance(G) -> int:
    """The largest ``b`` for which ``G`` is perfectly b-tolerant, or −1 if it is not even 0-tolerant
    (:func:`tolerance_text` words it for people).

    Uses ``b``-tolerance ⇔ ``min_m (A − B) >= 2b + 1``; ``min_m (A − B)`` is the margin at ``b = 0``.
    """
    margin0 = verify(G, 0).margin
    return (margin0 - 1) // 2 if margin0 >= 1 else -1


def tolerance_text(b_max: int) -> str:
    """:func:`max_tolerance`'s answer in words: ``"b = 2"``, or that no b (not even 0) is tolerated."""
    return f"b = {b_max}" if b_max >= 0 else "none, not even b = 0 (the vote can be wrong with no Byzantine worker)"


def margin_histogram(G, b: int, *, max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
                     chunk_size: int = _DEFAULT_CHUNK) -> dict[int, float]:
    """Fraction of non-tied sign patterns (uniform over ``{±1}^k``) per worst-case margin value.

    The fraction with margin ``<= 0`` is the exact probability that the strongest ``b``-adversary
    wins when the partition signs are i.i.d. uniform. Float32 per-chunk sums: fractions are exact
    to about 1e-6.
    """
    G, b, red, chunk = _prepare(G, b, max_configurations, chunk_size, True)
    n, k = G.shape
    Gc_t, row_weight, sizes, strides, radices, binary = _device_args(red)
    smax = int(red.sizes.max())
    log_binom = np.full((int(sizes.shape[0]), smax + 1), -np.inf, dtype=np.float64)
    log_binom[:, 0] = 0.0                                  # padded groups: C(0, 0) = 1
    for g, s in enumerate(red.sizes):
        for t in range(s + 1):
            log_binom[g, t] = math.lgamma(s + 1) - math.lgamma(t + 1) - math.lgamma(s - t + 1)
    lo, nbins = -(n + 2 * b), 2 * n + 2 * b + 1
    hist = np.zeros(nbins, dtype=np.float64)
    for start in range(0, red.total, chunk):
        hist += np.asarray(_chunk_hist(jnp.int32(start), Gc_t, row_weight, sizes, strides, radices,
                                       jnp.int32(red.total), jnp.float32(b),
                                       jnp.asarray(log_binom, jnp.float32), lo, chunk=chunk,
                                       binary=binary, nbins=nbins), dtype=np.float64)
    hist /= hist.sum()
    return {lo + i: float(h) for i, h in enumerate(hist) if h > 0}


