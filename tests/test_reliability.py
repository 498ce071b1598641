"""Reliability contract (docs/reproducibility.md):

* reproducibility: the same config and seed give bitwise-identical metrics, also when rerun from
  the results folder's own config.yaml; trial k gives the same numbers alone or inside a batch;
  run.json records what is needed to rerun a folder;
* Byzantine garbage (NaN, ±Inf, huge values, values outside {−1, 0, +1}) does not poison the model
  under any aggregator (sign votes read a message as its sign; the real-valued aggregators as
  documented in jax_ec.aggregators); a diverging honest run stops with a DivergenceError naming the
  scheme, the trials and the steps (CLI: one line, exit code 3) and keeps its last finite checkpoint;
* known pitfalls of peer code: boolean flags parse as booleans, the simulated worker count is n
  (every G has n rows, exactly b Byzantine indices, all < n), every attack changes the run.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jax_ec.aggregators import aggregate, repetition_groups
from jax_ec.attacks import ADAPTIVE_PLACEMENTS, ATTACKS, PLACEMENTS, REAL_ATTACKS, VOTE_ATTACKS, uniform_placement
from jax_ec.checkpoint import CHECKPOINT_DIR
from jax_ec.cli import main
from jax_ec.config import ConfigError, config_from_dict, load_config
from jax_ec.election import corrupt, global_vote, local_votes
from jax_ec.experiment import (DivergenceError, _check_finite, prepare_group, run_experiment, run_group,
                               trial_keys)
from jax_ec.tasks import make_task
from jax_ec.attacks import COORDINATEWISE_ATTACKS as SPARSE_ATTACKS
from jax_ec.plan import group_schemes, make_schemes

from builders import build

election_module = importlib.import_module("jax_ec.election")  # (jax_ec.election is also a function)
core_module = importlib.import_module("jax_ec.core")


def run_one(cfg, task, trial_ids=None):
    """The runs of a config's first group (every scheme of these configs shares one group)."""
    (group,) = group_schemes(make_schemes(cfg, task.num_train))
    return run_group(cfg, prepare_group(cfg, 0, group, task), task.data(), trial_ids=trial_ids)

AMAZON_TINY = ["task.n_train=1500", "steps=6", "eval_every=3", "trials=3", "runtime.trial_batching=map", "seed=5",
               "task.shuffle=true", "schemes=[{name: bern, code: bernoulli, r: 2}]"]

SYNTHETIC = {
    "name": "synthetic_tiny", "seed": 1, "trials": 3,
    "task": {"name": "synthetic", "num_samples": 128, "num_features": 4, "num_classes": 3, "hidden": [4]},
    "n": 5, "b": 2, "attack": "reverse", "partitioning": "split", "batch_size": 20, "steps": 4,
    "eval_every": 2, "optim": {"lr": 0.05, "lr_boundaries": [], "worker_momentum": 0.0},
    "schemes": [{"name": "bern", "code": "bernoulli", "r": 2}],
}


def synthetic(**changes):
    data = copy.deepcopy(SYNTHETIC)
    data.update(changes)
    return config_from_dict(data)


def metrics_rows(out, drop_wall_time=True):
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    wall = rows[0].index("wall_time")
    return [r[:wall] + r[wall + 1:] for r in rows] if drop_wall_time else rows


# ---------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def amazon_twice(tmp_path_factory):
    """The Amazon trainer (touched coordinates, scatter-adds) run twice: the second time from the
    first folder's config.yaml, as docs/reproducibility.md tells a reviewer to."""
    cfg, _ = load_config(None, AMAZON_TINY)
    first = tmp_path_factory.mktemp("amazon_first")
    result = run_experiment(cfg, first, progress_bar=False)
    assert result.runs[0].trainer == "touched_coordinates"
    again, _ = load_config(first / "config.yaml")
    assert again == cfg
    second = tmp_path_factory.mktemp("amazon_second")
    run_experiment(again, second, progress_bar=False)
    return cfg, result, first, second


