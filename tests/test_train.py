"""The trainer against a paper-style NumPy loop, and its two formulations against each other."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jax_ec.attacks import binomial_half_sign, uniform_placement
from jax_ec.config import ConfigError, config_from_dict
from jax_ec.experiment import batch_trials
from jax_ec.metrics import auc
from jax_ec.models.logreg import init_logreg, logreg_logits, logreg_loss
from jax_ec.tasks import Task, make_task
from jax_ec.train import SparseLogRegTrainer, Trainer, make_plan, make_train

from reference import reference_elect

D, F = 64, 4


def sparse_task(num_train: int = 240, seed: int = 0) -> Task:
    """A tiny sparse categorical logistic-regression task (same model as Amazon)."""
    rng = np.random.default_rng(seed)
    # Column f draws from its own index range, as one-hot columns do; skewed so indices repeat.
    width = D // F
    x = (rng.zipf(1.6, size=(num_train + 60, F)) % width + np.arange(F) * width).astype(np.int32)
    w_true = rng.normal(size=D)
    y = (w_true[x].sum(1) + 0.5 * rng.normal(size=len(x)) > 0).astype(np.float32)
    return Task(name="tiny_sparse", metric_name="test_auc", train_x=x[:num_train], train_y=y[:num_train],
                test_x=x[num_train:], test_y=y[num_train:], init=lambda key: (init_logreg(key, D), {}),
                loss=lambda p, state, xs, ys, key: (logreg_loss(p, xs, ys), state),
                evaluate=lambda p, state, xs, ys: auc(logreg_logits(p, xs), ys), sparse_logreg=True)


def amazon_style_config(**changes) -> dict:
    base = dict(
        name="t", trials=2, n=5, b=2, attack="directional", direction=1, placement="uniform",
        partitioning="shards", batch_size=20, steps=10, eval_every=5,
        optim=dict(lr=0.05, lr_boundaries=[1], lr_decay=0.1, worker_momentum=0.9),
        schemes=[dict(name="s", code="bernoulli", r=2.0)],
        task=dict(name="amazon"),
    )
    base.update(changes)
    return base


def reference_logreg_steps(trainer: Trainer, state, data, steps: int):
    """Paper-style loop: per partition gradients sample by sample, momentum, then the election."""
    plan = trainer.plan
    x, y = np.asarray(data[0]), np.asarray(data[1])
    theta = np.zeros(D, np.float32)
    mom = np.zeros((plan.k, D), np.float32)
    G, byz = np.asarray(state.G), np.asarray(state.byzantine)
    beta = np.float32(plan.worker_momentum)
    votes, thetas = [], []
    for t in range(steps):
        rows = np.asarray(trainer.batch_rows(state.keys.data, jnp.int32(t)))
        for j in range(plan.k):
            g = np.zeros(D, np.float32)
            for s in rows[j]:
                z = sum(theta[c] for c in x[s])
                r = (1.0 / (1.0 + np.exp(-z)) - y[s]) / plan.per_partition
                for c in x[s]:
                    g[c] += r
            mom[j] = beta * mom[j] + (1 - beta) * g
        v = reference_elect(G, mom, byz, plan.attack, plan.direction)
        theta = theta - np.float32(plan.lr_at(np.int32(t))) * v.astype(np.float32)
        votes.append(v)
        thetas.append(theta.copy())
    return votes, thetas


@pytest.mark.parametrize("attack", ["none", "reverse", "directional", "omniscient"])
@pytest.mark.parametrize("fast", [False, True])
def test_amazon_rule_matches_paper_loop(attack, fast):
    task = sparse_task()
    cfg = config_from_dict(amazon_style_config(attack=attack, b=0 if attack == "none" else 2))
    trainer = make_train(cfg, "s", task, fast_path=fast)
    assert isinstance(trainer, SparseLogRegTrainer) == fast
    data = tuple(jnp.asarray(a) for a in task.data())
    state = trainer.init(jax.random.PRNGKey(3))
    assert trainer.plan.steps_per_epoch == 12  # the lr decays after step 12: cover it
    steps = 16
    votes, thetas = reference_logreg_steps(trainer, state, data, steps)
    step = jax.jit(trainer.step)
    for t in range(steps):
        if fast:
            state = step(state, data)
            v = state.vote
        else:
            v = trainer.direction(state, data)[0]
            state = step(state, data)
        np.testing.assert_array_equal(np.asarray(v), votes[t], err_msg=f"step {t}")
        np.testing.assert_allclose(np.asarray(trainer.params_of(state)["w"]), thetas[t], rtol=1e-5, atol=1e-7)


def test_sparse_formulation_gives_the_direct_votes_on_amazon():
    """The touched-coordinates formulation against the direct one on the real Amazon features."""
    task = make_task(config_from_dict({"task": {"name": "amazon", "n_train": 3000}}).task)
    data = tuple(jnp.asarray(a) for a in task.data())
    for attack, code in [("directional", dict(code="bernoulli", r=2.0)), ("reverse", dict(code="uncoded")),
                         ("omniscient", dict(code="bernoulli", r=3.0, nonempty_rows=True))]:
        cfg = config_from_dict({"n": 15, "b": 5, "attack": attack, "batch_size": 225, "steps": 30,
                                "task": {"name": "amazon", "n_train": 3000},
                                "schemes": [dict(name="s", **code)]})
        dense, fast = make_train(cfg, "s", task, fast_path=False), make_train(cfg, "s", task)
        assert isinstance(fast, SparseLogRegTrainer) and not isinstance(dense, SparseLogRegTrainer)
        key = jax.random.PRNGKey(11)
        sd, sf = dense.init(key), fast.init(key)
        dense_step = jax.jit(lambda s: (dense.direction(s, data)[0], dense.step(s, data)))
        fast_step = jax.jit(lambda s: fast.step(s, data))
        for t in range(30):
            v, sd = dense_step(sd)
            sf = fast_step(sf)
            np.testing.assert_array_equal(np.asarray(sf.vote), np.asarray(v), err_msg=f"{attack} step {t}")
        np.testing.assert_allclose(np.asarray(fast.params_of(sf)["w"]), np.asarray(sd.params["w"]),
                                   rtol=1e-5, atol=1e-8)


def test_sparse_momentum_rescaling_is_exact():
    """β = 0.5 forces a rescale every 99 steps: 250 steps must match the direct formulation."""
    task = sparse_task()
    cfg = config_from_dict(amazon_style_config(steps=250, optim=dict(lr=0.01, worker_momentum=0.5,
                                                                     lr_boundaries=[])))
    dense, fast = make_train(cfg, "s", task, fast_path=False), make_train(cfg, "s", task)
    assert fast.rescale_every < 250
    data = tuple(jnp.asarray(a) for a in task.data())
    key = jax.random.PRNGKey(0)
    sd = jax.jit(dense.run, static_argnums=2)(dense.init(key), data, 249)
    sf = jax.jit(fast.run, static_argnums=2)(fast.init(key), data, 249)
    v = dense.direction(sd, data)[0]
    sf = fast.step(sf, data)
    np.testing.assert_array_equal(np.asarray(sf.vote), np.asarray(v))
    np.testing.assert_allclose(np.asarray(fast.params_of(sf)["w"]), np.asarray(dense.step(sd, data).params["w"]),
                               rtol=1e-5, atol=1e-7)


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


@pytest.mark.parametrize("changes,leafwise", [
    ({}, False),                                              # per-copy noise, random attack, per-step set
    (dict(noise_model="per_partition"), False),               # one noise draw per partition, shared
    (dict(attack="random_per_partition", schemes=[dict(name="s", code="bernoulli", r=2.0)]), False),
    (dict(attack="random_per_partition", noise_std=0.0, schemes=[dict(name="s", code="bernoulli", r=2.0)]), False),
    (dict(attack="reverse", placement="uniform", noise_model="per_partition"), False),  # the flat election, fused
    (dict(attack="reverse", placement="uniform"), False),   # per-copy noise: workers loop
    (dict(attack="reverse", noise_std=0.0, placement="uniform"), True),
    (dict(attack="omniscient", noise_std=0.0, b=2, schemes=[dict(name="s", code="bernoulli", r=2.0)]), True),
])
def test_cifar_rule_matches_paper_loop(changes, leafwise):
    """Split mode, MLP, master momentum; with noise before the sign, random attack and a per-step
    Byzantine set (the flat (k, d) election), with noise under an attack of the fused form (the
    flat election, fused, reading the noisy gradients' signs), or without noise under an attack of
    the fused form (the vote computed parameter array by parameter array)."""
    cfg = config_from_dict(mlp_config(**changes))
    task = make_task(cfg.task)
    trainer = make_train(cfg, "s", task)
    assert trainer.leafwise_vote is leafwise
    plan = trainer.plan
    data = tuple(jnp.asarray(a) for a in task.data())
    state = trainer.init(jax.random.PRNGKey(5))
    theta, unravel = ravel_pytree(state.params)
    augment_key = state.keys.augment
    theta = np.asarray(theta, np.float64)
    heavy = np.zeros_like(theta)
    G = np.asarray(state.G)
    step = jax.jit(trainer.step)
    for t in range(4):
        rows = np.asarray(trainer.batch_rows(state.keys.data, jnp.int32(t)))
        grads = []
        for j in range(plan.k):  # one partition at a time, as a worker would
            key = jax.random.split(jax.random.fold_in(augment_key, t), plan.k)[j]
            g, _ = jax.grad(task.loss, has_aux=True)(unravel(jnp.asarray(theta, jnp.float32)), {},
                                                     data[0][rows[j]], data[1][rows[j]], key)
            grads.append(np.asarray(ravel_pytree(g)[0]))
        step_noise = jax.random.fold_in(state.keys.noise, t)
        signals, copy_noise = np.stack(grads), None
        per_copy = plan.noise_std > 0 and plan.noise_model == "per_copy"
        if plan.noise_std > 0 and not per_copy:   # partition j's own noise stream, shared by its holders
            signals = signals + np.float32(plan.noise_std) * np.stack([np.asarray(jax.random.normal(
                jax.random.fold_in(step_noise, j), (theta.size,))) for j in range(plan.k)])
        elif per_copy:                             # worker i's own stream for each partition j it holds
            copy_noise = np.float32(plan.noise_std) * np.stack([np.stack([np.asarray(jax.random.normal(
                jax.random.fold_in(jax.random.fold_in(step_noise, i), j), (theta.size,)))
                for j in range(plan.k)]) for i in range(plan.n)])
        if plan.placement == "per_step":
            byz = np.asarray(uniform_placement(jax.random.fold_in(state.keys.placement, t), plan.n, plan.b))
        else:
            byz = np.asarray(state.byzantine)
        attack_key, messages = jax.random.fold_in(state.keys.attack, t), None
        loads = G.sum(axis=1)
        if plan.attack == "random" and per_copy:
            messages = np.stack([np.asarray(jax.random.rademacher(jax.random.fold_in(attack_key, i),
                                                                  (theta.size,), dtype=jnp.float32)) for i in range(plan.n)])
        elif plan.attack == "random":
            messages = np.asarray(jax.random.rademacher(attack_key, (plan.n, theta.size), dtype=jnp.float32))
        elif plan.attack == "random_per_partition" and per_copy:
            messages = np.stack([np.asarray(binomial_half_sign(jax.random.fold_in(attack_key, i), int(loads[i]),
                                                               (theta.size,), plan.k)) for i in range(plan.n)])
        elif plan.attack == "random_per_partition":
            messages = np.asarray(binomial_half_sign(attack_key, jnp.asarray(loads)[:, None], (plan.n, theta.size),
                                                     plan.k))
        v = reference_elect(G, signals, byz, plan.attack, random_messages=messages, copy_noise=copy_noise)
        jv = trainer.direction(state, data)[0]
        np.testing.assert_array_equal(np.asarray(jv), v, err_msg=f"step {t}")
        heavy = plan.momentum * heavy + (v + plan.weight_decay * theta)
        theta = theta - plan.lr * heavy
        state = step(state, data)
        np.testing.assert_allclose(np.asarray(ravel_pytree(state.params)[0]), theta, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("which", ["sparse", "mlp"])
def test_a_trial_gives_the_same_numbers_alone_or_in_a_batch(which):
    if which == "sparse":
        task = sparse_task()
        cfg = config_from_dict(amazon_style_config())
    else:
        cfg = config_from_dict(mlp_config(attack="reverse", noise_std=0.0, placement="uniform"))
        task = make_task(cfg.task)
    trainer = make_train(cfg, "s", task)
    data = tuple(jnp.asarray(a) for a in task.data())
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    alone = jax.jit(trainer.run, static_argnums=2)(trainer.init(keys[2]), data, 10)
    states = jax.vmap(trainer.init)(keys)
    for mode in ("vmap", "map"):
        batched = jax.jit(batch_trials(trainer.run, mode), static_argnums=2)(states, data, 10)
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(batched)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[2], err_msg=mode)


def test_train_is_a_pure_function_of_the_key():
    task = sparse_task()
    cfg = config_from_dict(amazon_style_config(steps=12, eval_every=5))
    trainer = make_train(cfg, "s", task)
    data = tuple(jnp.asarray(a) for a in task.data())
    train = jax.jit(lambda k: trainer.train(k, data, 5))
    m1, m2 = train(jax.random.PRNGKey(4)), train(jax.random.PRNGKey(4))
    assert m1.shape == (4,)  # steps 0, 5, 10, 12
    np.testing.assert_array_equal(np.asarray(m1), np.asarray(m2))
    state = trainer.run(trainer.init(jax.random.PRNGKey(4)), data, 12)
    np.testing.assert_allclose(float(m1[-1]), float(trainer.evaluate(state, data)), rtol=1e-6)
    np.testing.assert_array_equal(trainer.eval_steps(5), [0, 5, 10, 12])


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
        trainer = make_train(cfg, "s", task, fast_path=False)
        data = tuple(jnp.asarray(a) for a in task.data())
        calls.clear()
        jaxpr = jax.make_jaxpr(trainer.step)(trainer.init(jax.random.PRNGKey(0)), data)
        assert len(calls) == 1
        sizes.append(len(jaxpr.eqns))
    assert sizes[0] == sizes[1]


def test_partitioning_modes():
    task = sparse_task()
    cfg = config_from_dict(amazon_style_config())
    trainer = make_train(cfg, "s", task)
    shard = task.num_train // 5
    rows = [np.asarray(trainer.batch_rows(jax.random.PRNGKey(0), jnp.int32(t))) for t in range(13)]
    assert rows[0].shape == (5, 4)
    for j in range(5):  # partition j reads consecutive samples of its own shard, then wraps
        np.testing.assert_array_equal(rows[0][j], j * shard + np.arange(4))
        np.testing.assert_array_equal(rows[11][j], j * shard + 44 + np.arange(4))
        np.testing.assert_array_equal(rows[12][j], rows[0][j])
    shuffled = make_train(config_from_dict(amazon_style_config(task=dict(name="amazon", shuffle=True))), "s", task)
    epoch = np.concatenate([np.asarray(shuffled.batch_rows(jax.random.PRNGKey(0), jnp.int32(t))) for t in range(12)],
                           axis=1)
    for j in range(5):  # one epoch visits each of the shard's samples once
        assert sorted(epoch[j]) == list(range(j * shard, j * shard + 48))
    assert not np.array_equal(epoch[0], np.arange(48))

    cfg = config_from_dict(mlp_config(task=dict(name="synthetic", num_samples=200, num_features=6, shuffle=False)))
    split = make_train(cfg, "s", make_task(cfg.task))
    r = np.asarray(split.batch_rows(jax.random.PRNGKey(0), jnp.int32(2)))
    np.testing.assert_array_equal(r, 80 + np.arange(40).reshape(5, 8))  # contiguous partitions of the minibatch


def test_batch_larger_than_a_shard_is_rejected_before_compiling():
    cfg = config_from_dict(amazon_style_config(batch_size=500))
    with pytest.raises(ConfigError, match="^batch_size"):
        make_plan(cfg, cfg.schemes[0], 240)


def test_learning_rate_schedule_and_its_sums():
    cfg = config_from_dict(amazon_style_config(optim=dict(lr=1e-3, lr_boundaries=[1, 3], lr_decay=0.1)))
    plan = make_plan(cfg, cfg.schemes[0], 240)
    assert plan.lr_boundaries == (12, 36)
    lrs = np.asarray(plan.lr_at(np.arange(50)))
    np.testing.assert_allclose(lrs[[0, 11, 12, 35, 36, 49]], [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5], rtol=1e-6)
    for t0, t1 in [(0, 0), (0, 12), (5, 40), (13, 14), (36, 50)]:
        np.testing.assert_allclose(float(plan.lr_sum(jnp.int32(t0), jnp.int32(t1))), lrs[t0:t1].sum(), rtol=1e-5)


def test_simulated_iteration_time_is_the_busiest_worker_plus_communication():
    task = sparse_task()
    cfg = config_from_dict(amazon_style_config(time=dict(t_partition=2.0, bandwidth=32.0)))
    trainer = make_train(cfg, "s", task)
    G = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0] * 5, [1] * 5, [0, 0, 0, 0, 1]])
    assert trainer.iteration_time(G) == 5 * 2.0 + D / 32.0


@pytest.mark.parametrize("attack", ["reverse", "omniscient"])
def test_vote_forms_give_the_same_steps_on_a_cnn(attack, monkeypatch):
    """A convolutional model votes in the matmul form in short runs and, parameter array by
    parameter array, in the fused form in long ones (Trainer.fused_vote): the same votes."""
    from jax_ec.config import load_config
    cfg, _ = load_config(Path(__file__).resolve().parents[1] / "configs" / "digits_byzantine40.yaml",
                         ["steps=4", "trials=1", "batch_size=30", f"attack={attack}", "task.width=4",
                          "schemes=[{name: s, code: bernoulli, r: 2, nonempty_rows: true}]"])
    task = make_task(cfg.task, cfg.seed)
    data = tuple(jnp.asarray(a) for a in task.data())
    finals = {}
    for fused in (False, True):
        monkeypatch.setattr(Trainer, "fused_vote", property(lambda self, f=fused: f))
        trainer = make_train(cfg, "s", task)
        assert trainer.leafwise_vote is fused
        state = trainer.init(jax.random.PRNGKey(3))
        step = jax.jit(trainer.step)
        for _ in range(4):
            state = step(state, data)
        finals[fused] = state.params
    for a, b in zip(jax.tree.leaves(finals[False]), jax.tree.leaves(finals[True])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
