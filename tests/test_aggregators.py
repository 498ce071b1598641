"""Real-valued baselines and scheme options against plain NumPy loops."""

from __future__ import annotations

import csv
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_ec.aggregators import aggregate, repetition_groups, repetition_weights, sanitize, worker_means
from jax_ec.attacks import real_attack_messages
from jax_ec.codes import draco, redundancy
from jax_ec.config import ConfigError, config_from_dict
from jax_ec.core import batch_rows, partition_grads
from jax_ec.plan import make_schemes
from jax_ec.tasks import make_task

from builders import build, device_data


def reference_worker_means(G, grads):
    n, k = G.shape
    out = np.zeros((n, grads.shape[1]))
    for i in range(n):
        held = [j for j in range(k) if G[i, j]]
        for j in held:
            out[i] += grads[j]
        if held:
            out[i] /= len(held)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_worker_means_median_mean_match_loops(seed):
    rng = np.random.default_rng(seed)
    G = (rng.random((7, 5)) < 0.4).astype(np.int8)
    grads = rng.normal(size=(5, 11)).astype(np.float32)
    M = np.asarray(worker_means(jnp.asarray(G, jnp.float32), jnp.asarray(grads)))
    np.testing.assert_allclose(M, reference_worker_means(G, grads), rtol=1e-5, atol=1e-6)
    med = [sorted(M[:, c])[3] for c in range(11)]  # n = 7: the middle value
    np.testing.assert_allclose(np.asarray(aggregate("median", jnp.asarray(M))), med, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(aggregate("mean", jnp.asarray(M))), M.mean(0), rtol=1e-5, atol=1e-6)


def test_draco_layout_and_repetition_decoding():
    G = draco(7, 1)  # groups of sizes 4 and 3
    assert [len(g) for g in repetition_groups(G)] == [4, 3]
    assert redundancy(G) == (16 + 9) / 7
    np.testing.assert_array_equal(draco(9, 1), np.kron(np.eye(3), np.ones((3, 3))))
    with pytest.raises(ValueError, match="^b"):
        draco(4, 2)
    # One liar per group cannot move the group median; the result is the mean of the group values
    # weighted by the groups' numbers of partitions (4 and 3): the mean over the 7 partitions.
    M = np.array([[1.0], [1.0], [-50.0], [1.0], [3.0], [3.0], [99.0]])
    assert repetition_weights(G) == (4, 3)
    out = aggregate("repetition", jnp.asarray(M), repetition_groups(G), repetition_weights(G))
    assert float(out[0]) == pytest.approx((4 * 1.0 + 3 * 3.0) / 7)


def test_repetition_with_unequal_groups_against_a_loop():
    """paper_n5's groups are {0} (1 partition), {1} (3) and {2, 3, 4} (5): a loop over groups."""
    from jax_ec.codes import paper_code_n5
    G = paper_code_n5()
    rng = np.random.default_rng(3)
    M = rng.normal(size=(5, 6)).astype(np.float32)
    groups, weights = repetition_groups(G), repetition_weights(G)
    assert groups == ((0,), (1,), (2, 3, 4)) and weights == (1, 3, 5)
    want = np.zeros(6)
    for g, w in zip(groups, weights):
        want += w * np.median(M[list(g)], axis=0)
    want /= sum(weights)
    np.testing.assert_allclose(np.asarray(aggregate("repetition", jnp.asarray(M), groups, weights)), want,
                               rtol=1e-5, atol=1e-6)


def test_real_attacks_and_garbage():
    M = jnp.arange(6.0).reshape(2, 3)
    grads = jnp.ones((4, 3))
    np.testing.assert_array_equal(real_attack_messages("reverse", M, grads, None), -M)
    np.testing.assert_array_equal(real_attack_messages("directional", M, grads, None, -1), -jnp.ones((2, 3)))
    np.testing.assert_array_equal(real_attack_messages("omniscient", M, grads, None), -jnp.ones((2, 3)))
    r = real_attack_messages("random", M, grads, jax.random.PRNGKey(0))
    assert r.shape == M.shape and not np.array_equal(np.asarray(r), np.asarray(M))
    garbage = jnp.array([[jnp.nan, jnp.inf, 1.0], [2.0, 2.0, 2.0], [3.0, -jnp.inf, 3.0]])
    assert np.isfinite(np.asarray(sanitize(garbage))).all()
    np.testing.assert_array_equal(np.asarray(aggregate("median", garbage)), [2.0, 2.0, 2.0])