def test_same_config_and_seed_is_bitwise_identical(amazon_twice):
    _, _, first, second = amazon_twice
    assert metrics_rows(first) == metrics_rows(second)
    assert len(metrics_rows(first)) == 1 + 3 * 3
    a, b = (json.loads((out / "run.json").read_text()) for out in (first, second))
    for key in ("redundancy", "max_load", "byzantine_workers", "trainer", "trial_batching"):
        assert a["schemes"]["bern"][key] == b["schemes"]["bern"][key]
    assert a["reproducibility"]["config_fingerprint"] == b["reproducibility"]["config_fingerprint"]


def test_trial_alone_equals_trial_inside_the_batch_map(amazon_twice):
    """trial_batching: map: trial 2 run alone (its own key fold_in(PRNGKey(seed), 2)) gives the
    numbers it has inside the batch of 3, bit for bit (metric and simulated time)."""
    cfg, result, _, _ = amazon_twice
    np.testing.assert_array_equal(np.asarray(trial_keys(cfg.seed, 1, first=2))[0],
                                  np.asarray(trial_keys(cfg.seed, 3))[2])
    task = make_task(cfg.task, cfg.seed)
    (alone,) = run_one(cfg, task, trial_ids=[2])
    batch = result.runs[0]
    np.testing.assert_array_equal(alone.curves.metric[0], batch.curves.metric[2])
    np.testing.assert_array_equal(alone.curves.sim_time[0], batch.curves.sim_time[2])
    np.testing.assert_array_equal(alone.byzantine[0], batch.byzantine[2])
    assert not np.array_equal(batch.curves.metric[2], batch.curves.metric[0])  # trials do differ


def test_amazon_trials_vmapped_mapped_or_alone_give_the_same_bits():
    """The touched-coordinates trainer (scatter-adds, lazy updates, an lr decay crossed at step 6)
    gives every trial the same bits whether the trials are vmapped, mapped, or run alone: the
    products that XLA:CPU used to fuse differently in the batched program are kept apart
    (optimization barriers) and the logits are summed in a fixed order."""
    overrides = AMAZON_TINY[:1] + ["steps=24", "eval_every=6", "trials=4", "seed=5", "task.shuffle=true",
                                   "schemes=[{name: bern, code: bernoulli, r: 2}]"]
    curves = {}
    for mode in ("vmap", "map"):
        cfg, _ = load_config(None, overrides + [f"runtime.trial_batching={mode}"])
        task = make_task(cfg.task, cfg.seed)
        (run,) = run_one(cfg, task)
        assert run.trainer == "touched_coordinates" and run.runtime.trial_batching == mode
        curves[mode] = run.curves.metric
        curves[mode + "_alone"] = run_one(cfg, task, trial_ids=[3])[0].curves.metric
    np.testing.assert_array_equal(curves["vmap"], curves["map"])
    np.testing.assert_array_equal(curves["vmap_alone"][0], curves["vmap"][3])
    np.testing.assert_array_equal(curves["map_alone"][0], curves["map"][3])
    assert len(np.unique(curves["vmap"][:, -1])) > 1 and len(np.unique(curves["vmap"][0])) > 2


def test_run_json_records_what_reruns_the_folder(amazon_twice):
    cfg, _, first, _ = amazon_twice
    run = json.loads((first / "run.json").read_text())
    meta, rerun = run["metadata"], run["reproducibility"]
    assert run["seed"] == 5 and run["trials"] == 3
    assert {"jax", "jaxlib", "flax", "optax", "numpy"} <= set(meta["versions"])
    assert meta["jax_backend"] == "cpu" and meta["jax_devices"]
    assert rerun["jax_ec_version"]
    assert rerun["rerun"].startswith("jax-ec run ") and "config.yaml" in rerun["rerun"]
    assert rerun["trial_keys"].startswith("trial t uses jax.random.fold_in(jax.random.PRNGKey(5), t)")
    assert {"jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable"} <= set(rerun["jax_config"])
    assert isinstance(rerun["environment"], dict)  # XLA_FLAGS and friends, when set
    assert "command" in rerun and "git" in rerun
    assert run["schemes"]["bern"]["trial_batching"] == "map" and run["schemes"]["bern"]["runtime"]["trial_batching"] == "map"
    # The worker count is n: every trial's Byzantine indices are b distinct workers < n.
    for workers in run["schemes"]["bern"]["byzantine_workers"]:
        assert len(set(workers)) == cfg.b and all(0 <= w < cfg.n for w in workers)


