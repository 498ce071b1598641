"""Tests for jax_ec.analysis.bernoulli: Monte Carlo failure estimates against exact enumeration,
load concentration against Hoeffding, the smallest-p bisection, reproducibility and input errors.

Shapes and static settings are drawn from a small fixed set, so the whole file compiles only a few
jitted functions.
"""

from __future__ import annotations

import itertools
import math

import jax
import numpy as np
import pytest

from jax_ec.analysis.bernoulli import (ATTACK_NAMES, Estimate, draw_trials,
                                       exact_expected_failure_probability, exact_failure_probability,
                                       failure_probability, hoeffding_bound, load_deviation,
                                       load_deviation_curve, load_deviation_exact, smallest_p)
from reference import reference_elect

KEY = jax.random.PRNGKey(2020)
# Statistical comparisons use 99.9% intervals, so that they do not hinge on the seed (the 95% ones
# are calibrated: over 60 seeds |z| > 1.96 in 2-3% of runs).
LEVEL = 0.999
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# Monte Carlo against exact enumeration
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attack, sign_model, placement, nonempty_rows", [
    ("reverse", "uniform", "uniform", False),
    ("random", ("correct", 0.7), "uniform", False),
    ("worst_case", "uniform", "uniform", True),
])
def test_monte_carlo_matches_exact_expectation_over_all_codes_n3(attack, sign_model, placement,
                                                                 nonempty_rows):
    """n = k = 3: E_G of the exact per-code probability, enumerating all 2^9 codes (only those without
    an empty row, renormalised, for nonempty_rows), lies in the CI."""
    n, p, b = 3, 0.5, 1
    kwargs = dict(sign_model=sign_model, placement=placement, nonempty_rows=nonempty_rows)
    est = failure_probability(KEY, n, p, b, attack, draws=4000, patterns_per_draw=16, level=LEVEL, **kwargs)
    exact = exact_expected_failure_probability(n, p, b, attack, **kwargs)
    if nonempty_rows:
        assert exact < exact_expected_failure_probability(n, p, b, attack, sign_model=sign_model)
        G, _ = draw_trials(KEY, n, p, b, draws=4000, nonempty_rows=True)
        assert (G.sum(axis=2) > 0).all()
    assert est.trials == 4000 * 16
    assert est.ci_low <= exact <= est.ci_high, (est, exact)
    assert est.ci_high - est.ci_low < 0.05


def test_monte_carlo_matches_exact_on_the_same_draws_n5():
    """n = k = 5: averaging the exact per-code probability over the very codes and Byzantine sets the
    Monte Carlo used leaves only the pattern-sampling error, well inside the CI over draws."""
    n, p, b, draws = 5, 0.4, 1, 1000
    kwargs = dict(attack="omniscient", sign_model="correct:0.7", placement="most_loaded")
    est = failure_probability(KEY, n, p, b, draws=draws, patterns_per_draw=64, **kwargs)
    G, byz = draw_trials(KEY, n, p, b, draws=draws, placement="most_loaded")
    assert G.shape == (draws, n, n) and byz.shape == (draws, n)
    assert (byz.sum(axis=1) == b).all()
    loads = G.sum(axis=2)
    assert (np.where(byz, loads, np.inf).min(axis=1) >= np.where(byz, -np.inf, loads).max(axis=1)).all()
    exact_per_draw = exact_failure_probability(G, b, byzantine=byz, **kwargs)
    # most_loaded without explicit masks picks the same sets
    np.testing.assert_allclose(exact_failure_probability(G, b, **kwargs), exact_per_draw)
    exact_mean = float(exact_per_draw.mean())
    assert est.ci_low <= exact_mean <= est.ci_high
    # The remaining error is pattern sampling only: binomial-sized over all 64,000 pairs.
    assert abs(est.mean - exact_mean) < 3 * math.sqrt(0.25 / est.trials)