def config(**scheme):
    return config_from_dict(dict(
        n=5, b=1, attack="reverse", partitioning="split", batch_size=40, steps=3, eval_every=3,
        optim=dict(lr=0.1, lr_boundaries=[], worker_momentum=0.0),
        task=dict(name="synthetic", num_samples=200, num_features=6, num_classes=3, hidden=[8]),
        schemes=[dict(name="s", **scheme)]))


@pytest.mark.parametrize("aggregator", ["median", "mean", "signed_sum"])
def test_baseline_step_matches_loop(aggregator):
    cfg = config(code="bernoulli", r=2.0, aggregator=aggregator)
    task = make_task(cfg.task)
    train, params, scheme, _ = build(cfg, "s", task)
    data = device_data(task)
    state = train.init(jax.random.PRNGKey(2), params)
    rows = np.asarray(batch_rows(scheme.static, task.num_train, state.keys.data, state.step))
    grads = np.asarray(partition_grads(task.loss, state.params, state.model_state, data[0][rows], data[1][rows],
                                       jax.random.fold_in(state.keys.augment, 0))[0], np.float64)
    G, byz = np.asarray(state.G), np.asarray(state.byzantine)
    if aggregator == "signed_sum":
        local = np.sign(G @ grads)
        local[byz] = -local[byz]
        expected = np.sign(np.sign(local).sum(0))
        np.testing.assert_array_equal(np.asarray(train.update(state, params, data)[0]), expected)
    else:
        M = reference_worker_means(G, grads)
        M[byz] = -M[byz]
        expected = np.median(M, axis=0) if aggregator == "median" else M.mean(0)
        np.testing.assert_allclose(np.asarray(train.update(state, params, data)[0]), expected, rtol=1e-4, atol=1e-6)
    assert scheme.bits_per_coordinate == (1 if aggregator == "signed_sum" else 32)


def test_reduced_minibatch_is_a_smaller_batch_with_more_steps():
    """ρ = 0.5 as the authors ran it: a minibatch of ρ·B = 20 samples (4 per partition), twice the
    steps per epoch of ρ = 1, the milestones (in epochs) at twice the steps, and ρ of the clock."""
    cfg = config_from_dict(dict(
        n=5, b=1, attack="reverse", partitioning="split", batch_size=40, epochs=2, eval_every_epochs=0.5,
        optim=dict(lr=0.1, lr_boundaries=[1], worker_momentum=0.0),
        task=dict(name="synthetic", num_samples=400, num_features=6, num_classes=3, hidden=[8]),
        schemes=[dict(name="mv", code="uncoded"), dict(name="s", code="bernoulli", r=2.5, rho=0.5)]))
    from jax_ec.plan import iteration_time
    task = make_task(cfg.task)
    full, half = make_schemes(cfg, task.num_train)
    assert (full.static.steps_per_epoch, half.static.steps_per_epoch) == (10, 20)
    assert (full.total_steps, half.total_steps) == (20, 40)
    assert (full.params.lr_boundaries.tolist(), half.params.lr_boundaries.tolist()) == ([10], [20])
    assert (full.static.batch, half.static.per_partition) == (40, 4)
    rows = np.asarray(batch_rows(half.static, task.num_train, jax.random.PRNGKey(0), jnp.int32(1)))
    np.testing.assert_array_equal(rows, 20 + np.arange(20).reshape(5, 4))
    # Both schemes are evaluated at the same epochs (every half epoch).
    np.testing.assert_array_equal(np.array(full.eval_steps) / 10, np.array(half.eval_steps) / 20)
    assert half.eval_steps == (0, 10, 20, 30, 40)
    G = np.ones((5, 5))
    assert iteration_time(half, G, 100) == 5 * 0.5
    # Per epoch the clock agrees: twice the steps at half the time each.
    assert (iteration_time(half, G, 100) * half.static.steps_per_epoch
            == iteration_time(full, G, 100) * full.static.steps_per_epoch)
    with pytest.raises(ConfigError, match=r"^schemes\[0\]\.rho"):
        config(code="uncoded", rho=0.3)   # 0.3 × 40 = 12 samples do not split into 5 partitions
    with pytest.raises(ConfigError, match=r"^schemes\[0\]\.rho"):
        config(code="uncoded", rho=1.5)
    with pytest.raises(ConfigError, match=r"^schemes\[0\]\.aggregator"):
        config(code="bernoulli", r=2.0, aggregator="repetition")
    with pytest.raises(ConfigError, match=r"^schemes\[0\]\.aggregator"):
        config(code="uncoded", aggregator="bulyan")