def test_cli_records_its_command_line(monkeypatch, tmp_path):
    seen = {}

    def fake_run_experiment(cfg, out, **kwargs):
        seen.update(kwargs, cfg=cfg)
        return SimpleNamespace(table=lambda: "", out_dir=tmp_path)

    monkeypatch.setattr("jax_ec.experiment.run_experiment", fake_run_experiment)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", "--no-progress", "--trials", "2", "--set", "task.shuffle=False", "--fresh"]) == 0
    assert seen["command"] == "jax-ec run --no-progress --trials 2 --set task.shuffle=False --fresh"
    assert seen["resume"] is False


# ---------------------------------------------------------------------------------------------
# Byzantine garbage
# ---------------------------------------------------------------------------------------------

GARBAGE = [np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e30, 7.0, -0.25, 0.5, 0.0, 1.0, -1.0]


@jax.jit
def _votes_with_garbage(G, S, byz, garbage):
    """The master's vote when Byzantine workers send ``garbage``, and when they send its signs."""
    C = local_votes(G, S)
    as_signs = jnp.sign(jnp.nan_to_num(garbage, nan=0.0))
    return global_vote(corrupt(C, byz, garbage)), global_vote(corrupt(C, byz, as_signs))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data())
def test_sign_vote_reads_every_garbage_message_as_its_sign(data):
    """election → the master: a Byzantine message counts exactly as sign(message) (NaN: 0), so it
    weighs at most one vote; applied by the master's optimizer the vote keeps the model finite."""
    n, k, d = 7, 5, 6
    G = np.array(data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n * k, max_size=n * k)),
                 np.float32).reshape(n, k)
    S = np.sign(np.array(data.draw(st.lists(st.floats(-2, 2), min_size=k * d, max_size=k * d)),
                         np.float32).reshape(k, d))
    byz = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    garbage = np.array(data.draw(st.lists(st.sampled_from(GARBAGE), min_size=n * d, max_size=n * d)),
                       np.float32).reshape(n, d)
    v, want = (np.asarray(x) for x in _votes_with_garbage(G, S, byz, garbage))
    np.testing.assert_array_equal(v, want)
    assert set(np.unique(v)) <= {-1.0, 0.0, 1.0}
    params = jnp.zeros(d)
    updates, _ = optax.sgd(1e-3).update(jnp.asarray(v), optax.sgd(1e-3).init(params), params)
    assert np.isfinite(np.asarray(optax.apply_updates(params, updates))).all()