def test_exact_agrees_with_loop_reference_per_pattern():
    """exact_failure_probability (NumPy, independent of the election module) against the loop oracle
    of tests/reference.py: one code, one Byzantine set, every pattern of k = 5 signs."""
    rng = np.random.default_rng(7)
    k = 5
    patterns = np.array(list(itertools.product([-1.0, 1.0], repeat=k))).T  # (k, 32)
    truth = np.sign(patterns.sum(axis=0))
    for trial in range(6):
        n = 4 + trial % 3
        G = (rng.random((n, k)) < 0.5).astype(np.int8)
        byz = np.zeros(n, dtype=bool)
        byz[rng.choice(n, size=1 + trial % 2, replace=False)] = True
        for attack in ("none", "reverse", "directional", "omniscient", "stealth"):
            votes = reference_elect(G, patterns, byz, attack, direction=-1)
            want = np.mean((votes != truth) | (votes == 0))
            got = exact_failure_probability(G, int(byz.sum()), attack, byzantine=byz, direction=-1)
            assert got == pytest.approx(want, abs=1e-12), (attack, G, byz)


def test_worst_case_is_the_strongest_adversary():
    """The greedy worst case equals brute force over every Byzantine set (all voting −µ), and no
    placed attack fails more often."""
    rng = np.random.default_rng(11)
    n, k, b = 5, 5, 2
    S = np.array(list(itertools.product([-1, 1], repeat=k))).T
    mu = np.sign(S.sum(axis=0))
    for _ in range(5):
        G = (rng.random((n, k)) < 0.5).astype(np.int8)
        C = np.sign(G.astype(int) @ S)
        brute = np.zeros(S.shape[1], dtype=bool)
        for size in range(b + 1):
            for combo in itertools.combinations(range(n), size):
                corrupted = C.copy()
                corrupted[list(combo)] = -mu
                total = corrupted.sum(axis=0)
                brute |= (np.sign(total) != mu) | (total == 0)
        worst = exact_failure_probability(G, b, "worst_case")
        assert worst == pytest.approx(brute.mean())
        for attack in ("reverse", "directional", "random", "omniscient", "stealth"):
            for placement in ("uniform", "most_loaded"):
                assert exact_failure_probability(G, b, attack, placement=placement) <= worst + 1e-12


def test_even_k_tie_rule():
    """With G all ones and no attack the master outputs µ, so with k = 4 the failures are exactly the
    patterns with µ = 0: C(4, 2) / 2^4 = 0.375 (a tie counts as a failure)."""
    assert exact_failure_probability(np.ones((3, 4)), 0, "none") == pytest.approx(0.375)
    est = failure_probability(KEY, 3, 1.0, 0, "none", k=4, draws=400, patterns_per_draw=64, level=LEVEL)
    assert est.ci_low <= 0.375 <= est.ci_high


def test_correct_model_weights_patterns_by_q():
    """Uncoded single worker (G = [[1]]), no attack: failure = P(s = −1) = 1 − q."""
    for q in (0.0, 0.3, 0.9):
        assert exact_failure_probability(np.ones((1, 1)), 0, "none", ("correct", q)) == pytest.approx(1 - q)


# ---------------------------------------------------------------------------------------------
# Common random numbers, reproducibility, the interval
# ---------------------------------------------------------------------------------------------

# One static setting (n = 15, reverse, 200 draws × 64 patterns) shared by the next three tests.
N15 = dict(n=15, b=2, attack="reverse", draws=200, patterns_per_draw=64)


def test_common_random_numbers_nest_codes_and_failure_decreases_in_p():
    G_lo, byz_lo = draw_trials(KEY, 15, 0.2, 2, draws=50)
    G_hi, byz_hi = draw_trials(KEY, 15, 0.6, 2, draws=50)
    assert (G_lo <= G_hi).all() and G_hi.sum() > G_lo.sum()
    np.testing.assert_array_equal(byz_lo, byz_hi)
    ps = np.round(np.arange(0.1, 1.01, 0.1), 2)
    means = [failure_probability(KEY, p=float(p), **N15).mean for p in ps]
    assert all(np.diff(means) <= 0), dict(zip(ps, means))
    assert means[0] > 0.1 and means[-1] == 0.0


