"""jax_ec.core: one trial against a paper-style NumPy loop; schemes as data (one program serves every
b, r, lr and σ of a shape); a trial alone or in a batch; the minibatch of each partition."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jax_ec.attacks import binomial_half_sign, uniform_placement
from jax_ec.config import config_from_dict
from jax_ec.core import batch_rows, make_train, partition_grads
from jax_ec.experiment import batch_pairs
from jax_ec.models.logreg import logreg_loss
from jax_ec.plan import group_schemes, make_schemes, stack_params

from jax_ec.schedule import lr_at
from jax_ec.tasks import Task, make_task

from builders import as_numpy, build, device_data, stacked
from reference import reference_elect
from test_sparse_logreg import amazon_style_config, sparse_task


def mlp_config(**changes) -> dict:
    base = dict(
        name="mlp", trials=2, n=5, b=1, attack="random", placement="per_step", noise_std=0.05,
        partitioning="split", batch_size=40, steps=4, eval_every=2,
        optim=dict(lr=0.1, lr_boundaries=[], momentum=0.9, weight_decay=1e-4, worker_momentum=0.0),
        schemes=[dict(name="s", code="paper_n5")],
        task=dict(name="synthetic", num_samples=200, num_features=6, num_classes=3, hidden=[8], shuffle=True),
    )
    base.update(changes)
    return base


@pytest.mark.slow   # an end-to-end comparison of whole runs: `python -m pytest -m slow`
@pytest.mark.parametrize("changes,vote", [
    ({}, "matmul"),                                           # per-copy noise, random attack, per-step set
    (dict(noise_model="per_partition"), "matmul"),            # one noise draw per partition, shared
    (dict(attack="random_per_partition", schemes=[dict(name="s", code="bernoulli", r=2.0)]), "matmul"),
    (dict(attack="random_per_partition", noise_std=0.0, schemes=[dict(name="s", code="bernoulli", r=2.0)]), "matmul"),
    (dict(attack="reverse", placement="uniform", noise_model="per_partition"), "fused"),  # the flat election, fused
    (dict(attack="reverse", placement="uniform"), "fused"),   # per-copy noise: workers loop
    (dict(attack="reverse", noise_std=0.0, placement="uniform"), "leafwise"),
    (dict(attack="omniscient", noise_std=0.0, b=2, schemes=[dict(name="s", code="bernoulli", r=2.0)]), "leafwise"),
])
def test_cifar_rule_matches_paper_loop(changes, vote):
    """Split mode, MLP, master momentum and weight decay; with noise before the sign (per copy or
    per partition), the random attacks and a per-step Byzantine set, or without noise under an
    attack of the fused form (the vote computed parameter array by parameter array)."""
    cfg = config_from_dict(mlp_config(**changes))
    task = make_task(cfg.task)
    train, params, scheme, runtime = build(cfg, "s", task, trials=2)
    assert runtime.vote == vote
    s = scheme.static
    data = device_data(task)
    state = train.init(jax.random.PRNGKey(5), params)
    theta, unravel = ravel_pytree(state.params)
    augment_key = state.keys.augment
    theta = np.asarray(theta, np.float64)
    heavy = np.zeros_like(theta)
    G = np.asarray(state.G)
    step = jax.jit(train.step)
    sigma = float(params.noise_std)
    for t in range(4):
        rows = np.asarray(batch_rows(s, task.num_train, state.keys.data, jnp.int32(t)))
        grads = []
        for j in range(s.k):  # one partition at a time, as a worker would
            key = jax.random.split(jax.random.fold_in(augment_key, t), s.k)[j]
            g, _ = jax.grad(task.loss, has_aux=True)(unravel(jnp.asarray(theta, jnp.float32)), {},
                                                     data[0][rows[j]], data[1][rows[j]], key)
            grads.append(np.asarray(ravel_pytree(g)[0]))
        step_noise = jax.random.fold_in(state.keys.noise, t)
        signals, copy_noise = np.stack(grads), None
        if s.noise == "per_partition":   # partition j's own noise stream, shared by its holders
            signals = signals + np.float32(sigma) * np.stack([np.asarray(jax.random.normal(
                jax.random.fold_in(step_noise, j), (theta.size,))) for j in range(s.k)])
        elif s.noise == "per_copy":      # worker i's own stream for each partition j it holds
            copy_noise = np.float32(sigma) * np.stack([np.stack([np.asarray(jax.random.normal(
                jax.random.fold_in(jax.random.fold_in(step_noise, i), j), (theta.size,)))
                for j in range(s.k)]) for i in range(s.n)])
        if s.placement == "per_step":
            byz = np.asarray(uniform_placement(jax.random.fold_in(state.keys.placement, t), s.n, int(params.b)))
        else:
            byz = np.asarray(state.byzantine)
        attack_key, messages = jax.random.fold_in(state.keys.attack, t), None
        loads = G.sum(axis=1)
        if s.attack == "random" and s.noise == "per_copy":
            messages = np.stack([np.asarray(jax.random.rademacher(jax.random.fold_in(attack_key, i),
                                                                  (theta.size,), dtype=jnp.float32)) for i in range(s.n)])
        elif s.attack == "random":
            messages = np.asarray(jax.random.rademacher(attack_key, (s.n, theta.size), dtype=jnp.float32))
        elif s.attack == "random_per_partition" and s.noise == "per_copy":
            messages = np.stack([np.asarray(binomial_half_sign(jax.random.fold_in(attack_key, i), int(loads[i]),
                                                               (theta.size,), s.k)) for i in range(s.n)])
        elif s.attack == "random_per_partition":
            messages = np.asarray(binomial_half_sign(attack_key, jnp.asarray(loads)[:, None], (s.n, theta.size), s.k))
        v = reference_elect(G, signals, byz, s.attack, random_messages=messages, copy_noise=copy_noise)
        jv = train.update(state, params, data)[0]
        np.testing.assert_array_equal(np.asarray(jv), v, err_msg=f"step {t}")
        heavy = s.momentum * heavy + (v + s.weight_decay * theta)
        theta = theta - float(lr_at(params.lr, params.lr_boundaries, jnp.int32(t))) * heavy
        state = step(state, params, data)
        np.testing.assert_allclose(np.asarray(ravel_pytree(state.params)[0]), theta, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("which", ["sparse", pytest.param("mlp", marks=pytest.mark.slow)])
def test_a_trial_gives_the_same_numbers_alone_or_in_a_batch(which):
    if which == "sparse":
        task = sparse_task()
        cfg = config_from_dict(amazon_style_config())
    else:
        cfg = config_from_dict(mlp_config(attack="reverse", noise_std=0.0, placement="uniform"))
        task = make_task(cfg.task)
    train, params, _, _ = build(cfg, "s", task)
    data = device_data(task)
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    alone = jax.jit(train.run, static_argnums=3)(train.init(keys[2], params), params, data, 10)
    many = stacked(params, 4)
    states = jax.vmap(train.init)(keys, many)
    for mode in ("vmap", "map"):
        batched = jax.jit(batch_pairs(train.run, mode), static_argnums=3)(states, many, data, 10)
        for a, b in zip(as_numpy(alone), as_numpy(batched)):
            np.testing.assert_array_equal(a, b[2], err_msg=mode)


def test_schemes_of_one_shape_share_a_program_and_keep_their_numbers():
    """b, the code (uncoded, Bernoulli of several r, a fixed matrix), the step size and the attack's
    sign are data: six schemes form one group, and each gives in the stacked call exactly what
    its own call gives. A scheme without attack joins the attacked schemes' group."""
    cfg = config_from_dict(mlp_config(
        attack="directional", noise_std=0.0, placement="uniform", b=1,
        schemes=[dict(name="clean", code="uncoded", attack="none"),
                 dict(name="mv", code="uncoded"),
                 dict(name="bern", code="bernoulli", r=2.0, sweep=dict(b=[1, 2], r=[2.0, 3.0])),
                 dict(name="fast", code="bernoulli", r=2.0, lr=0.3)]))
    task = make_task(cfg.task)
    schemes = make_schemes(cfg, task.num_train)
    assert [s.name for s in schemes] == ["clean", "mv", "bern[b=1,r=2]", "bern[b=1,r=3]", "bern[b=2,r=2]",
                                         "bern[b=2,r=3]", "fast"]
    (group,) = group_schemes(schemes)
    assert group.static.attack == "directional" and len(group.schemes) == 7
    data = device_data(task)
    train = make_train(group.static, task, None)
    params = jax.tree.map(jnp.asarray, stack_params(group.schemes))
    keys = jnp.tile(jax.random.PRNGKey(7)[None], (len(group.schemes), 1))
    run = jax.jit(batch_pairs(train.run, "map"), static_argnums=3)
    together = run(jax.vmap(train.init)(keys, params), params, data, 3)
    for i, scheme in enumerate(group.schemes):
        p = jax.tree.map(jnp.asarray, scheme.params)
        alone = jax.jit(train.run, static_argnums=3)(train.init(keys[i], p), p, data, 3)
        for a, b in zip(as_numpy(alone), as_numpy(together)):
            np.testing.assert_array_equal(a, b[i], err_msg=scheme.name)
    # The numbers of a scheme do not depend on which others share its program: the no-attack
    # scheme run with attack none (its own shape) gives the same as inside the directional group.
    clean_alone, clean_params, _, _ = build(cfg.model_copy(update=dict(schemes=cfg.schemes[:1])), "clean", task,
                                            vote="matmul")
    s0 = jax.jit(clean_alone.run, static_argnums=3)(clean_alone.init(keys[0], clean_params), clean_params, data, 3)
    np.testing.assert_array_equal(as_numpy(s0.params)[0], np.asarray(jax.tree.leaves(together.params)[0][0]))