def test_real_valued_aggregators_on_garbage_as_documented():
    """jax_ec.aggregators: NaN reads as 0, ±Inf as ±(largest finite float32); the median ignores up
    to ⌊(n−1)/2⌋ garbage messages; the mean does not (it moves, but a NaN never reaches the model);
    repetition takes the median inside each group of identical workers, then the mean."""
    honest = np.array([[1.0, -2.0, 0.5]] * 3, np.float32) + np.arange(3, dtype=np.float32)[:, None] * 0.1
    for garbage in ([np.nan] * 3, [np.inf, -np.inf, np.nan], [3.4e38, -3.4e38, 1e30]):
        M = jnp.asarray(np.vstack([honest, [garbage, garbage]]).astype(np.float32))  # 2 of 5 Byzantine
        med = np.asarray(aggregate("median", M))
        assert np.isfinite(med).all()
        assert np.all((med >= honest.min(axis=0)) & (med <= honest.max(axis=0)))  # garbage ignored
    # mean: NaN counts as 0 (one NaN among 4 workers scales the mean by 3/4); finite otherwise.
    M = jnp.asarray([[np.nan, 2.0], [4.0, 2.0], [4.0, 2.0], [4.0, 2.0]], jnp.float32)
    np.testing.assert_allclose(np.asarray(aggregate("mean", M)), [3.0, 2.0])
    one_inf = jnp.asarray([[np.inf], [1.0], [1.0]], jnp.float32)
    assert np.isfinite(np.asarray(aggregate("mean", one_inf))).all()
    # repetition: groups {0,1,2} and {3,4,5}; one garbage message per group is outvoted.
    G = np.array([[1, 0]] * 3 + [[0, 1]] * 3)
    M = jnp.asarray([[np.nan], [1.0], [1.0], [np.inf], [3.0], [3.0]], jnp.float32)
    np.testing.assert_array_equal(np.asarray(aggregate("repetition", M, repetition_groups(G))), [2.0])


@pytest.mark.parametrize("name", ["mean", "repetition"])
def test_mean_of_several_huge_messages_stays_finite(name):
    M = jnp.asarray([[np.inf], [np.inf], [1.0]], jnp.float32)
    assert np.isfinite(np.asarray(aggregate(name, M, ((0,), (1,), (2,))))).all()


def _garbage_messages(shape, dtype, huge=True):
    """NaN, ±Inf, huge and out-of-range values, cycling over the coordinates."""
    values = [np.nan, np.inf, -np.inf, 3.4e38, -7.0, 0.5] if huge else [np.nan, -7.0, 0.5, 1e3]
    values = jnp.asarray(values, dtype)
    return jnp.broadcast_to(values[jnp.arange(shape[-1]) % values.shape[0]], shape)


GARBAGE_SCHEMES = {  # aggregator: (code, n, b)
    "vote": ("uncoded", 5, 2), "signed_sum": ("bernoulli", 5, 2), "median": ("uncoded", 5, 2),
    "repetition": ("draco", 6, 1), "mean": ("uncoded", 5, 2),
}


def test_garbage_does_not_poison_the_model_in_any_scheme(monkeypatch):
    """Byzantine workers send garbage in every scheme for 3 steps: the parameters stay finite, and for
    sign schemes the run equals a run whose Byzantine workers send the garbage's signs (``as_signs``
    is a traced flag: one compiled program for both). The mean is not robust (documented): its
    garbage has no ±Inf or huge values, which move it arbitrarily (clipped so that the sum cannot
    overflow, see the test above); a NaN still never reaches its model."""
    huge = {}

    def messages(attack, M, *rest):
        garbage = _garbage_messages(M.shape, M.dtype, huge["now"])
        return jnp.where(huge["as_signs"], jnp.sign(jnp.nan_to_num(garbage, nan=0.0)), garbage)

    # The messages are injected through attack_messages, which the fused election form (built-in
    # attacks computed inline, not the default) would not call: make sure it stays off.
    monkeypatch.setattr(election_module, "FUSED_MAX_TERMS", 0)
    monkeypatch.setattr(election_module, "attack_messages",
                        lambda attack, C, S, key, direction, *_, **__: messages(attack, C))
    monkeypatch.setattr(core_module, "real_attack_messages", lambda attack, M, g, key, sign, **_: messages(attack, M))
    runs = []
    for aggregator, (code, n, b) in GARBAGE_SCHEMES.items():
        scheme = {"name": "s", "code": code, "aggregator": aggregator, **({"r": 2} if code == "bernoulli" else {})}
        if aggregator in ("median", "mean", "repetition"):
            scheme["lr"] = 1e-3
        cfg = synthetic(n=n, b=b, batch_size=4 * n, schemes=[scheme])
        task = make_task(cfg.task, cfg.seed)
        train, params, _, _ = build(cfg, "s", task)
        runs.append((aggregator, b, (train, params), tuple(jnp.asarray(a) for a in task.data())))

    @jax.jit
    def final_states(as_signs):
        out = []
        for aggregator, _, (train, params), data in runs:
            huge.update(now=aggregator != "mean", as_signs=as_signs)
            out.append(train.run(train.init(jax.random.PRNGKey(0), params), params, data, 3))
        return out

    garbage, signs = final_states(False), final_states(True)
    for (aggregator, b, _, _), g, s in zip(runs, garbage, signs):
        assert int(np.asarray(g.byzantine).sum()) == b
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g.params)), aggregator
        if aggregator in ("vote", "signed_sum"):
            for x, y in zip(jax.tree.leaves(g.params), jax.tree.leaves(s.params)):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------------------------

