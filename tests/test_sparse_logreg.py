"""The Amazon rule (worker momentum, sign steps) against a paper-style NumPy loop, in both
formulations, and the touched-coordinates formulation against the dense one on the real features."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_ec.config import config_from_dict
from jax_ec.core import batch_rows
from jax_ec.metrics import auc
from jax_ec.models.logreg import init_logreg, logreg_logits, logreg_loss
from jax_ec.schedule import lr_at
from jax_ec.sparse_logreg import SparseState, applies, rescale_every, working_memory
from jax_ec.tasks import Task, make_task

from builders import build, device_data
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


def reference_logreg_steps(scheme, params, task, state, steps: int, choose=None):
    """Paper-style loop: per partition gradients sample by sample, momentum, then the election
    (``choose(G, momentum)``, if given, picks each step's Byzantine set)."""
    s = scheme.static
    x, y = np.asarray(task.train_x), np.asarray(task.train_y)
    theta = np.zeros(D, np.float32)
    mom = np.zeros((s.k, D), np.float32)
    G, byz = np.asarray(state.G), np.asarray(state.byzantine)
    beta = np.float32(s.worker_momentum)
    votes, thetas = [], []
    for t in range(steps):
        rows = np.asarray(batch_rows(s, task.num_train, state.keys.data, jnp.int32(t)))
        for j in range(s.k):
            g = np.zeros(D, np.float32)
            for sample in rows[j]:
                z = sum(theta[c] for c in x[sample])
                r = (1.0 / (1.0 + np.exp(-z)) - y[sample]) / s.per_partition
                for c in x[sample]:
                    g[c] += r
            mom[j] = beta * mom[j] + (1 - beta) * g
        v = reference_elect(G, mom, byz if choose is None else choose(G, mom), s.attack, int(params.attack_sign))
        theta = theta - np.float32(lr_at(params.lr, params.lr_boundaries, jnp.int32(t))) * v.astype(np.float32)
        votes.append(v)
        thetas.append(theta.copy())
    return votes, thetas


@pytest.mark.parametrize("attack", ["none", "reverse", "directional", "omniscient", "stealth"])
@pytest.mark.parametrize("formulation", ["dense", "touched_coordinates"])
def test_amazon_rule_matches_paper_loop(attack, formulation):
    task = sparse_task()
    cfg = config_from_dict(amazon_style_config(attack=attack, b=0 if attack == "none" else 2))
    train, params, scheme, runtime = build(cfg, "s", task, formulation=formulation)
    assert runtime.formulation == formulation
    data = device_data(task)
    state = train.init(jax.random.PRNGKey(3), params)
    assert isinstance(state, SparseState) == (formulation == "touched_coordinates")
    assert scheme.static.steps_per_epoch == 12  # the lr decays after step 12: cover it
    steps = 16
    votes, thetas = reference_logreg_steps(scheme, params, task, state, steps)
    step = jax.jit(train.step)
    update = jax.jit(train.update)
    for t in range(steps):
        v = update(state, params, data)[0]
        state = step(state, params, data)
        np.testing.assert_array_equal(np.asarray(v), votes[t], err_msg=f"step {t}")
        np.testing.assert_allclose(np.asarray(train.model(state, params)[0]["w"]), thetas[t], rtol=1e-5, atol=1e-7)


@pytest.mark.slow   # an end-to-end comparison of whole runs: `python -m pytest -m slow`
def test_touched_coordinates_give_the_dense_votes_on_amazon():
    """The touched-coordinates formulation against the dense one on the real Amazon features."""
    task = make_task(config_from_dict({"task": {"name": "amazon", "n_train": 3000}}).task)
    data = device_data(task)
    for attack, code in [("directional", dict(code="bernoulli", r=2.0)), ("reverse", dict(code="uncoded")),
                         ("omniscient", dict(code="bernoulli", r=3.0, nonempty_rows=True))]:
        cfg = config_from_dict({"n": 15, "b": 5, "attack": attack, "batch_size": 225, "steps": 30,
                                "task": {"name": "amazon", "n_train": 3000},
                                "schemes": [dict(name="s", **code)]})
        dense, params, _, rt_dense = build(cfg, "s", task, formulation="dense")
        fast, _, _, rt_fast = build(cfg, "s", task)
        assert (rt_dense.formulation, rt_fast.formulation) == ("dense", "touched_coordinates")
        key = jax.random.PRNGKey(11)
        sd, sf = dense.init(key, params), fast.init(key, params)
        dense_step = jax.jit(lambda s: (dense.update(s, params, data)[0], dense.step(s, params, data)))
        fast_step = jax.jit(lambda s: fast.step(s, params, data))
        for t in range(30):
            v, sd = dense_step(sd)
            sf = fast_step(sf)
            np.testing.assert_array_equal(np.asarray(sf.vote), np.asarray(v), err_msg=f"{attack} step {t}")
        np.testing.assert_allclose(np.asarray(fast.model(sf, params)[0]["w"]), np.asarray(sd.params["w"]),
                                   rtol=1e-5, atol=1e-8)


def test_momentum_rescaling_is_exact():
    """β = 0.5 forces a rescale every 99 steps: 250 steps must match the dense formulation."""
    task = sparse_task()
    cfg = config_from_dict(amazon_style_config(steps=250, optim=dict(lr=0.01, worker_momentum=0.5,
                                                                     lr_boundaries=[])))
    dense, params, scheme, _ = build(cfg, "s", task, formulation="dense")
    fast, _, _, _ = build(cfg, "s", task)
    assert rescale_every(0.5) < 250
    data = device_data(task)
    key = jax.random.PRNGKey(0)
    sd = jax.jit(dense.run, static_argnums=3)(dense.init(key, params), params, data, 249)
    sf = jax.jit(fast.run, static_argnums=3)(fast.init(key, params), params, data, 249)
    v = dense.update(sd, params, data)[0]
    sf = fast.step(sf, params, data)
    np.testing.assert_array_equal(np.asarray(sf.vote), np.asarray(v))
    np.testing.assert_allclose(np.asarray(fast.model(sf, params)[0]["w"]),
                               np.asarray(dense.step(sd, params, data).params["w"]), rtol=1e-5, atol=1e-7)


def test_where_the_formulation_applies_and_its_memory():
    task = sparse_task()
    cfg = config_from_dict(amazon_style_config())
    _, _, scheme, runtime = build(cfg, "s", task)
    assert applies(scheme.static, task, scheme.total_steps) and runtime.formulation == "touched_coordinates"
    for change in (dict(noise_std=0.1), dict(placement="per_step"), dict(attack="random"),
                   dict(optim=dict(worker_momentum=0.0)), dict(optim=dict(momentum=0.9, worker_momentum=0.9))):
        other = config_from_dict(amazon_style_config(**change))
        _, _, s, rt = build(other, "s", task)
        assert not applies(s.static, task, s.total_steps) and rt.formulation == "dense", change
    assert working_memory(scheme.static, D) == D * (12 + 4 * 5 + 8)