def test_same_seed_same_numbers_and_draws_are_prefix_stable():
    a = failure_probability(KEY, p=0.3, **N15)
    assert isinstance(a, Estimate) and 0 < a.ci_low < a.mean < a.ci_high < 1
    assert failure_probability(KEY, p=0.3, **N15) == a
    assert failure_probability(2020, p=0.3, **N15) == a  # an integer seed means PRNGKey(seed)
    assert failure_probability(jax.random.PRNGKey(1), p=0.3, **N15) != a
    G50, byz50 = draw_trials(KEY, 15, 0.3, 2, draws=50)
    G200, byz200 = draw_trials(KEY, 15, 0.3, 2, draws=200)
    np.testing.assert_array_equal(G200[:50], G50)
    np.testing.assert_array_equal(byz200[:50], byz50)


def test_interval_without_any_failure_is_a_clopper_pearson_bound_over_draws():
    # G = all ones (p = 1): every worker votes µ, 13 honest against 2 reversed votes never fail.
    est = failure_probability(KEY, p=1.0, **N15)
    assert est.mean == 0.0 and est.ci_low == 0.0
    assert est.ci_high == pytest.approx(1 - 0.025 ** (1 / 200))


# ---------------------------------------------------------------------------------------------
# Smallest p
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow   # a whole run; the default set keeps a shorter one of its kind
def test_smallest_p_brackets_the_target_and_decreases_with_n():
    target, bits = 0.05, 7
    kwargs = dict(target=target, b_fraction=0.2, sign_model=("correct", 0.75), draws=128,
                  patterns_per_draw=128, resolution_bits=bits)
    ps = {}
    for n in (11, 21, 41):
        p = smallest_p(KEY, n, **kwargs)
        b = int(0.2 * n)
        ps[n] = p
        assert 0 < p <= 1 and (p * 2**bits).is_integer()
        common = dict(sign_model=("correct", 0.75), draws=128, patterns_per_draw=128)
        assert failure_probability(KEY, n, p, b, **common).mean <= target
        assert failure_probability(KEY, n, p - 2.0**-bits, b, **common).mean > target
    assert ps[11] > ps[21] > ps[41], ps
    # unreachable: with b = 6 of 11 reversed votes, p = 1 fails whenever the partitions' majority is right
    unreachable = dict(kwargs, b_fraction=None, b=6)
    assert math.isnan(smallest_p(KEY, 11, **unreachable))


# ---------------------------------------------------------------------------------------------
# Load concentration
# ---------------------------------------------------------------------------------------------

def test_load_deviation_respects_hoeffding_and_matches_the_binomial_tail():
    n, p = 101, 0.2
    eps_grid = [0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2]
    estimates = load_deviation_curve(KEY, n, p, eps_grid, draws=1000, level=LEVEL)
    for eps, est in zip(eps_grid, estimates):
        assert est.trials == 1000 * n
        assert est.ci_low <= hoeffding_bound(n, eps), (eps, est)
        exact = load_deviation_exact(n, p, eps)
        assert est.ci_low <= exact <= est.ci_high, (eps, est, exact)
    assert load_deviation(KEY, n, p, 0.06, draws=1000, level=LEVEL) == estimates[2]
    assert [e.mean for e in estimates] == sorted((e.mean for e in estimates), reverse=True)


# ---------------------------------------------------------------------------------------------
# Input errors name the field
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    (dict(p=-0.1), "p"), (dict(p=1.5), "p"), (dict(p=float("nan")), "p"), (dict(p="0.3"), "p"),
    (dict(b=5), "b"), (dict(b=-1), "b"), (dict(n=0), "n"),
    (dict(attack="flip"), "attack"), (dict(sign_model="gauss"), "sign_model"),
    (dict(sign_model=("correct", 1.5)), "sign_model q"), (dict(sign_model="correct:x"), "sign_model"),
    (dict(placement="per_step"), "placement"), (dict(draws=1), "draws"),
    (dict(patterns_per_draw=0), "patterns_per_draw"), (dict(direction=0), "direction"),
    (dict(key="seed"), "key"), (dict(k=0), "k"),
])
def test_failure_probability_rejects_bad_inputs(kwargs, field):
    args = dict(key=KEY, n=5, p=0.3, b=1, draws=4, patterns_per_draw=4) | kwargs
    with pytest.raises(ValueError, match=rf"^{field}:"):
        failure_probability(**args)