def test_diverging_run_stops_with_one_line_and_exit_code_3(tmp_path, capsys, monkeypatch):
    """An honest run (b = 0) with a huge step size and weight decay (θ grows ×(1 − γλ) per step)
    stops at the first evaluation with non-finite parameters; the last finite checkpoint stays
    (checkpoints after every chunk here, instead of once a minute)."""
    monkeypatch.setattr("jax_ec.checkpoint.Checkpointer.due", lambda self, scheme, now: True)
    config = tmp_path / "diverge.yaml"
    data = copy.deepcopy(SYNTHETIC)
    data.update(b=0, attack="none", trials=2, steps=12, eval_every=2,
                optim={"lr": 0.05, "lr_boundaries": [], "worker_momentum": 0.0, "weight_decay": 1.0},
                schemes=[{"name": "mean_sgd", "code": "uncoded", "aggregator": "mean", "lr": 1e10}])
    config.write_text(json.dumps(data))  # JSON is YAML
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--no-progress"]) == 3
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert line.startswith("jax-ec: error: scheme 'mean_sgd' diverged in steps 3..4: trial(s) 0, 1 have "
                           "non-finite parameters"), line
    assert "checkpoint of step 2" in line and "smaller step size" in line
    assert not (out / "metrics.csv").exists() and not (out / "curves.png").exists()
    with np.load(out / CHECKPOINT_DIR / "group0.npz") as z:
        meta = json.loads(z["__meta__"].tobytes().decode())
        assert (meta["chunks_done"], meta["steps_done"], meta["finished"]) == (1, 2, False)
        assert all(np.isfinite(z[name]).all() for name in z.files if name.startswith("leaf_")
                   and np.issubdtype(z[name].dtype, np.floating))


def test_divergence_check_names_trials_and_ignores_metrics_undefined_from_the_start():
    ids = np.array([4, 5, 6])
    ok = np.array([True, True, True])
    # A metric that is NaN from step 0 on (e.g. an AUC on a one-class test set) is not a divergence.
    _check_finite(["s"] * 3, ids, np.array([np.nan, 0.5, 0.5]), (ok, ok), np.array([np.nan, 0.5, 0.5]), 0, 2, None)
    with pytest.raises(DivergenceError) as info:
        _check_finite(["s"] * 3, ids, np.array([0.5, np.nan, 0.5]), (np.array([True, True, False]), ok),
                      np.array([0.5, 0.5, 0.5]), 10, 20, None)
    err = info.value
    assert isinstance(err, RuntimeError)
    assert (err.scheme, err.trials, err.last_finite_step, err.step) == ("s", [5, 6], 10, 20)
    assert err.what == "parameters and metric" and "steps 11..20" in str(err) and "\n" not in str(err)
    with pytest.raises(DivergenceError) as info:
        _check_finite(["s"] * 3, ids, np.array([0.5, 0.5, 0.5]), (ok, np.array([True, False, True])),
                      np.array([0.5, 0.5, 0.5]), 10, 20, None)
    assert info.value.trials == [5] and info.value.what == "partition gradients"