def test_per_scheme_noise_and_lr_override_the_experiment():
    cfg = config(code="uncoded", noise_std=0.5, lr=0.3)
    (scheme,) = make_schemes(cfg, 200)
    assert float(scheme.params.noise_std) == 0.5 and scheme.params.lr.tolist() == [np.float32(0.3)]
    assert scheme.static.noise == "per_copy"
    with pytest.raises(ConfigError, match=r"^schemes\[0\]\.lr"):
        config(code="uncoded", lr=0.0)


def test_a_fixed_code_facing_more_byzantines_than_it_tolerates_warns_with_a_counterexample():
    from jax_ec.plan import ToleranceWarning
    base = dict(n=5, attack="reverse", partitioning="split", batch_size=40, steps=1, eval_every=1,
                task=dict(name="synthetic", num_samples=200, num_features=6, num_classes=3, hidden=[8]),
                schemes=[dict(name="paper", code="paper_n5")])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 1-tolerant: no warning
        make_schemes(config_from_dict({**base, "b": 1}), 200)
    with pytest.warns(ToleranceWarning, match=r"not perfectly b-tolerant for b = 2.*counterexample: partition signs"):
        make_schemes(config_from_dict({**base, "b": 2}), 200)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 14, 15, 16, 31, 65])
def test_median_network_equals_jnp_median(n):
    """The sorting-network median gives jnp.median's values (the middle value; for an even count
    the mean of the two middle ones) on finite input, what the aggregators pass it after
    sanitizing (ties, zeros, huge values)."""
    from jax_ec.aggregators import median_rows
    rng = np.random.default_rng(n)
    M = rng.normal(size=(n, 3000)).astype(np.float32) * np.float32(10.0) ** rng.integers(-30, 30, size=(n, 3000))
    M = np.where(rng.random((n, 3000)) < 0.1, rng.choice([0.0, 3.4e37, -3.4e37, 1.0], size=(n, 3000)), M)
    M = np.where(rng.random((n, 3000)) < 0.3, np.round(M), M).astype(np.float32)
    got = np.asarray(jax.jit(median_rows)(jnp.asarray(M)))
    want = np.asarray(jnp.median(jnp.asarray(M), axis=0))
    np.testing.assert_array_equal(got, want)
    # Near the largest float jnp.median's interpolation overflows to ±Inf; the network keeps the value.
    from jax_ec.aggregators import MEDIAN_NETWORK_MAX_ROWS
    if n <= MEDIAN_NETWORK_MAX_ROWS:
        big = np.full((n, 4), np.finfo(np.float32).max, np.float32)
        np.testing.assert_array_equal(np.asarray(median_rows(jnp.asarray(big))), big[0])


# ------------------------------------------------------------------------------------------------
# Robust aggregators and the attacks built on honest messages (issue 16), against NumPy loops


ROBUST = ("trimmed_mean", "krum", "multi_krum", "nnm")


def _robust(name, M, f):
    from jax_ec.aggregators import nnm
    return nnm(M, f) if name == "nnm" else aggregate(name, M, f=f)


