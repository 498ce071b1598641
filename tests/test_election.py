"""Tests for jax_ec.election against the loop-based NumPy oracle in tests/reference.py.

Shapes are drawn from a small fixed set so that every jitted function compiles only a few times.
"""

from __future__ import annotations

import zlib
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jax_ec.attacks import VOTE_ATTACKS, attack_messages, binomial_half_sign
from jax_ec.election import corrupt, elect, election, global_vote, local_votes, partition_signs
from reference import reference_elect

# (n, k, d): odd and even k, k < n, k > n, a single worker.
SHAPES = [(5, 5, 7), (7, 4, 9), (6, 9, 8), (1, 3, 5)]
ODD_K_SHAPES = [(5, 5, 7), (6, 9, 8), (7, 3, 6)]
# Values with many exact zeros and opposite signs, so local sums and the master's sum tie often.
TIE_VALUES = [-1.0, 0.0, 1.0]
FEW = settings(max_examples=25, deadline=None)


def random_messages_for(key: jax.Array, G, d: int, attack: str = "random") -> np.ndarray | None:
    """The random attacks' messages exactly as jax_ec.election._elect draws them without noise."""
    n, k = np.shape(G)
    _, attack_key = jax.random.split(key)
    if attack == "random":
        return np.asarray(jax.random.rademacher(attack_key, (n, d), dtype=jnp.float32))
    if attack == "random_per_partition":
        loads = jnp.asarray(np.asarray(G).sum(axis=1))
        return np.asarray(binomial_half_sign(attack_key, loads[:, None], (n, d), k))
    return None


def check_against_reference(G, grads, byz, attack, direction=1, key=None):
    d = np.shape(grads)[1]
    if key is None:
        key = jax.random.PRNGKey(0)
    msgs = random_messages_for(key, G, d, attack)
    got = np.asarray(elect(G, grads, byz, attack, key=key, direction=direction))
    want = reference_elect(G, grads, byz, attack, direction=direction, random_messages=msgs)
    np.testing.assert_array_equal(got, want, err_msg=f"attack={attack} G={G} byz={byz} grads={grads}")
    assert set(np.unique(got)) <= {-1.0, 0.0, 1.0}


# ---------------------------------------------------------------------------------------------
# Differential tests against the reference
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attack", VOTE_ATTACKS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference_seeded_sweep(attack, shape):
    """Bernoulli G over a range of p (incl. empty rows and all-ones), tie-heavy grads, all b."""
    n, k, d = shape
    rng = np.random.default_rng(zlib.crc32(repr((attack, shape)).encode()))
    for trial, p in enumerate([0.0, 0.15, 0.3, 0.5, 0.8, 1.0]):
        G = (rng.random((n, k)) < p).astype(np.int8)
        if trial == 2 and n > 1:
            G[0] = 0  # force an empty worker
        grads = rng.choice(TIE_VALUES, size=(k, d))
        if trial % 2:
            grads = grads * rng.integers(1, 4, size=(k, d))  # magnitudes must not matter
        byz = rng.random(n) < rng.choice([0.0, 0.3, 0.6, 1.0])
        check_against_reference(G, grads, byz, attack, direction=int(rng.choice([-1, 1])),
                                key=jax.random.PRNGKey(trial))


@st.composite
def election_case(draw, shapes=SHAPES):
    n, k, d = draw(st.sampled_from(shapes))
    G = draw(hnp.arrays(np.int8, (n, k), elements=st.integers(0, 1)))
    grads = draw(hnp.arrays(np.float32, (k, d),
                            elements=st.sampled_from([-1.0, 0.0, 1.0, -2.5, 0.25, 1e-30])))
    byz = draw(hnp.arrays(np.bool_, (n,), elements=st.booleans()))
    return G, grads, byz


@FEW
@given(case=election_case(), attack=st.sampled_from(VOTE_ATTACKS), direction=st.sampled_from([-1, 1]),
       seed=st.integers(0, 3))
def test_matches_reference_hypothesis(case, attack, direction, seed):
    G, grads, byz = case
    check_against_reference(G, grads, byz, attack, direction, key=jax.random.PRNGKey(seed))