def test_train_is_a_pure_function_of_the_key():
    task = sparse_task()
    cfg = config_from_dict(amazon_style_config(steps=12, eval_every=5))
    train, params, _, _ = build(cfg, "s", task)
    data = device_data(task)

    def whole(key):
        state = train.init(key, params)
        out = [train.evaluate(state, params, data)]
        for length in (5, 5, 2):   # evaluations at steps 0, 5, 10, 12
            state = train.run(state, params, data, length)
            out.append(train.evaluate(state, params, data))
        return jnp.stack(out), state

    m1, s1 = jax.jit(whole)(jax.random.PRNGKey(4))
    m2, s2 = jax.jit(whole)(jax.random.PRNGKey(4))
    assert m1.shape == (4,)
    np.testing.assert_array_equal(np.asarray(m1), np.asarray(m2))
    for a, b in zip(as_numpy(s1), as_numpy(s2)):
        np.testing.assert_array_equal(a, b)


def test_each_partition_gradient_is_computed_once_whatever_the_redundancy():
    """The loss is traced once (one vmap over the k partitions) and the step's program does not grow with r."""
    calls = []

    def counting_loss(params, state, x, y, key):
        calls.append(1)
        return logreg_loss(params, x, y), state

    base = sparse_task()
    task = Task(**{**base.__dict__, "loss": counting_loss})
    sizes = []
    for code in (dict(code="uncoded"), dict(code="bernoulli", r=5.0)):  # r = 1 and r = n
        cfg = config_from_dict(amazon_style_config(schemes=[dict(name="s", **code)]))
        train, params, _, _ = build(cfg, "s", task, formulation="dense")
        data = device_data(task)
        calls.clear()
        jaxpr = jax.make_jaxpr(train.step)(train.init(jax.random.PRNGKey(0), params), params, data)
        assert len(calls) == 1
        sizes.append(len(jaxpr.eqns))
    assert sizes[0] == sizes[1]


