"""Real-valued baselines and scheme options against plain NumPy loops."""

from __future__ import annotations

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
        config(code="uncoded", aggregator="krum")


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