@pytest.mark.parametrize("attack", VOTE_ATTACKS)
def test_matches_reference_with_shared_noise(attack):
    """noise_model="per_partition": the partition signs are sign(g + σ ξ_j), ξ = normal(noise_key),
    one draw per partition shared by its holders."""
    n, k, d = 5, 5, 7
    rng = np.random.default_rng(7)
    G = (rng.random((n, k)) < 0.5).astype(np.int8)
    grads = rng.normal(size=(k, d)).astype(np.float32)
    byz = np.array([True, False, False, True, False])
    key = jax.random.PRNGKey(11)
    noise_key, _ = jax.random.split(key)
    sigma = np.float32(0.7)
    noisy = np.asarray(grads + sigma * np.asarray(jax.random.normal(noise_key, (k, d), jnp.float32)),
                       dtype=np.float32)
    msgs = random_messages_for(key, G, d, attack)
    got = np.asarray(elect(G, grads, byz, attack, key=key, noise_std=float(sigma), noise_model="per_partition"))
    want = reference_elect(G, noisy, byz, attack, random_messages=msgs)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("attack", VOTE_ATTACKS)
def test_matches_reference_with_per_copy_noise(attack):
    """The default noise model: worker i adds its own ξ_ij = normal(fold_in(fold_in(noise_key, i), j))
    to each partition j it holds; Byzantine workers' messages use the noiseless signs."""
    n, k, d = 6, 5, 9
    rng = np.random.default_rng(8)
    G = (rng.random((n, k)) < 0.5).astype(np.int8)
    G[1] = 1    # a worker holding every partition, and one holding none
    G[2] = 0
    grads = rng.normal(size=(k, d)).astype(np.float32)
    grads[2, 3] = np.nan   # voids the votes of partition 2's holders at coordinate 3 only
    byz = np.array([True, False, False, True, False, True])
    key = jax.random.PRNGKey(12)
    noise_key, attack_key = jax.random.split(key)
    sigma = np.float32(0.9)
    noise = np.stack([np.stack([np.asarray(jax.random.normal(
        jax.random.fold_in(jax.random.fold_in(noise_key, i), j), (d,), jnp.float32)) for j in range(k)])
        for i in range(n)]) * sigma
    msgs = None
    if attack == "random":
        msgs = np.stack([np.asarray(jax.random.rademacher(jax.random.fold_in(attack_key, i), (d,),
                                                          dtype=jnp.float32)) for i in range(n)])
    elif attack == "random_per_partition":
        msgs = np.stack([np.asarray(binomial_half_sign(jax.random.fold_in(attack_key, i), int(G[i].sum()),
                                                       (d,), k)) for i in range(n)])
    got = np.asarray(elect(G, grads, byz, attack, key=key, noise_std=float(sigma)))
    want = reference_elect(G, grads, byz, attack, random_messages=msgs, copy_noise=noise)
    np.testing.assert_array_equal(got, want)


def test_per_copy_noise_is_independent_across_holders():
    """G all ones (15 × 1), g = 0.1, σ = 1: each worker's vote is +1 with probability Φ(0.1)
    independently, so the global vote is +1 with P(Binomial(15, Φ(0.1)) ≥ 8) — not Φ(0.1), which a
    draw shared by the holders would give."""
    from scipy import stats
    d = 200_000
    G = np.ones((15, 1), np.int8)
    grads = np.full((1, d), 0.1, np.float32)
    byz = np.zeros(15, bool)
    p = stats.norm.cdf(0.1)
    want = stats.binom.sf(7, 15, p)            # P(X >= 8)
    shared_want = p
    vote = np.asarray(elect(G, grads, byz, "none", key=jax.random.PRNGKey(0), noise_std=1.0))
    frac = float((vote == 1).mean())
    tol = 4 * np.sqrt(want * (1 - want) / d)
    assert abs(frac - want) < tol, (frac, want)
    assert abs(want - shared_want) > 10 * tol  # the two models are far apart at this d
    shared = np.asarray(elect(G, grads, byz, "none", key=jax.random.PRNGKey(0), noise_std=1.0,
                              noise_model="per_partition"))
    assert abs(float((shared == 1).mean()) - shared_want) < 4 * np.sqrt(p * (1 - p) / d)