def _reference(name, M, f):
    from reference_robust import reference_krum, reference_multi_krum, reference_nnm, reference_trimmed_mean
    return {"trimmed_mean": reference_trimmed_mean, "krum": reference_krum, "multi_krum": reference_multi_krum,
            "nnm": reference_nnm}[name](M, f)


def _inputs(seed, n, d, ties):
    """Random messages; with ``ties``, small integers and repeated rows, so that distances and
    scores tie exactly and the lower-index rule decides."""
    rng = np.random.default_rng(seed)
    if not ties:
        return rng.normal(size=(n, d)).astype(np.float32)
    M = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    M[rng.integers(0, n, size=n // 2)] = M[rng.integers(0, n, size=n // 2)]
    return M


def _all_robust(M, f):
    return {name: _robust(name, M, f) for name in ROBUST}


@pytest.mark.parametrize("n,d,ties", [(5, 3, False), (7, 4, True), (8, 5, True)])
def test_robust_aggregators_match_loops(n, d, ties):
    """Every f with 2f < n, through one jitted function of a traced f (one trace serves every f)."""
    traces = []

    @jax.jit
    def run(M, f):
        traces.append(1)
        return _all_robust(M, f)

    for seed in range(2):
        M = _inputs(seed, n, d, ties)
        for f in range((n + 1) // 2):
            got = run(jnp.asarray(M), jnp.int32(f))
            for name in ROBUST:
                np.testing.assert_allclose(np.asarray(got[name]), _reference(name, M, f), rtol=1e-5, atol=1e-6,
                                           err_msg=f"{name} f={f} seed={seed}")
    assert len(traces) == 1


def test_robust_aggregators_vmap_over_messages_and_f():
    """A batch of (messages, f) pairs under vmap equals the loops pair by pair (the trainer vmaps
    the schemes of a sweep over b)."""
    Ms = np.stack([_inputs(s, 7, 5, ties=s % 2 == 1) for s in range(4)])
    fs = np.array([0, 1, 2, 3], np.int32)
    batched = jax.jit(jax.vmap(_all_robust))(jnp.asarray(Ms), jnp.asarray(fs))
    for name in ROBUST:
        for M, f, got in zip(Ms, fs, np.asarray(batched[name])):
            np.testing.assert_allclose(got, _reference(name, M, int(f)), rtol=1e-5, atol=1e-6, err_msg=name)


def test_nnm_composes_and_a_concrete_f_is_checked():
    """``nnm+X`` is X on the mixed messages (tests/test_zoo_byzfl.py checks every X against ByzFL)."""
    from jax_ec.aggregators import NNM_AGGREGATORS, nnm
    M = jnp.asarray(_inputs(3, 7, 4, ties=False))
    np.testing.assert_array_equal(np.asarray(aggregate("nnm+krum", M, f=2)),
                                  np.asarray(aggregate("krum", nnm(M, 2), f=2)))
    assert "nnm+repetition" not in NNM_AGGREGATORS
    for bad in (-1, 4, 1.5):
        with pytest.raises(ValueError, match=r"^f: got .*2f < n"):
            aggregate("krum", M, f=bad)


@pytest.mark.parametrize("garbage", [np.nan, np.inf, -np.inf, 3.4e38])
def test_robust_aggregators_ignore_garbage_byzantine_rows(garbage):
    """b = f = 2 Byzantine rows of 7 (rows 1 and 4) send NaN, ±Inf or huge values: every real
    aggregator's output is finite and equals its output with NaN read as 0 (what the master reads).
    ±Inf and huge rows are outliers: trimmed mean, Krum, multi-Krum and NNM + any of these stay inside
    the honest messages' coordinate-wise range (Krum picks the honest row Krum would pick among the
    honest ones, multi-Krum averages exactly the honest rows); centered clipping moves at most
    b·τ/n away from the honest sum / n."""
    from jax_ec.aggregators import CENTERED_CLIPPING_TAU, REAL_AGGREGATORS
    from reference_robust import reference_krum_scores
    rng = np.random.default_rng(1)
    honest = rng.normal(size=(5, 6)).astype(np.float32)
    M = jnp.asarray(np.insert(honest, [1, 3], np.float32(garbage), axis=0))
    names = [a for a in REAL_AGGREGATORS if a != "repetition"]
    out = jax.jit(lambda M: {a: aggregate(a, M, f=2) for a in names})(M)
    for name in names:
        assert np.isfinite(np.asarray(out[name])).all(), name
    if np.isnan(garbage):   # a NaN message reads as 0: an ordinary message near the honest ones
        return
    low, high = honest.min(axis=0), honest.max(axis=0)
    for name in ("trimmed_mean", "krum", "multi_krum", "median", *(f"nnm+{a}" for a in ROBUST[:3])):
        assert np.all((np.asarray(out[name]) >= low - 1e-6) & (np.asarray(out[name]) <= high + 1e-6)), name
    np.testing.assert_array_equal(np.asarray(out["krum"]), honest[np.argmin(reference_krum_scores(honest, 0))])
    np.testing.assert_allclose(np.asarray(out["multi_krum"]), honest.mean(0), rtol=1e-6)
    cc = np.asarray(out["centered_clipping"])
    assert np.linalg.norm(cc - honest.sum(0) / 7) <= 2 * CENTERED_CLIPPING_TAU / 7 + 1e-4


@pytest.mark.parametrize("attack", ["sign_flip", "ipm", "alie", "mimic"])
def test_attacks_on_honest_messages_match_loops(attack):
    """Scattered Byzantine sets (mask arithmetic), b from 1 to ⌊n/2⌋, through one jitted function of
    a traced mask and scale; honest rows keep their messages."""
    from reference_robust import reference_real_attack
    traces = []

    @jax.jit
    def sent(M, byz, scale):
        traces.append(1)
        honest = real_attack_messages(attack, M, jnp.zeros((2, M.shape[1])), None, byzantine=byz, scale=scale)
        return jnp.where(byz[:, None], honest, M)

    rng = np.random.default_rng(4)
    n, d = 9, 7
    for b in range(1, n // 2 + 1):
        M = rng.normal(size=(n, d)).astype(np.float32)
        byz = np.zeros(n, bool)
        byz[rng.choice(n, b, replace=False)] = True
        scale = float(rng.choice([0.1, 100.0]))
        out = np.asarray(sent(jnp.asarray(M), jnp.asarray(byz), jnp.float32(scale)))
        want = reference_real_attack(attack, M, byz, scale)
        for i in range(n):
            if byz[i]:
                np.testing.assert_allclose(out[i], want, rtol=1e-5, atol=1e-5, err_msg=f"{attack} b={b}")
            else:
                np.testing.assert_array_equal(out[i], M[i])
    assert len(traces) == 1


def test_real_attack_signature_refuses_what_it_cannot_compute():
    M = jnp.ones((3, 2))
    with pytest.raises(ValueError, match=r"^byzantine: the alie attack"):
        real_attack_messages("alie", M, M, None)
    with pytest.raises(ValueError, match=r"^attack: got 'random_per_partition'; it has no real-valued form"):
        real_attack_messages("random_per_partition", M, M, None)
    from jax_ec.attacks import attack_messages
    with pytest.raises(ValueError, match=r"^attack: got 'ipm'; it has no vote-valued form; allowed: none, reverse"):
        attack_messages("ipm", M, M, None)


def zoo_config(schemes, **top):
    """n = 7 workers, b = 2 under ALIE, on the tiny synthetic task: the literature's attacks and defenses."""
    return config_from_dict({**dict(
        name="zoo", n=7, b=2, attack="alie", partitioning="split", batch_size=28, steps=3, eval_every=3, trials=2,
        optim=dict(lr=0.05, lr_boundaries=[], worker_momentum=0.0),
        task=dict(name="synthetic", num_samples=224, num_features=6, num_classes=3, hidden=[8]),
        schemes=schemes), **top})


@pytest.mark.parametrize("scheme,field,message", [
    (dict(aggregator="vote"), "attack", r"got 'alie'; the alie attack .* no vote form .*allowed there: none, reverse"),
    (dict(aggregator="signed_sum", attack="mimic"), "attack", r"got 'mimic'; .*no vote form for the signed_sum"),
    (dict(aggregator="median", attack="reverse", attack_scale=2.0), "attack_scale",
     r"got 2.0; applies to the ipm attack only \(this scheme's attack is 'reverse'"),
    (dict(aggregator="median", attack="ipm", attack_scale=0), "attack_scale", r"got 0.0; expected the ipm factor"),
    (dict(aggregator="krum", b=4), "b", r"got 4; the krum aggregator assumes f = b .* 2b < n = 7; expected b <= 3"),
    (dict(aggregator="nnm+median", attack="ipm", b=4), "b", r"got 4; the nnm\+median aggregator"),
    (dict(aggregator="median", b=4), "b", r"got 4; the alie attack's s = floor\(n/2 \+ 1\) - b must be >= 1"),
    (dict(aggregator="nnm+repetition", code="draco"), "aggregator", r"got 'nnm\+repetition'; allowed: vote"),
])
def test_config_refuses_the_zoo_where_it_does_not_apply(scheme, field, message):
    with pytest.raises(ConfigError) as err:
        zoo_config([dict(name="s", **scheme)])
    text = str(err.value)
    assert "\n" not in text and re.match(rf"schemes\[0\]\.{field}: {message}", text), text


def test_sweeps_over_b_and_attack_scale_share_one_compiled_group():
    """b (also the defense's f) and the IPM factor are traced numbers: the schemes that differ only in
    them are one group (one compiled program); b = 0 joins it as the no-attack baseline."""
    from jax_ec.plan import group_schemes
    cfg = zoo_config([dict(name="tm", aggregator="trimmed_mean", attack="ipm",
                           sweep=dict(b=[0, 1, 3], attack_scale=[0.1, 100]))])
    schemes = make_schemes(cfg, 224)
    (group,) = group_schemes(schemes)
    assert len(group.schemes) == 6 and group.static.attack == "ipm" and group.static.aggregator == "trimmed_mean"
    assert [(int(s.params.b), float(s.params.attack_scale)) for s in schemes] == [
        (b, pytest.approx(e)) for b in (0, 1, 3) for e in (0.1, 100)]
    assert {s.bits_per_coordinate for s in schemes} == {32}
    (default,) = make_schemes(zoo_config([dict(name="s", aggregator="median", attack="ipm")]), 224)
    assert float(default.params.attack_scale) == pytest.approx(0.1)


@pytest.fixture(scope="module")
def zoo_task():
    return make_task(zoo_config([dict(name="s", aggregator="median")]).task, 0)


def _first_step(train, scheme, task, data, key, p):
    """Traceable: a trial's initial state, its partition gradients of step 0 and its first update."""
    state = train.init(key, p)
    rows = batch_rows(scheme.static, task.num_train, state.keys.data, state.step)
    grads = partition_grads(task.loss, state.params, state.model_state, data[0][rows], data[1][rows],
                            jax.random.fold_in(state.keys.augment, 0))[0]
    return state, grads, train.update(state, p, data)[0]


def _loop_update(state, grads, attack, scale, aggregate_loop):
    """The first update by the loops: worker means, the attack from the honest means, the aggregator."""
    from reference_robust import reference_real_attack
    G, byz = np.asarray(state.G), np.asarray(state.byzantine)
    M = reference_worker_means(G, np.asarray(grads, np.float64))
    M[byz] = reference_real_attack(attack, M, byz, scale)
    return aggregate_loop(M, int(byz.sum()))


def test_one_program_trains_schemes_differing_in_b_and_attack_scale(zoo_task):
    """Trimmed mean under IPM, b ∈ {1, 2} × ε ∈ {0.1, 100}: the group's 4 schemes run in one traced
    and compiled program (vmapped); each first update equals the loops' (the trimmed mean with f = b
    of the IPM messages with the scheme's ε, so ε reaches the computation), and a step gives finite
    parameters and metrics. (``test_zoo_end_to_end``, slow, runs run_experiment.)"""
    from reference_robust import reference_trimmed_mean

    from jax_ec.plan import group_schemes, stack_params
    cfg = zoo_config([dict(name="tm", aggregator="trimmed_mean", attack="ipm",
                           sweep=dict(b=[1, 2], attack_scale=[0.1, 100]))])
    task = zoo_task
    (group,) = group_schemes(make_schemes(cfg, task.num_train))
    train, _, scheme, _ = build(cfg, group.schemes[0].name, task)
    params = jax.tree.map(jnp.asarray, stack_params(group.schemes))
    data = device_data(task)
    keys = jnp.tile(jax.random.PRNGKey(3)[None], (4, 1))
    traces = []

    @jax.jit
    def pairs(keys, params):
        traces.append(1)

        def one(key, p):
            state, grads, update = _first_step(train, scheme, task, data, key, p)
            after = train.step(state, p, data)
            return state, grads, update, train.evaluate(after, p, data), after.params
        return jax.vmap(one)(keys, params)

    states, grads, updates, metric, after = pairs(keys, params)
    assert len(traces) == 1
    for i, s in enumerate(group.schemes):
        state = jax.tree.map(lambda x: x[i], states)     # noqa: B023
        assert int(np.asarray(state.byzantine).sum()) == s.b
        want = _loop_update(state, grads[i], "ipm", float(s.params.attack_scale), reference_trimmed_mean)
        np.testing.assert_allclose(np.asarray(updates[i]), want, rtol=1e-4, atol=1e-6, err_msg=s.name)
    assert [s.name for s in group.schemes][:2] == ["tm[b=1,attack_scale=0.1]", "tm[b=1,attack_scale=100]"]
    assert not np.allclose(np.asarray(updates[0]), np.asarray(updates[1]))    # same trial and b; ε differs
    metric = np.asarray(metric)
    assert np.isfinite(metric).all() and ((metric >= 0) & (metric <= 1)).all()
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(after))


def test_centered_clipping_carries_its_aggregate_as_the_next_center(zoo_task):
    """NNM + centered clipping under ALIE: the first update is the loops' (from the zero center), and
    the step stores it as the center of the next step."""
    from reference_robust import reference_nnm

    from jax_ec.aggregators import centered_clipping
    cfg = zoo_config([dict(name="s", code="bernoulli", r=2.0, aggregator="nnm+centered_clipping")])
    train, params, scheme, _ = build(cfg, "s", zoo_task)
    data = device_data(zoo_task)

    @jax.jit
    def first(key):
        state, grads, update = _first_step(train, scheme, zoo_task, data, key, params)
        return state, grads, update, train.step(state, params, data).center

    state, grads, got, center = first(jax.random.PRNGKey(5))
    assert np.asarray(state.center).shape == (train.num_params,) and not np.asarray(state.center).any()
    want = _loop_update(state, grads, "alie", 0.1,
                        lambda M, f: np.asarray(centered_clipping(jnp.asarray(reference_nnm(M, f), jnp.float32))))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(center), np.asarray(got))


@pytest.mark.slow
def test_zoo_end_to_end(tmp_path):
    """Krum under ALIE (b swept) and trimmed mean under IPM (ε swept) through run_experiment: 2 trials,
    finite metrics in range, one compiled group per aggregator."""
    from jax_ec.experiment import run_experiment
    cfg = zoo_config([dict(name="krum", aggregator="krum", attack="alie", sweep=dict(b=[1, 2])),
                      dict(name="tm", aggregator="trimmed_mean", attack="ipm", sweep=dict(attack_scale=[0.1, 100]))],
                     target=None)
    result = run_experiment(cfg, tmp_path, progress_bar=False)
    assert [r["scheme"] for r in result.summary] == ["krum[b=1]", "krum[b=2]", "tm[attack_scale=0.1]",
                                                     "tm[attack_scale=100]"]
    with open(tmp_path / "metrics.csv", newline="") as f:
        metric = np.array([float(r["metric"]) for r in csv.DictReader(f)])
    assert metric.size == 4 * 2 * 2 and np.isfinite(metric).all() and ((metric >= 0) & (metric <= 1)).all()
    from jax_ec.plan import group_schemes
    assert len(group_schemes(make_schemes(cfg, 224))) == 2