@pytest.mark.parametrize("scheme", [
    {"name": "s", "code": "bernoulli", "r": 2.0},                                     # leafwise fused vote
    {"name": "s", "code": "bernoulli", "r": 2.0, "noise_std": 0.01},                  # per-copy noise loop
    {"name": "s", "code": "uncoded", "aggregator": "median"},
])
def test_a_non_finite_honest_partition_gradient_is_a_divergence(tmp_path, scheme):
    """A NaN in one training sample makes its partition's gradient NaN. The vote would only void the
    coordinates of that partition's holders and the parameters would stay finite; the run must stop
    with the divergence error naming the partition gradients instead of going on silently."""
    from dataclasses import replace as dc_replace

    from jax_ec.config import config_from_dict
    from jax_ec.tasks import make_task
    data = copy.deepcopy(SYNTHETIC)
    data.update(b=1, attack="reverse", trials=2, steps=6, eval_every=2, schemes=[scheme],
                task={**data["task"], "shuffle": False})
    cfg = config_from_dict(data)
    task = make_task(cfg.task)
    x = np.array(task.train_x, copy=True)
    x[3 * cfg.batch_size + 1, 0] = np.nan     # a sample of step 3's minibatch
    with pytest.raises(DivergenceError) as info:
        run_experiment(cfg, tmp_path / "out", progress_bar=False, task=dc_replace(task, train_x=x))
    assert "partition gradients" in info.value.what and info.value.trials == [0, 1]
    assert info.value.step == 4 and info.value.last_finite_step == 2
    assert not (tmp_path / "out" / "metrics.csv").exists()


# ---------------------------------------------------------------------------------------------
# Known pitfalls of peer code
# ---------------------------------------------------------------------------------------------

DIGITS_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "digits_byzantine40.yaml")


@pytest.mark.parametrize("flag, field, config", [
    ("task.shuffle", lambda c: c.task.shuffle, []), ("runtime.memory_check", lambda c: c.runtime.memory_check, []),
    # image-task fields: refused on the Amazon task, so set on the digits config
    ("task.download", lambda c: c.task.download, [DIGITS_CONFIG]),
    ("task.augment", lambda c: c.task.augment, [DIGITS_CONFIG]),
    ("schemes.2.nonempty_rows", lambda c: c.schemes[2].nonempty_rows, []),   # a Bernoulli scheme
])
def test_boolean_flags_parse_as_booleans_on_the_command_line(flag, field, config, monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr("jax_ec.experiment.run_experiment",
                        lambda cfg, out, **kw: seen.append(cfg) or SimpleNamespace(table=lambda: "", out_dir=out))
    for text, value in (("False", False), ("false", False), ("no", False), ("True", True), ("yes", True)):
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["run", *config, "--no-progress", "--out", str(tmp_path), "--set", f"{flag}={text}"]) == 0
        assert field(seen[-1]) is value, (flag, text)
    for bad in ("maybe", "2", "[true]"):
        with contextlib.redirect_stderr(io.StringIO()) as err:
            assert main(["run", *config, "--no-progress", "--out", str(tmp_path), "--set", f"{flag}={bad}"]) == 2
        assert f"{flag.replace('schemes.2', 'schemes[2]')}: got" in err.getvalue(), (flag, bad)
        assert "expected a boolean" in err.getvalue() or "expected bool" in err.getvalue(), (flag, bad)


FIXED_PLACEMENTS = tuple(p for p in PLACEMENTS if p not in ADAPTIVE_PLACEMENTS)
WORKER_CASES = [("uncoded", 7, 3), ("bernoulli", 7, 3), ("paper_n5", 5, 2), ("draco", 7, 2), ("matrix", 5, 4)]