def test_partition_grads_are_the_per_partition_gradients():
    task = sparse_task()
    params, _ = task.init(jax.random.PRNGKey(0))
    xs, ys = jnp.asarray(task.train_x[:20]).reshape(5, 4, F := task.train_x.shape[1]), jnp.asarray(task.train_y[:20]).reshape(5, 4)
    grads, _ = partition_grads(task.loss, params, {}, xs, ys, jax.random.PRNGKey(1))
    for j in range(5):
        want = jax.grad(lambda p: logreg_loss(p, xs[j], ys[j]))(params)["w"]
        np.testing.assert_allclose(np.asarray(grads[j]), np.asarray(want), rtol=1e-6, atol=1e-8)
    assert F == 4


def test_partitioning_modes():
    task = sparse_task()
    cfg = config_from_dict(amazon_style_config())
    _, _, scheme, _ = build(cfg, "s", task)
    s = scheme.static
    shard = task.num_train // 5
    rows = [np.asarray(batch_rows(s, task.num_train, jax.random.PRNGKey(0), jnp.int32(t))) for t in range(13)]
    assert rows[0].shape == (5, 4)
    for j in range(5):  # partition j reads consecutive samples of its own shard, then wraps
        np.testing.assert_array_equal(rows[0][j], j * shard + np.arange(4))
        np.testing.assert_array_equal(rows[11][j], j * shard + 44 + np.arange(4))
        np.testing.assert_array_equal(rows[12][j], rows[0][j])
    shuffled = s._replace(shuffle=True)
    epoch = np.concatenate([np.asarray(batch_rows(shuffled, task.num_train, jax.random.PRNGKey(0), jnp.int32(t)))
                            for t in range(12)], axis=1)
    for j in range(5):  # one epoch visits each of the shard's samples once
        assert sorted(epoch[j]) == list(range(j * shard, j * shard + 48))
    assert not np.array_equal(epoch[0], np.arange(48))

    cfg = config_from_dict(mlp_config(task=dict(name="synthetic", num_samples=200, num_features=6, shuffle=False)))
    _, _, split, _ = build(cfg, "s", make_task(cfg.task))
    r = np.asarray(batch_rows(split.static, 200, jax.random.PRNGKey(0), jnp.int32(2)))
    np.testing.assert_array_equal(r, 80 + np.arange(40).reshape(5, 8))  # contiguous partitions of the minibatch
    # An epoch that rounds up (round(210 / 40) = 5 steps) wraps its last step to the epoch's start.
    last = np.asarray(batch_rows(split.static._replace(steps_per_epoch=5), 190, jax.random.PRNGKey(0), jnp.int32(4)))
    np.testing.assert_array_equal(last.reshape(-1), (160 + np.arange(40)) % 190)