def test_random_per_partition_attack_sends_zero_at_even_loads():
    """The CIFAR script's random attack: a Byzantine worker holding L partitions sends the sign of
    L uniform ±1 values; at L = 2 it sends 0 half of the time, at odd L never."""
    from scipy import stats
    d = 100_000
    for L in (1, 2, 3, 4, 33):
        msgs = np.asarray(binomial_half_sign(jax.random.PRNGKey(L), jnp.int32(L), (d,), 40))
        p_zero = stats.binom.pmf(L // 2, L, 0.5) if L % 2 == 0 else 0.0
        assert abs(float((msgs == 0).mean()) - p_zero) < 4 * np.sqrt(max(p_zero * (1 - p_zero), 1e-12) / d) + 1e-9
        assert abs(float((msgs == 1).mean()) - (1 - p_zero) / 2) < 0.01


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

def true_majority(grads: np.ndarray) -> np.ndarray:
    return np.sign(np.sign(grads).sum(axis=0))


@FEW
@given(shape=st.sampled_from([(5, 7), (4, 9), (1, 5)]), data=st.data(), attack=st.sampled_from(VOTE_ATTACKS))
def test_uncoded_without_byzantines_is_signsgd_mv(shape, data, attack):
    k, d = shape
    grads = data.draw(hnp.arrays(np.float32, (k, d), elements=st.sampled_from([-3.0, -1.0, 0.0, 0.5, 2.0])))
    got = elect(np.eye(k, dtype=np.int8), grads, np.zeros(k, bool), attack, key=jax.random.PRNGKey(1))
    np.testing.assert_array_equal(np.asarray(got), true_majority(grads))


@FEW
@given(shape=st.sampled_from([(5, 3, 6), (7, 5, 6), (4, 1, 6)]), data=st.data(),
       attack=st.sampled_from(VOTE_ATTACKS), direction=st.sampled_from([-1, 1]), seed=st.integers(0, 5))
def test_repetition_code_outvotes_minority(shape, data, attack, direction, seed):
    """All-ones G, k odd, b < n/2: every honest worker votes the true majority and wins."""
    n, k, d = shape
    grads = data.draw(hnp.arrays(np.float32, (k, d), elements=st.sampled_from([-2.0, -1.0, 0.5, 3.0])))
    b = data.draw(st.integers(0, (n - 1) // 2))
    byz = np.zeros(n, bool)
    byz[data.draw(st.permutations(range(n)))[:b]] = True
    got = elect(np.ones((n, k), np.int8), grads, byz, attack, key=jax.random.PRNGKey(seed),
                direction=direction)
    want = true_majority(grads)
    assert np.all(want != 0)
    np.testing.assert_array_equal(np.asarray(got), want)


@FEW
@given(case=election_case(), attack=st.sampled_from(VOTE_ATTACKS))
def test_sign_symmetry_without_byzantines(case, attack):
    G, grads, _ = case
    honest = np.zeros(G.shape[0], bool)
    key = jax.random.PRNGKey(3)
    v = np.asarray(elect(G, grads, honest, attack, key=key))
    w = np.asarray(elect(G, -grads, honest, attack, key=key))
    np.testing.assert_array_equal(w, -v)


@FEW
@given(case=election_case(), attack=st.sampled_from(["reverse", "omniscient"]))
def test_sign_symmetry_of_symmetric_attacks(case, attack):
    """reverse and omniscient messages are odd functions of the gradients, so the vote is too."""
    G, grads, byz = case
    v = np.asarray(elect(G, grads, byz, attack))
    w = np.asarray(elect(G, -grads, byz, attack))
    np.testing.assert_array_equal(w, -v)


def test_random_attack_is_reproducible_and_key_dependent():
    n, k, d = 7, 7, 256
    rng = np.random.default_rng(0)
    G = np.eye(n, dtype=np.int8)
    grads = rng.normal(size=(k, d)).astype(np.float32)
    byz = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    a = np.asarray(elect(G, grads, byz, "random", key=jax.random.PRNGKey(5)))
    b = np.asarray(elect(G, grads, byz, "random", key=jax.random.PRNGKey(5)))
    c = np.asarray(elect(G, grads, byz, "random", key=jax.random.PRNGKey(6)))
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


@pytest.mark.parametrize("attack", [a for a in VOTE_ATTACKS if a not in ("none", "stealth")])  # stealth: below
@pytest.mark.parametrize("G_kind", ["uncoded", "bernoulli", "ones"])
def test_every_attack_changes_the_byzantine_message(attack, G_kind):
    n, k, d = 7, 7, 64
    rng = np.random.default_rng(zlib.crc32(repr((attack, G_kind)).encode()))
    grads = jnp.asarray(rng.normal(size=(k, d)), jnp.float32)
    if G_kind == "uncoded":
        G = np.eye(n)
    elif G_kind == "ones":
        G = np.ones((n, k))
    else:  # odd loads, so no local vote is a tie
        G = np.zeros((n, k))
        for i in range(n):
            G[i, rng.choice(k, size=int(rng.choice([1, 3, 5])), replace=False)] = 1
    G = jnp.asarray(G, jnp.float32)
    S = jnp.sign(grads)
    C = local_votes(G, S)
    assert np.all(np.asarray(C) != 0)
    byz = jnp.asarray(rng.random(n) < 0.5).at[0].set(True)
    for direction in (-1, 1):
        msgs = attack_messages(attack, C, S, jax.random.PRNGKey(9), direction, loads=G.sum(axis=1), byzantine=byz)
        sent = np.asarray(corrupt(C, byz, msgs))
        for i in range(n):
            if bool(byz[i]):
                assert np.any(sent[i] != np.asarray(C)[i]), (attack, i)
            else:
                np.testing.assert_array_equal(sent[i], np.asarray(C)[i])
        if attack != "directional":
            break


def test_stealth_attack_overturns_exactly_where_it_can_and_is_honest_elsewhere():
    """Byzantine workers send −v0 where b votes against the no-attack vote v0 reverse or tie it,
    their honest vote elsewhere; so the vote differs from v0 exactly at those coordinates."""
    n, k, d = 9, 9, 400
    rng = np.random.default_rng(5)
    G = jnp.asarray(rng.random((n, k)) < 0.4, jnp.float32)
    S = jnp.asarray(rng.choice(TIE_VALUES, size=(k, d)), jnp.float32)
    C = np.asarray(local_votes(G, S))
    byz = np.zeros(n, bool)
    byz[[1, 4, 6]] = True
    msgs = np.asarray(attack_messages("stealth", jnp.asarray(C), S, None, byzantine=jnp.asarray(byz)))
    v0 = np.sign(C.sum(axis=0))
    honest = C[~byz].sum(axis=0)
    can = (v0 != 0) & (np.sign(honest - 3 * v0) != v0)
    assert 0 < can.sum() < d
    np.testing.assert_array_equal(msgs[:, ~can], C[:, ~can])
    np.testing.assert_array_equal(msgs[:, can], np.broadcast_to(-v0[can], (n, int(can.sum()))))
    v = np.asarray(election(G, S, jnp.asarray(byz), "stealth"))
    np.testing.assert_array_equal(v != v0, can)
    for fused in (False, True):    # the fused form agrees
        np.testing.assert_array_equal(np.asarray(election(G, S, jnp.asarray(byz), "stealth", fused=fused)), v)
    with pytest.raises(ValueError, match="^byzantine: the stealth attack needs the Byzantine set"):
        attack_messages("stealth", jnp.asarray(C), S, None)


# ---------------------------------------------------------------------------------------------
# Computation noise
# ---------------------------------------------------------------------------------------------

def test_noise_requires_key_and_is_reproducible():
    G = np.eye(5, dtype=np.int8)
    grads = np.random.default_rng(1).normal(size=(5, 50)).astype(np.float32)
    byz = np.zeros(5, bool)
    with pytest.raises(ValueError, match="key"):
        elect(G, grads, byz, "none", noise_std=1.0)
    a = elect(G, grads, byz, "none", key=jax.random.PRNGKey(2), noise_std=1.0)
    b = elect(G, grads, byz, "none", key=jax.random.PRNGKey(2), noise_std=1.0)
    c = elect(G, grads, byz, "none", key=jax.random.PRNGKey(3), noise_std=1.0)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.any(np.asarray(a) != np.asarray(c))
    # σ = 0 with a key adds no noise.
    z = elect(G, grads, byz, "none", key=jax.random.PRNGKey(2), noise_std=0.0)
    np.testing.assert_array_equal(np.asarray(z), true_majority(grads))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_noise_std_is_rejected(bad):
    with pytest.raises(ValueError, match="noise_std"):
        elect(np.eye(3), np.ones((3, 2)), np.zeros(3, bool), "none", key=jax.random.PRNGKey(0),
              noise_std=bad)


def test_huge_noise_decouples_vote_from_gradients():
    n, d = 5, 4000
    G = np.eye(n, dtype=np.int8)
    byz = np.zeros(n, bool)
    up = np.ones((n, d), np.float32)
    key = jax.random.PRNGKey(123)
    small = np.asarray(elect(G, up, byz, "none", key=key, noise_std=0.1))
    assert np.all(small == 1)  # small noise: the gradients decide
    v_up = np.asarray(elect(G, up, byz, "none", key=key, noise_std=1e6))
    v_dn = np.asarray(elect(G, -up, byz, "none", key=jax.random.PRNGKey(124), noise_std=1e6))
    # n odd, continuous noise: every vote is ±1 with probability ~1/2 each.
    assert abs(v_up.mean()) < 0.1 and abs(v_dn.mean()) < 0.1
    assert abs((v_up == v_dn).mean() - 0.5) < 0.1


# ---------------------------------------------------------------------------------------------
# The master reads garbage as its sign
# ---------------------------------------------------------------------------------------------

# (float32 subnormals are left out: XLA flushes them to zero, so their sign reads as 0.)
GARBAGE = [np.nan, np.inf, -np.inf, 1e38, -1e38, 3.0, -0.5, 0.0, 1e-30]


@settings(max_examples=40, deadline=None)
@given(C=hnp.arrays(np.float32, (6, 8), elements=st.sampled_from(GARBAGE + [1.0, -1.0])))
def test_global_vote_never_nan(C):
    v = np.asarray(global_vote(jnp.asarray(C)))
    assert not np.any(np.isnan(v))
    assert set(np.unique(v)) <= {-1.0, 0.0, 1.0}
    with np.errstate(invalid="ignore"):
        want = np.sign(np.sign(np.where(np.isnan(C), 0.0, C)).sum(axis=0))
    np.testing.assert_array_equal(v, want)


def test_garbage_counts_as_one_vote():
    C = jnp.asarray([[-1.0, -1.0, 1.0, 0.0]] * 3 + [[1.0, 1.0, 1.0, 1.0]] * 2)
    byz = jnp.asarray([False, False, False, True, True])
    # Rows 3 and 4 are the Byzantine messages; ±inf summed raw would give inf - inf = NaN.
    messages = jnp.asarray([[0.0] * 4] * 3
                           + [[1e38, np.inf, np.nan, np.inf], [1e38, np.inf, np.nan, -np.inf]])
    v = np.asarray(global_vote(corrupt(C, byz, messages)))
    np.testing.assert_array_equal(v, [-1.0, -1.0, 1.0, 0.0])


@pytest.mark.parametrize("fused", [False, True])
def test_election_with_nan_partition_signs_gives_no_nan(fused):
    """A NaN gradient voids the local votes that include it, and no other; the master reads them as 0."""
    G = jnp.asarray(np.eye(3), jnp.float32)
    S = jnp.asarray([[np.nan, 1.0], [1.0, 1.0], [-1.0, 1.0]])
    v = np.asarray(election(G, S, jnp.zeros(3, bool), "none", fused=fused))
    np.testing.assert_array_equal(v, [0.0, 1.0])
    # Workers 1 and 2 hold partition 1 (+1) and partition 2 (+1 at coordinate 0): they are unaffected by
    # partition 0's NaN, which only worker 0 holds.
    G = jnp.asarray([[1, 0, 0], [0, 1, 0], [0, 1, 1]], jnp.float32)
    S = jnp.asarray([[np.nan, -1.0], [1.0, -1.0], [1.0, -1.0]])
    v = np.asarray(election(G, S, jnp.zeros(3, bool), "none", fused=fused))
    np.testing.assert_array_equal(v, [1.0, -1.0])


# ---------------------------------------------------------------------------------------------
# vmap over trials
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attack", VOTE_ATTACKS)
def test_vmap_election_equals_per_item(attack):
    T, n, k, d = 6, 5, 6, 9
    rng = np.random.default_rng(42)
    Gs = jnp.asarray(rng.random((T, n, k)) < 0.4, jnp.float32)
    Ss = jnp.asarray(rng.choice(TIE_VALUES, size=(T, k, d)), jnp.float32)
    byz = jnp.asarray(rng.random((T, n)) < 0.4)
    keys = jax.random.split(jax.random.PRNGKey(0), T)
    fn = partial(election, attack=attack, direction=-1)
    batched = np.asarray(jax.vmap(lambda G, S, b, key: fn(G, S, b, key=key))(Gs, Ss, byz, keys))
    for t in range(T):
        single = np.asarray(fn(Gs[t], Ss[t], byz[t], key=keys[t]))
        np.testing.assert_array_equal(batched[t], single)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

GOOD_G = np.eye(3, dtype=np.int8)
GOOD_GRADS = np.ones((3, 4), np.float32)
GOOD_BYZ = np.zeros(3, bool)


@pytest.mark.parametrize("kwargs, field", [
    (dict(G=[[0, 2, 0], [1, 0, 0], [0, 0, 1]]), "G"),
    (dict(G=[[0.5, 0, 0], [1, 0, 0], [0, 0, 1]]), "G"),
    (dict(G=np.ones(3)), "G"),
    (dict(G=np.ones((1, 3, 3))), "G"),
    (dict(partition_grads=np.ones((4, 4))), "partition_grads"),
    (dict(partition_grads=np.ones(3)), "partition_grads"),
    (dict(byzantine=np.zeros(4, bool)), "byzantine"),
    (dict(byzantine=np.zeros((3, 1), bool)), "byzantine"),
    (dict(byzantine=np.array([0.0, 0.5, 1.0])), "byzantine"),
    (dict(attack="flip"), "attack"),
    (dict(direction=0), "direction"),
    (dict(direction=2), "direction"),
    (dict(attack="random"), "key"),
    (dict(G=None), "G"), (dict(G="abc"), "G"),
    (dict(partition_grads="x"), "partition_grads"), (dict(partition_grads=None), "partition_grads"),
    (dict(partition_grads=[[1, 2], [3]]), "partition_grads"),
    (dict(partition_grads=np.ones((3, 4), complex)), "partition_grads"),
    (dict(byzantine="abc"), "byzantine"), (dict(byzantine=None), "byzantine"),
    (dict(byzantine=np.full(3, np.nan)), "byzantine"),
    (dict(attack=None), "attack"), (dict(attack=1), "attack"),
    (dict(direction=np.array([1, -1])), "direction"), (dict(direction="1"), "direction"),
    (dict(direction=None), "direction"), (dict(direction=1.0), "direction"),
    (dict(attack="random", key="k"), "key"), (dict(attack="random", key=np.arange(3)), "key"),
    (dict(attack="random", key=2 ** 40), "key"), (dict(attack="random", key=-1), "key"),
    (dict(noise_std="a"), "noise_std"), (dict(noise_std=None), "noise_std"),
    (dict(noise_std=np.array([1.0, 2.0])), "noise_std"),
    (dict(noise_model=1), "noise_model"), (dict(noise_model="gauss"), "noise_model"),
])
def test_bad_input_raises_naming_the_field(kwargs, field):
    args = dict(G=GOOD_G, partition_grads=GOOD_GRADS, byzantine=GOOD_BYZ, attack="reverse")
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        elect(**args)


@pytest.mark.parametrize("call, message", [
    (lambda: local_votes("a", jnp.ones((3, 2))), r"^G: got 'a'"),
    (lambda: local_votes(jnp.eye(3), jnp.ones((4, 2))), r"^S: has shape \(4, 2\); expected \(k, d\) with k = 3"),
    (lambda: global_vote([[1, 2]]), r"^C: got \[\[1, 2\]\]"),
    (lambda: partition_signs("a"), r"^partition_grads: got 'a'"),
    (lambda: partition_signs(jnp.ones((3, 2)), "k", 1.0), r"^key: got 'k'"),
    (lambda: election(jnp.eye(3), jnp.ones((3, 2)), jnp.zeros(4, bool), "reverse"), r"^byzantine: has shape \(4,\)"),
    (lambda: election([[1]], [[1.0]], [False], "reverse"), r"^G: got \[\[1\]\]"),
])
def test_jit_safe_functions_check_their_arrays_when_traced(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_input_message_is_one_line_with_the_value():
    with pytest.raises(ValueError) as exc:
        elect(GOOD_G, np.full((3, 4), "a"), GOOD_BYZ)
    message = str(exc.value)
    assert "\n" not in message and "'a'" in message and "real numbers" in message and len(message) < 200


def test_integer_seed_as_key_is_the_prng_key_of_that_seed():
    grads = np.random.default_rng(0).normal(size=(3, 64))
    byz = np.array([True, False, False])
    np.testing.assert_array_equal(np.asarray(elect(GOOD_G, grads, byz, "random", key=7)),
                                  np.asarray(elect(GOOD_G, grads, byz, "random", key=jax.random.PRNGKey(7))))


def test_integer_byzantine_mask_is_accepted():
    got = elect(GOOD_G, GOOD_GRADS, np.array([1, 0, 0]), "reverse")
    want = reference_elect(GOOD_G, GOOD_GRADS, np.array([True, False, False]), "reverse")
    np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("attack", ["none", "reverse", "directional", "omniscient"])
def test_fused_form_equals_the_matmul_form(attack):
    """The unrolled elementwise election gives exactly the votes of sign(G @ S) → replace → vote,
    including ties, empty workers and NaN partition signs."""
    import importlib
    module = importlib.import_module("jax_ec.election")
    rng = np.random.default_rng(7)
    n, k, d = 7, 6, 400
    G = jnp.asarray(rng.random((n, k)) < 0.4, jnp.float32).at[0].set(0.0)     # worker 0 holds nothing
    S = jnp.asarray(rng.choice([-1.0, 0.0, 1.0, np.nan], size=(k, d), p=[0.4, 0.2, 0.38, 0.02]), jnp.float32)
    byz = jnp.asarray(rng.random(n) < 0.4)
    fused = np.asarray(jax.jit(lambda G, S, b: election(G, S, b, attack, None, -1, fused=True))(G, S, byz))
    assert np.array_equal(fused, np.asarray(module.fused_election(G, S, byz, attack, -1)))
    matmul = np.asarray(jax.jit(lambda G, S, b: election(G, S, b, attack, None, -1))(G, S, byz))
    np.testing.assert_array_equal(fused, matmul)
    assert not np.isnan(fused).any() and len(np.unique(fused)) == 3


@pytest.mark.parametrize("attack", ["none", "reverse", "omniscient"])
def test_fused_form_reads_only_the_signs(attack):
    """The trainer hands the fused election raw partition gradients (no sign pass): every value,
    ±0, ±Inf and NaN included, must vote as its sign does."""
    from jax_ec.election import fused_election
    rng = np.random.default_rng(11)
    n, k, d = 9, 7, 500
    G = jnp.asarray(rng.random((n, k)) < 0.5, jnp.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-38, -1e-45, 3.0e38], np.float32)
    g = rng.standard_normal((k, d)).astype(np.float32) * 10.0 ** rng.integers(-30, 30, (k, d))
    g = np.where(rng.random((k, d)) < 0.2, rng.choice(special, (k, d)), g).astype(np.float32)
    byz = jnp.asarray(rng.random(n) < 0.3)
    raw = np.asarray(fused_election(G, jnp.asarray(g), byz, attack, 1))
    signed = np.asarray(fused_election(G, jnp.sign(jnp.asarray(g)), byz, attack, 1))
    np.testing.assert_array_equal(raw, signed)
    assert len(np.unique(raw)) == 3