def test_every_trial_simulates_n_workers_with_exactly_b_byzantine():
    """For every code and placement (per_step: on one code), G has n rows in every trial; the
    Byzantine set has exactly b distinct workers, all < n (also redrawn per step), and under uniform
    placements every worker, the last one included, is Byzantine in some trial (the peer script
    simulated only n − 1)."""
    T, cases = 48, []
    for code, n, b in WORKER_CASES:
        # (the adaptive placements choose their set at every step: tests/test_adaptive.py)
        for placement in FIXED_PLACEMENTS if code == "bernoulli" else ("uniform", "most_loaded"):
            scheme = {"name": "s", "code": code}
            if code == "bernoulli":
                scheme["r"] = 2
            if code == "matrix":
                scheme["matrix"] = [[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 0, 0], [0, 1, 0]]
            k = {"paper_n5": 5, "matrix": 3}.get(code, n)
            cfg = synthetic(n=n, b=b, placement=placement, batch_size=k * 4, schemes=[scheme])
            cases.append((code, n, b, k, placement, build(cfg, "s", make_task(cfg.task, cfg.seed))))

    @jax.jit
    def draws(keys):
        out = []
        for *_, (train, params, scheme, _) in cases:
            states = jax.vmap(lambda key: train.init(key, params))(keys)
            G, byz = states.G, states.byzantine
            per_step = jax.vmap(lambda kp: jax.vmap(lambda t: uniform_placement(jax.random.fold_in(kp, t), scheme.static.n,
                                                                                params.b))(jnp.arange(6)))(
                states.keys.placement) if scheme.static.placement == "per_step" else byz
            out.append((G, byz, per_step))
        return out

    for (code, n, b, k, placement, _), (G, byz, per_step) in zip(cases, draws(trial_keys(0, T))):
        G, byz, per_step = np.asarray(G), np.asarray(byz), np.asarray(per_step)
        where = (code, placement)
        assert G.shape == (T, n, k) and byz.shape == (T, n) and byz.dtype == bool, where
        assert (byz.sum(axis=1) == b).all(), where
        if placement == "per_step":
            assert per_step.shape == (T, 6, n) and (per_step.sum(axis=2) == b).all(), where
            byz = per_step.reshape(-1, n)
        if placement != "most_loaded":
            assert byz.any(axis=0).all(), f"{where}: some worker is never Byzantine"


def test_every_attack_changes_the_update_direct_trainer():
    """Dense trainer, sign vote and a real-valued aggregator: the first step's update under every
    attack differs from the no-attack update of the same trial (same data, code and Byzantine set)."""
    task = make_task(synthetic().task, SYNTHETIC["seed"])
    data = tuple(jnp.asarray(a) for a in task.data())
    trainers = {(aggregator, attack): build(synthetic(attack=attack, schemes=[
                    {"name": "s", "code": "uncoded", "aggregator": aggregator}]), "s", task)[:2]
                for aggregator in ("vote", "median") for attack in ATTACKS
                if attack in (VOTE_ATTACKS if aggregator == "vote" else REAL_ATTACKS)}   # the forms each has
    initial = task.init(jax.random.PRNGKey(7))
    directions = jax.jit(lambda key: {name: tr.update(tr.init(key, p, initial), p, data)[0]
                                      for name, (tr, p) in trainers.items()})(jax.random.PRNGKey(3))
    for (aggregator, attack), v in directions.items():
        if attack != "none":
            assert not np.array_equal(np.asarray(v), np.asarray(directions[aggregator, "none"])), (aggregator, attack)


