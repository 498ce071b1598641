"""Tests for the exact verifier, the deterministic construction and the minimum-redundancy search
(jax_ec.analysis.verify / design / search)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import jax_ec
from jax_ec.analysis.design import deterministic, deterministic_design, repetition
from jax_ec.analysis.search import brute_force_min_ones, min_redundancy
from jax_ec.analysis.verify import margin_histogram, max_tolerance, replay, verify, worst_case

# ---------------------------------------------------------------------------------------------
# Brute-force reference: every pattern, every Byzantine set of size <= b, every message vector
# ---------------------------------------------------------------------------------------------

_MSG = np.array([-1, 0, 1])


def brute_force(G: np.ndarray, b: int) -> tuple[bool, int]:
    """(tolerant, margin) by enumerating patterns × Byzantine subsets (|T| <= b) × messages.

    margin = min over non-tied patterns and all attacks of µ · Σ received votes (the master fails
    iff that is <= 0). No knowledge of the optimal attack is used.
    """
    G = np.asarray(G, dtype=np.int64)
    n, k = G.shape
    # every choice per worker: honest (code 3) or message -1 / 0 / +1 (codes 0, 1, 2), <= b non-honest
    choices = np.array(list(itertools.product(range(4), repeat=n)), dtype=np.int64)
    choices = choices[(choices != 3).sum(axis=1) <= b]
    margin = math.inf
    for bits in itertools.product((-1, 1), repeat=k):
        m = np.array(bits)
        mu = int(np.sign(m.sum()))
        if mu == 0:
            continue
        honest = np.sign(G @ m)
        received = np.where(choices == 3, honest[None, :], _MSG[np.minimum(choices, 2)])
        margin = min(margin, int((mu * received.sum(axis=1)).min()))
    return margin >= 1, int(margin)


def random_codes(seed: int, count: int, n_max: int = 5, k_max: int = 6):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(1, n_max + 1))
        k = int(rng.integers(1, k_max + 1))
        p = rng.uniform(0.2, 0.9)
        G = (rng.random((n, k)) < p).astype(np.int8)
        b = int(rng.integers(0, n))
        yield G, b


# ---------------------------------------------------------------------------------------------
# Verifier
# ---------------------------------------------------------------------------------------------


def test_paper_code_is_1_tolerant_not_2_tolerant_and_the_counterexample_replays():
    G = jax_ec.paper_code_n5()
    one = verify(G, 1)
    assert one.tolerant and one.margin == 1
    assert one.patterns_checked == 32 and one.patterns_skipped == 0
    assert replay(G, one) == one.majority            # the tightest attack still loses

    two = verify(G, 2)
    assert not two.tolerant and two.margin <= 0
    assert two.counterexample is two
    assert two.byzantine.sum() <= 2 and two.byzantine.dtype == bool
    assert set(np.unique(two.pattern)) <= {-1, 1} and two.pattern.shape == (5,)
    assert int(np.sign(two.pattern.sum())) == two.majority
    # the counterexample through the simulator's election: a wrong vote
    vote = replay(G, two)
    assert vote != two.majority and vote == two.vote
    # and by hand through jax_ec.elect with the named attack
    v = jax_ec.elect(G, two.pattern[:, None].astype(np.float32), two.byzantine,
                     attack="directional", direction=-two.majority)
    assert int(np.asarray(v)[0]) != two.majority
    # messages: −µ from the Byzantine workers, the honest vote elsewhere
    np.testing.assert_array_equal(two.messages[two.byzantine], -two.majority)
    np.testing.assert_array_equal(two.messages[~two.byzantine], two.honest_votes[~two.byzantine])
    assert int(np.sign(two.messages.sum())) == vote
    assert max_tolerance(G) == 1


@pytest.mark.parametrize("seed", range(4))
def test_verifier_agrees_with_brute_force_on_random_small_codes(seed):
    for G, b in random_codes(seed, 12):
        res = verify(G, b)
        tolerant, margin = brute_force(G, b)
        assert (res.tolerant, res.margin) == (tolerant, margin), (G.tolist(), b)
        if not res.tolerant:
            assert replay(G, res) != res.majority
            assert res.byzantine.sum() <= b


def test_brute_force_reference_sanity():
    # G = I, n = 3, b = 1: the pattern (+, +, −) gives votes (+, +, −); one flip makes it (−, +, −)
    assert brute_force(np.eye(3, dtype=np.int8), 1) == (False, -1)
    assert brute_force(np.ones((3, 3), dtype=np.int8), 1) == (True, 1)


@pytest.mark.parametrize("n", [3, 4, 5, 8, 9])
def test_uncoded_is_not_tolerant_for_b_at_least_1(n):
    for b in range(1, n):
        res = verify(jax_ec.uncoded(n), b)
        assert not res.tolerant
        assert replay(jax_ec.uncoded(n), res) != res.majority


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 7])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_all_ones_with_odd_k_is_tolerant_iff_b_below_half(n, k):
    G = np.ones((n, k), dtype=np.int8)
    for b in range(n):
        res = verify(G, b)
        assert res.tolerant == (2 * b < n)
        assert res.margin == n - 2 * b                  # every worker votes µ


def test_tolerance_criterion_and_max_tolerance():
    # b-tolerant  <=>  min over patterns of (A − B) >= 2b + 1, i.e. margin at b = 0
    for G, _ in random_codes(7, 25, n_max=7, k_max=7):
        m0 = verify(G, 0).margin
        for b in range(G.shape[0]):
            assert verify(G, b).tolerant == (m0 >= 2 * b + 1)
        assert max_tolerance(G) == ((m0 - 1) // 2 if m0 >= 1 else -1)


def test_even_k_tie_rule_skips_tied_patterns():
    # k = 2: only (+,+) and (−,−) have a majority; (+,−) and (−,+) are skipped
    G = np.ones((3, 2), dtype=np.int8)
    res = verify(G, 1)
    assert res.patterns_checked == 2 and res.patterns_skipped == 2
    assert res.tolerant and res.margin == 1
    # k = 4, a worker holding two partitions can tie on an untied pattern: a 0-vote the
    # adversary may corrupt at cost 1
    G = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=np.int8)
    res = verify(G, 1)
    assert res.patterns_checked == 16 - 6 and res.patterns_skipped == 6
    assert (res.tolerant, res.margin) == brute_force(G, 1)
    with pytest.raises(ValueError, match=r"^pattern"):
        worst_case(G, np.array([1, -1, 1, -1]), 1)


def test_column_collapse_matches_full_enumeration():
    rng = np.random.default_rng(3)
    for _ in range(10):
        n = int(rng.integers(2, 8))
        base = (rng.random((n, int(rng.integers(1, 5)))) < 0.6).astype(np.int8)
        G = base[:, rng.integers(0, base.shape[1], size=int(rng.integers(3, 12)))]  # repeated columns
        G = np.concatenate([G, G[: int(rng.integers(0, n))]], axis=0)               # repeated rows
        for b in range(G.shape[0]):
            a = verify(G, b)
            f = verify(G, b, collapse_columns=False)
            assert (a.tolerant, a.margin, a.patterns_checked) == (f.tolerant, f.margin, f.patterns_checked)
            assert a.configurations <= f.configurations
            assert a.column_groups <= G.shape[1]
            if not a.tolerant:
                assert replay(G, a) != a.majority


def test_column_collapse_makes_many_repeated_columns_cheap():
    # groups of 21, 41 and 1 identical columns: 22 · 42 · 2 / 2 configurations instead of 2^62;
    # two disjoint light sets whose flips cost 11 + 21 > 31 minus signs: cost 2 <= n − 2b − 1
    G = np.zeros((5, 63), dtype=np.int8)
    G[0, :21] = 1
    G[1, 21:62] = 1
    G[2:, :] = 1
    res = verify(G, 1)
    assert res.column_groups == 3 and res.configurations == 22 * 42
    G[1, 61] = 0             # 40 columns: flip row 0 (11) + tie row 1 (20) = 31 minus signs, cost 3
    assert not verify(G, 1).tolerant
    G[1, 61] = 1
    assert res.patterns_checked == 2 ** 63
    assert (res.tolerant, res.margin) == (True, 1)


def test_chunking_does_not_change_the_answer():
    G = jax_ec.bernoulli(1, 9, 4.0)
    ref = verify(G, 1)
    for chunk in (1, 7, 64):
        res = verify(G, 1, chunk_size=chunk)
        assert (res.margin, res.tolerant) == (ref.margin, ref.tolerant)


def test_margin_histogram_is_the_exact_failure_distribution():
    hist = margin_histogram(jax_ec.uncoded(3), 1)
    assert hist == pytest.approx({-1: 0.75, 1: 0.25})
    hist = margin_histogram(jax_ec.paper_code_n5(), 1)
    assert sum(hist.values()) == pytest.approx(1.0)
    assert min(hist) == verify(jax_ec.paper_code_n5(), 1).margin


def test_margin_histogram_matches_enumeration_with_repeated_columns():
    rng = np.random.default_rng(11)
    G = (rng.random((6, 4)) < 0.5).astype(np.int8)[:, [0, 0, 1, 2, 2, 2, 3, 1, 0]]
    b = 1
    expected: dict[int, float] = {}
    pats = [np.array(bits) for bits in itertools.product((-1, 1), repeat=G.shape[1])]
    for m in pats:
        wc = worst_case(G, m, b)
        expected[wc["margin"]] = expected.get(wc["margin"], 0.0) + 1.0 / len(pats)
    assert margin_histogram(G, b) == pytest.approx(expected)


@pytest.mark.parametrize("bad_b", [-1, 5, 7, 1.0, True, "1", None])
def test_verify_rejects_bad_b(bad_b):
    with pytest.raises(ValueError, match=r"^b:"):
        verify(jax_ec.paper_code_n5(), bad_b)


@pytest.mark.parametrize("bad_G", [[[0, 2], [1, 1]], [1, 0, 1], [[1, 0], [1]], np.zeros((0, 3))])
def test_verify_rejects_bad_G(bad_G):
    with pytest.raises(ValueError, match=r"^G:"):
        verify(bad_G, 0)


def test_verify_rejects_bad_options_and_too_many_patterns():
    with pytest.raises(ValueError, match=r"^chunk_size:"):
        verify(jax_ec.paper_code_n5(), 1, chunk_size=0)
    with pytest.raises(ValueError, match=r"^max_configurations:"):
        verify(jax_ec.paper_code_n5(), 1, max_configurations=-3)
    # columns 0 and 3 are equal: groups of 20, 10, 10 columns; all even, so no m ↔ −m halving
    G = np.repeat(np.array([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 1, 1]]), 10, axis=1)
    res = verify(G, 1, max_configurations=21 * 11 * 11)
    assert res.column_groups == 3 and res.configurations == 21 * 11 * 11
    assert res.patterns_checked == 2 ** 40 - math.comb(40, 20)
    with pytest.raises(ValueError, match=r"^G: .*max_configurations"):
        verify(G, 1, max_configurations=2000)
    G = np.eye(30, dtype=np.int8)
    with pytest.raises(ValueError, match=r"^G: .*max_configurations"):
        verify(G, 1)


@pytest.mark.parametrize("call, message", [
    (lambda: worst_case(jax_ec.paper_code_n5(), [1, 1, 1], 1), r"^pattern: got \[1, 1, 1\]; expected \(5,\) signs"),
    (lambda: worst_case(jax_ec.paper_code_n5(), [1, 1, 0, 1, 1], 1), r"^pattern: got"),
    (lambda: worst_case(jax_ec.paper_code_n5(), "+++++", 1), r"^pattern: got '\+\+\+\+\+'"),
    (lambda: replay(jax_ec.paper_code_n5(), None), r"^counterexample: got None; expected the VerifyResult"),
    (lambda: replay(np.eye(3), verify(jax_ec.paper_code_n5(), 2)), r"^G: has 3 rows"),
    (lambda: verify(jax_ec.paper_code_n5(), 1, collapse_columns="no"), r"^collapse_columns: got 'no'"),
])
def test_verify_helpers_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_configurations_count_and_tolerance_in_words():
    from jax_ec.analysis.verify import configurations, tolerance_text
    assert configurations(np.eye(30, dtype=np.int8)) == 2 ** 29       # 30 single columns, one halved
    assert configurations(np.ones((3, 40), dtype=np.int8)) == 41       # one even group of 40 columns
    assert tolerance_text(max_tolerance(jax_ec.paper_code_n5())) == "b = 1"
    G = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.int8)      # a majority of copies of one partition
    assert max_tolerance(G) == -1 and tolerance_text(-1).startswith("none, not even b = 0")


# ---------------------------------------------------------------------------------------------
# Deterministic construction and the repetition baseline
# ---------------------------------------------------------------------------------------------

FAST_NS = list(range(1, 16))


@pytest.mark.parametrize("n", FAST_NS)
def test_deterministic_is_tolerant_with_every_worker_busy(n):
    for b in range((n + 1) // 2):
        d = deterministic_design(n, b)
        G = deterministic(n, b)
        assert G.shape == (n, n) and G.dtype == np.int8
        assert (G.sum(axis=1) >= 1).all(), "every worker holds a partition"
        assert (G.sum(axis=0) >= 1).all(), "every partition is held"
        assert G.sum() == d.ones and jax_ec.redundancy(G) == pytest.approx(d.redundancy)
        res = verify(G, b)
        assert res.tolerant, (n, b, d)
        # the knapsack value of the proof is exactly the verifier's worst 2B + Z
        assert res.margin == n - 2 * b - d.worst_cost
        assert d.worst_cost <= d.budget


@pytest.mark.parametrize("n", [5, 8, 9, 12, 15])
def test_deterministic_idle_variant_is_tolerant_and_not_heavier(n):
    for b in range((n + 1) // 2):
        G = deterministic(n, b, allow_idle=True)
        assert verify(G, b).tolerant
        assert (G.sum(axis=0) >= 1).all()
        assert G.sum() <= deterministic(n, b).sum()
        if n % 2:
            assert jax_ec.redundancy(G) == 2 * b + 1   # the repetition code is optimal here


def test_deterministic_matches_the_paper_redundancy_and_known_optima():
    assert jax_ec.redundancy(deterministic(5, 1)) == pytest.approx(3.8)   # the paper's example
    # exact optima from the integer program (docs/codes.md): r_min * n ones
    for (n, b), ones in {(7, 1): 27, (7, 2): 41, (9, 2): 53, (9, 3): 71, (3, 1): 9}.items():
        assert deterministic(n, b).sum() == ones
    assert np.array_equal(deterministic(6, 0), np.eye(6))


def test_deterministic_is_not_more_tolerant_than_asked():
    for n, b in [(7, 1), (9, 2), (11, 3), (13, 1)]:
        assert not verify(deterministic(n, b), b + 1).tolerant


def exhaustive_design(n: int, b: int, allow_idle: bool) -> tuple:
    """The fewest-ones member of the family by enumerating every multiset E of even light sets
    (knapsack tables, pruned when V_E(β) > T) and every count of idle workers, singletons and
    fixers, checking (2) of jax_ec.analysis.design with the exact knapsack table: exponential in n,
    the oracle of the closed-form search. Ties: fewer idle, more singletons, smaller E.
    Returns (ones, idle, singletons, fixers, E)."""
    from jax_ec.analysis.design import _add_even_set, _value
    k, odd = n, n % 2 == 1
    beta = (k - 1) // 2 if odd else k // 2 - 1
    full_ones, T = (k if odd else k - 1), n - 2 * b - 1
    best = []

    def consider(E, VE):
        for idle in range((T if allow_idle else 0) + 1):
            for x in range(min(k - sum(E), n - len(E) - idle) + 1):
                w_all = n - len(E) - x - idle
                if w_all == 0 and sum(E) + x < k:
                    continue                              # a partition held by nobody
                for phi in range(min(x, w_all) if odd else 0, -1, -1):
                    if _value(VE, beta, x, phi, idle) <= T:
                        ones = w_all * full_ones - phi + sum(E) + x
                        ones += (not odd and not E and x == 0 and w_all > 0)
                        best.append((ones, idle, -x, E, phi))
                        break

    def rec(E, VE, max_size, room):
        consider(E, VE)
        for size in range(min(max_size, room) // 2 * 2, 1, -2):
            V2 = _add_even_set(VE, size)
            if V2[beta] <= T:
                rec(E + (size,), V2, size, room - size)

    rec((), [0] * (beta + 1), k - 1 if odd else k - 2, k)
    ones, idle, minus_x, E, phi = min(best)
    return ones, idle, -minus_x, phi, E


@pytest.mark.parametrize("n", range(1, 23))
def test_deterministic_is_the_exhaustive_optimum_of_its_family(n):
    for b in range((n + 1) // 2):
        for allow_idle in (False, True):
            d = deterministic_design(n, b, allow_idle)
            got = (d.ones, d.idle, d.singletons, d.fixers, d.even_sets)
            assert got == exhaustive_design(n, b, allow_idle), (n, b, allow_idle)


def test_deterministic_design_of_a_large_n_takes_polynomial_work(monkeypatch):
    from jax_ec.analysis import design
    calls = []
    real = design._fixers
    monkeypatch.setattr(design, "_fixers", lambda *a: calls.append(1) or real(*a))
    design._search.cache_clear()
    d = deterministic_design(1001, 1)
    assert len(calls) <= 8          # one vectorised evaluation per candidate (2 regimes x 4 points)
    # the closed form of the design module for odd n, 1 <= b <= (n - 1)/4
    n, b, beta = 1001, 1, 500
    x, y, w = beta - 2 * b, (beta + 2 * b + 1) // 2, -(-(n + 1 + 4 * b) // 4)
    assert d.ones == w * n - min(x, w) + x + 2 * y and d.worst_cost <= d.budget
    calls.clear()
    d_idle = deterministic_design(301, 2, allow_idle=True)
    assert len(calls) <= 8                                 # every count of idle workers at once
    assert d_idle.redundancy == 5 and d_idle.worst_cost <= d_idle.budget


@pytest.mark.parametrize("n, b", [(5, 0), (5, 2), (9, 3), (10, 4)])
def test_repetition_code(n, b):
    G = repetition(n, b)
    assert jax_ec.redundancy(G) == 2 * b + 1
    assert G.sum(axis=1).tolist() == [n] * (2 * b + 1) + [0] * (n - 2 * b - 1)
    res = verify(G, b)
    assert res.tolerant and res.margin == 1
    if 2 * (b + 1) < n:
        assert not verify(G, b + 1).tolerant


def test_draco_group_layout_is_not_tolerant_under_the_election_decoder():
    # 3 groups of 3 workers, group g holds block g of 3 partitions: every worker busy, r = 3
    G = np.kron(np.eye(3, dtype=np.int8), np.ones((3, 3), dtype=np.int8))
    res = verify(G, 1)
    assert not res.tolerant and replay(G, res) != res.majority
    assert not verify(G, 0).tolerant                   # not even without Byzantine workers


@pytest.mark.parametrize("bad", [dict(n=0, b=0), dict(n=5, b=3), dict(n=4, b=2), dict(n=5, b=-1),
                                 dict(n=5.0, b=1), dict(n=5, b=True)])
def test_design_rejects_bad_input(bad):
    field = "n" if not isinstance(bad["n"], int) or bad["n"] < 1 else "b"
    with pytest.raises(ValueError, match=rf"^{field}:"):
        deterministic(**bad)
    with pytest.raises(ValueError, match=rf"^{field}:"):
        repetition(**bad)


# ---------------------------------------------------------------------------------------------
# Minimum-redundancy search
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, k", [(2, 2), (3, 2), (3, 3), (4, 3), (3, 4), (4, 4)])
def test_min_redundancy_agrees_with_brute_force_over_all_matrices(n, k):
    for b in range((n + 1) // 2):
        for allow_idle in (False, True):
            res = min_redundancy(n, b, allow_idle=allow_idle, k=k)
            assert res.optimal
            assert res.ones == brute_force_min_ones(n, b, k, allow_idle)
            assert res.G.shape == (n, k) and verify(res.G, b).tolerant
            assert res.r_min == pytest.approx(res.ones / n)
            assert res.normalized_redundancy == pytest.approx(res.ones / k)
            if not allow_idle:
                assert (res.G.sum(axis=1) > 0).all()


def test_min_redundancy_small_known_values():
    res = min_redundancy(5, 1)
    assert res.optimal and res.r_min == pytest.approx(3.8)       # the paper's code is optimal
    assert min_redundancy(5, 1, allow_idle=True).r_min == pytest.approx(3.0)
    assert min_redundancy(5, 0).r_min == pytest.approx(1.0)
    res = min_redundancy(7, 1)
    assert res.r_min == pytest.approx(27 / 7) and deterministic(7, 1).sum() == res.ones


@pytest.mark.parametrize("bad, field", [(dict(n=0, b=0), "n"), (dict(n=5, b=3), "b"),
                                        (dict(n=5, b=-1), "b"), (dict(n=5, b=1, k=13), "k"),
                                        (dict(n=5, b=1, k=0), "k"), (dict(n=5, b=1, time_limit=0), "time_limit"),
                                        (dict(n="5", b=1), "n"), (dict(n=13, b=1), "n"),
                                        (dict(n=5, b=1, allow_idle="yes"), "allow_idle"),
                                        (dict(n=5, b=1, upper_bound=-1), "upper_bound"),
                                        (dict(n=5, b=1, time_limit=float("nan")), "time_limit")])
def test_min_redundancy_rejects_bad_input(bad, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        min_redundancy(**bad)