@pytest.mark.parametrize("call, field", [
    (lambda: smallest_p(KEY, 5, 0.0, b=1), "target"),
    (lambda: smallest_p(KEY, 5, 1.0, b=1), "target"),
    (lambda: smallest_p(KEY, 5, 0.1), "b"),
    (lambda: smallest_p(KEY, 5, 0.1, b=1, b_fraction=0.2), "b"),
    (lambda: smallest_p(KEY, 5, 0.1, b_fraction=1.2), "b_fraction"),
    (lambda: smallest_p(KEY, 5, 0.1, b=1, resolution_bits=0), "resolution_bits"),
    (lambda: load_deviation(KEY, 5, 0.3, 0.0), "eps"),
    (lambda: load_deviation(KEY, 5, 1.3, 0.1), "p"),
    (lambda: exact_failure_probability(np.ones((2, 17)), 0), "G"),
    (lambda: exact_failure_probability(np.full((2, 3), 2), 0), "G"),
    (lambda: exact_failure_probability(np.ones((3, 3)), 3), "b"),
    (lambda: exact_failure_probability(np.ones((3, 3)), 1, "flip"), "attack"),
    (lambda: exact_expected_failure_probability(5, 0.3, 1), "n"),
    (lambda: exact_expected_failure_probability(3, -1, 1), "p"),
    (lambda: exact_expected_failure_probability(3, 0.5, 1, nonempty_rows="no"), "nonempty_rows"),
    (lambda: exact_failure_probability([[1, 0], [1]], 0), "G"),
    (lambda: exact_failure_probability("abc", 0), "G"),
    (lambda: failure_probability(KEY, 15, 0.001, 1, nonempty_rows=True, draws=4), "nonempty_rows"),
    (lambda: failure_probability(KEY, 15, 0.3, 1, nonempty_rows=1, draws=4), "nonempty_rows"),
    (lambda: failure_probability(KEY, 20000, 0.3, 1, draws=4), "n"),
    (lambda: smallest_p(KEY, 5, 0.1, b=1, nonempty_rows="yes"), "nonempty_rows"),
    (lambda: smallest_p(KEY, 50000, 0.1, b=1), "n"),
    (lambda: load_deviation(KEY, 20000, 0.3, 0.1), "n"),
    (lambda: load_deviation_curve(KEY, 5, 0.3, []), "eps"),
    (lambda: load_deviation_curve(KEY, 5, 0.3, "0.1"), "eps"),
    (lambda: load_deviation_curve(KEY, 5, 0.3, [0.1, float("nan")]), "eps"),
    (lambda: load_deviation_exact(0, 0.3, 0.1), "n"),
    (lambda: load_deviation_exact(5, 1.3, 0.1), "p"),
    (lambda: load_deviation_exact(5, 0.3, -0.1), "eps"),
    (lambda: hoeffding_bound(0, 0.1), "n"),
    (lambda: hoeffding_bound(5, [0.1, -1.0]), "eps"),
    (lambda: hoeffding_bound(5, "x"), "eps"),
    (lambda: draw_trials(KEY, 5, 0.3, 1, nonempty_rows="yes"), "nonempty_rows"),
])
def test_other_functions_reject_bad_inputs(call, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        call()


def test_smallest_p_with_nonempty_rows_starts_where_redraws_stay_bounded():
    from jax_ec.codes import min_nonempty_p
    # a target every p meets: the search returns its lowest admissible grid point, without
    # evaluating p = 0 (which would redraw for ever)
    p = smallest_p(KEY, 5, 0.999, b=0, attack="none", draws=2, patterns_per_draw=2, nonempty_rows=True)
    assert p == math.ceil(min_nonempty_p(5, 5) * 2 ** 10) / 2 ** 10 and 0 < p < 0.05


def test_attack_names_include_every_election_attack_and_the_worst_case():
    from jax_ec.attacks import ATTACKS, VOTE_ATTACKS
    assert set(VOTE_ATTACKS) < set(ATTACK_NAMES) and "worst_case" in ATTACK_NAMES
    assert not set(ATTACK_NAMES) & (set(ATTACKS) - set(VOTE_ATTACKS))   # the real-valued-only attacks