def test_every_attack_changes_the_run_sparse_trainer():
    """The Amazon touched-coordinates trainer: 4 steps under each attack it supports differ from
    4 steps without attack."""
    base = ["task.n_train=1500", "steps=4", "eval_every=4", "trials=1"]
    cfg, _ = load_config(None, base)
    task = make_task(cfg.task, cfg.seed)
    data = tuple(jnp.asarray(a) for a in task.data())
    trainers = {attack: build(load_config(None, [*base, f"attack={attack}"])[0], "signsgd_mv", task)
                for attack in SPARSE_ATTACKS}
    for attack, (_, _, scheme, runtime) in trainers.items():
        assert runtime.formulation == "touched_coordinates" and scheme.static.attack == attack

    @jax.jit
    def finals(key):
        return {a: tr.model(tr.run(tr.init(key, p), p, data, 4), p)[0]["w"] for a, (tr, p, _, _) in trainers.items()}

    out = finals(jax.random.PRNGKey(0))
    for attack in SPARSE_ATTACKS:
        if attack != "none":
            assert not np.array_equal(np.asarray(out[attack]), np.asarray(out["none"])), attack


def test_config_errors_are_value_errors_named_by_field():
    with pytest.raises(ConfigError, match=r"^b: got 5; expected 0 <= b < n = 5"):
        synthetic(b=5)


# ---------------------------------------------------------------------------------------------
# Sizes the machine cannot hold
# ---------------------------------------------------------------------------------------------

def test_a_run_too_large_for_the_device_is_refused_before_compiling(monkeypatch, tmp_path):
    """The lower bound counts the data, the pairs' states and the vmapped dense step arrays;
    above the available memory the run stops with one ConfigError naming the sizes and the ways out."""
    from jax_ec import runtime as runtime_module
    cfg = synthetic(trials=64, n=15, b=2, batch_size=30, runtime={"trial_batching": "vmap"})
    task = make_task(cfg.task, cfg.seed)
    train, params, scheme, rt = build(cfg, "bern", task, trials=64)
    one = jax.eval_shape(train.init, jax.random.PRNGKey(0), params)
    need = runtime_module.lower_bound_bytes(train, rt, scheme.static, one, 64, task.data())
    d, k, n = train.num_params, scheme.static.k, scheme.static.n
    assert need["step"] == 64 * 4 * d * (2 * k + n)            # 64 pairs vmapped
    assert need["states"] == 64 * runtime_module._tree_bytes(one)
    assert need["data"] == sum(np.asarray(a).nbytes for a in task.data())
    mapped = runtime_module.lower_bound_bytes(train, rt.__class__(**{**rt.__dict__, "trial_batching": "map"}),
                                              scheme.static, one, 64, task.data())
    assert mapped["step"] == need["step"] // 64                # one pair's step at a time
    total = sum(need.values())
    monkeypatch.setattr(runtime_module, "available_bytes", lambda device=None: total - 1)
    compiled = []
    monkeypatch.setattr(jax, "jit", lambda *a, **k: compiled.append(a) or (_ for _ in ()).throw(AssertionError))
    with pytest.raises(ConfigError, match=r"trials: 64 trials × 1 scheme\(s\) \(bern; .*\) need at least .* GiB on one "
                                          r"device \(data .*states .*step .*\).*available on cpu; try fewer trials, "
                                          r"runtime.trial_batching: map"):
        run_experiment(cfg, tmp_path / "out", progress_bar=False)
    assert not compiled
    monkeypatch.undo()
    monkeypatch.setattr(runtime_module, "available_bytes", lambda device=None: total)
    runtime_module.check_memory(need, "64 trials", rt)          # exactly enough: passes


def test_the_memory_check_can_be_turned_off_and_reads_the_host(monkeypatch, tmp_path):
    from jax_ec import runtime as runtime_module
    assert runtime_module.available_bytes() > 0                 # /proc/meminfo on the CPU backend
    cfg = synthetic(runtime={"memory_check": False})
    monkeypatch.setattr(runtime_module, "available_bytes", lambda device=None: 1)
    run_experiment(cfg, tmp_path / "out", progress_bar=False)  # runs: the check is off
    with pytest.raises(ConfigError, match="runtime.memory_check: false"):
        run_experiment(synthetic(), tmp_path / "out2", progress_bar=False)


# End-to-end and subprocess tests: `python -m pytest -m slow` (CI runs them after the default set).
pytestmark = pytest.mark.slow
