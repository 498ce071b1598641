"""Tests for jax_ec.experiment: the results folder of a tiny run, common random numbers across
schemes, trial batching (map = vmap), determinism per seed, and the trial keys."""

from __future__ import annotations

import copy
import csv
import json

import jax
import numpy as np
import pytest

from jax_ec.config import config_from_dict, load_config
from jax_ec.experiment import run_experiment, trial_keys
from jax_ec.results import METRICS_COLUMNS, SUMMARY_COLUMNS

MATRIX = [[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 0, 0], [0, 1, 0]]

SYNTHETIC = {
    "name": "synthetic_tiny",
    "seed": 0,
    "trials": 3,
    "task": {"name": "synthetic", "num_samples": 512, "num_features": 8, "hidden": [16]},
    "n": 5,
    "b": 1,
    "attack": "reverse",
    "placement": "uniform",
    "partitioning": "split",
    "batch_size": 60,
    "steps": 8,
    "eval_every": 4,
    "optim": {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "worker_momentum": 0.0},
    "schemes": [
        {"name": "uncoded", "code": "uncoded"},
        {"name": "bernoulli_r2", "code": "bernoulli", "r": 2},
        {"name": "paper_n5", "code": "paper_n5"},
        {"name": "matrix", "code": "matrix", "matrix": MATRIX},
    ],
}
SCHEMES = [s["name"] for s in SYNTHETIC["schemes"]]


def synthetic(**changes):
    data = copy.deepcopy(SYNTHETIC)
    data.update(changes)
    return config_from_dict(data)


def read_metrics(out) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == METRICS_COLUMNS
        return list(reader)


def column(rows: list[dict], name: str, scheme: str | None = None) -> np.ndarray:
    values = [r[name] for r in rows if scheme is None or r["scheme"] == scheme]
    return np.array(values, dtype=float if name != "scheme" else object)


@pytest.fixture(scope="module")
def synthetic_map(tmp_path_factory):
    """The tiny synthetic experiment, trials batched with lax.map."""
    out = tmp_path_factory.mktemp("synthetic_map")
    cfg = synthetic(runtime={"trial_batching": "map"})
    result = run_experiment(cfg, out, progress_bar=False)
    return cfg, result, out


def test_run_experiment_writes_results(synthetic_map):
    cfg, result, out = synthetic_map
    for name in ("metrics.csv", "summary.csv", "summary.txt", "config.yaml", "run.json", "curves.png"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.out_dir == out
    assert load_config(out / "config.yaml")[0] == cfg

    rows = read_metrics(out)
    assert len(rows) == 4 * 3 * 3
    assert [(r["scheme"], int(r["trial"]), int(r["step"])) for r in rows] == [
        (s, t, step) for s in SCHEMES for t in range(3) for step in (0, 4, 8)]
    assert {r["metric_name"] for r in rows} == {"test_accuracy"}
    metric = column(rows, "metric")
    assert np.all(np.isfinite(metric)) and np.all((metric >= 0) & (metric <= 1))
    # The runs learn something: mean final accuracy beats chance (4 classes) for every scheme.
    for s in SCHEMES:
        final = [float(r["metric"]) for r in rows if r["scheme"] == s and int(r["step"]) == 8]
        assert np.mean(final) > 0.25, s

    with open(out / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert [r["scheme"] for r in summary] == SCHEMES
    assert tuple(summary[0]) == SUMMARY_COLUMNS
    assert [r["scheme"] for r in result.summary] == SCHEMES
    assert result.table() in (out / "summary.txt").read_text()
    assert len(result.runs) == 4


def test_run_json_codes_and_sim_time(synthetic_map):
    _, _, out = synthetic_map
    run = json.loads((out / "run.json").read_text())
    info = run["schemes"]
    assert list(info) == SCHEMES
    assert info["uncoded"]["redundancy"] == [1.0] * 3
    assert info["uncoded"]["max_load"] == [1.0] * 3
    assert info["matrix"]["redundancy"] == [pytest.approx(8 / 5)] * 3
    assert info["matrix"]["max_load"] == [2.0] * 3
    assert len(set(info["paper_n5"]["redundancy"])) == 1  # a fixed code
    for s in SCHEMES:
        assert info[s]["trainer"] == "dense"  # synthetic MLP: the dense formulation
        assert info[s]["steps"] == 8
    rows = read_metrics(out)
    for r in rows:
        load = info[r["scheme"]]["max_load"][int(r["trial"])]
        assert float(r["sim_time"]) == pytest.approx(int(r["step"]) * load)


def test_common_random_numbers_across_schemes(synthetic_map):
    """Uniform placement: trial t has the same Byzantine set in every scheme."""
    _, _, out = synthetic_map
    info = json.loads((out / "run.json").read_text())["schemes"]
    byz = [info[s]["byzantine_workers"] for s in SCHEMES]
    assert all(len(b) == 3 for b in byz)
    assert all(len(workers) == 1 for workers in byz[0])
    for other in byz[1:]:
        assert other == byz[0]


@pytest.mark.slow   # a whole run; the default set keeps a shorter one of its kind
def test_trial_batching_map_equals_vmap_synthetic(synthetic_map, tmp_path):
    """vmap gives the map numbers bitwise, whichever schemes share the call (a subset of the
    schemes is compared against the same schemes of the full map run)."""
    _, _, out_map = synthetic_map
    coded = ["bernoulli_r2", "matrix"]
    cfg = synthetic(runtime={"trial_batching": "vmap"}, schemes=[s for s in SYNTHETIC["schemes"] if s["name"] in coded])
    run_experiment(cfg, tmp_path, progress_bar=False)
    a = [r for r in read_metrics(out_map) if r["scheme"] in coded]
    b = read_metrics(tmp_path)
    assert len(b) == 2 * 3 * 3
    for name in ("scheme", "trial", "step", "metric_name"):
        assert [r[name] for r in a] == [r[name] for r in b]
    for name in ("metric", "sim_time"):
        np.testing.assert_array_equal(column(a, name), column(b, name))


@pytest.fixture(scope="module")
def amazon_map_vmap(tmp_path_factory):
    """The tiny Amazon job (touched-coordinates trainer) with trials under lax.map and jax.vmap."""
    overrides = ["task.n_train=1500", "steps=12", "eval_every=6", "trials=2",
                 "schemes=[{name: signsgd_mv}, {name: bernoulli_r2, code: bernoulli, r: 2}]"]
    results = {}
    for mode in ("map", "vmap"):
        cfg, _ = load_config(None, [*overrides, f"runtime.trial_batching={mode}"])
        out = tmp_path_factory.mktemp(f"amazon_{mode}")
        run = run_experiment(cfg, out, progress_bar=False)
        assert {r.trainer for r in run.runs} == {"touched_coordinates"}
        results[mode] = read_metrics(out)
    return results["map"], results["vmap"]


@pytest.mark.slow   # a whole run; the default set keeps a shorter one of its kind
def test_trial_batching_map_close_to_vmap_amazon(amazon_map_vmap):
    a, b = amazon_map_vmap
    assert len(a) == 2 * 2 * 3
    assert [int(r["step"]) for r in a[:3]] == [0, 6, 12]
    for name in ("scheme", "trial", "step", "metric_name"):
        assert [r[name] for r in a] == [r[name] for r in b]
    np.testing.assert_array_equal(column(a, "sim_time"), column(b, "sim_time"))
    np.testing.assert_allclose(column(a, "metric"), column(b, "metric"), rtol=0, atol=1e-4)
    assert np.all((column(a, "metric") >= 0) & (column(a, "metric") <= 1))


def test_same_seed_is_bitwise_reproducible_and_seed_matters(tmp_path):
    small = dict(trials=2, runtime={"trial_batching": "map"}, schemes=[SYNTHETIC["schemes"][1]])
    runs = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / label
        run_experiment(synthetic(seed=seed, **small), out, progress_bar=False)
        runs[label] = (read_metrics(out), json.loads((out / "run.json").read_text())["schemes"])
    (a, info_a), (b, info_b), (c, _) = runs["a"], runs["b"], runs["c"]
    for name in ("metric", "sim_time"):
        np.testing.assert_array_equal(column(a, name), column(b, name))
    for s in ("bernoulli_r2",):
        for key in ("redundancy", "max_load", "byzantine_workers"):
            assert info_a[s][key] == info_b[s][key]
    # A different seed gives a different run of the bernoulli scheme (code draw and curves).
    assert not np.array_equal(column(a, "metric", "bernoulli_r2"), column(c, "metric", "bernoulli_r2"))


@pytest.mark.parametrize("seed, trials", [(0, 4), (123, 3)])
def test_trial_keys_are_fold_in(seed, trials):
    keys = trial_keys(seed, trials)
    assert keys.shape[0] == trials
    for t in range(trials):
        expected = jax.random.fold_in(jax.random.PRNGKey(seed), t)
        np.testing.assert_array_equal(np.asarray(keys[t]), np.asarray(expected))
    # Independent of how many trials are requested (trial t's key never moves).
    np.testing.assert_array_equal(np.asarray(trial_keys(seed, trials + 2)[:trials]), np.asarray(keys))


def test_auto_trial_batching_follows_the_pairs_per_device():
    """``trial_batching: auto`` on the CPU: ``map`` for a model without convolutions below
    CPU_VMAP_MIN_TRIALS (scheme, trial) pairs per device, ``vmap`` from there until the pairs'
    partition gradients pass CPU_VMAP_MAX_BYTES; an explicit mode is kept."""
    from jax_ec.plan import group_schemes, make_schemes
    from jax_ec.runtime import CPU_VMAP_MAX_BYTES, CPU_VMAP_MIN_TRIALS, choose
    from jax_ec.tasks import make_task
    if jax.default_backend() != "cpu":
        pytest.skip("the rule under test is the CPU's")
    cfg = synthetic()
    task = make_task(cfg.task, cfg.seed)
    group = group_schemes(make_schemes(cfg, task.num_train))[0]
    assert len(group.schemes) == 3   # uncoded, Bernoulli and paper_n5 share a shape; the 3-column matrix not

    def mode(pairs, **forced):
        return choose("cpu", task, group.static, pairs, group.total_steps, cfg.runtime.model_copy(update=forced)
                      ).trial_batching
    assert mode(CPU_VMAP_MIN_TRIALS - 1) == "map"
    assert mode(CPU_VMAP_MIN_TRIALS) == "vmap"
    assert mode(CPU_VMAP_MIN_TRIALS, trial_batching="map") == "map"
    assert mode(1, trial_batching="vmap") == "vmap"
    d = sum(np.prod(x.shape) for x in jax.tree.leaves(jax.eval_shape(task.init, jax.random.PRNGKey(0))[0]))
    assert mode(int(CPU_VMAP_MAX_BYTES // (4 * group.static.k * d)) + 1) == "map"   # past the working-set limit
    # The experiment counts pairs: 3 schemes × 3 trials = 9 pairs per device, so vmap.
    assert mode(3 * cfg.trials) == "vmap"


def test_per_step_placement_reports_no_fixed_byzantine_set(tmp_path):
    """Under per_step placement the set is redrawn at every step: run.json must not name a set that
    no step used (the trial's initial draw), only that it was redrawn."""
    out = tmp_path / "per_step"
    run_experiment(synthetic(trials=2, steps=2, eval_every=2, placement="per_step",
                             schemes=[SYNTHETIC["schemes"][1]]), out, progress_bar=False)
    info = json.loads((out / "run.json").read_text())["schemes"]["bernoulli_r2"]
    assert info["byzantine_workers"] is None and info["placement"] == "per_step" and info["b"] == 1


def test_schemes_of_different_steps_per_epoch_align_by_epoch(tmp_path):
    """A ρ = 0.5 scheme takes twice the steps per epoch; evaluated every epoch, both schemes' rows
    of metrics.csv carry the same epochs, and the summary gives epochs to the target."""
    out = tmp_path / "rho"
    cfg = synthetic(trials=2, steps=None, epochs=2, eval_every_epochs=1, target=0.0,
                    schemes=[{"name": "full", "code": "uncoded"},
                             {"name": "half", "code": "bernoulli", "r": 2, "rho": 0.5}])
    result = run_experiment(cfg, out, progress_bar=False)
    rows = read_metrics(out)
    for scheme, spe in (("full", 9), ("half", 17)):   # round(512 / 60), round(512 / 30)
        steps, epochs = column(rows, "step", scheme), column(rows, "epoch", scheme)
        np.testing.assert_array_equal(epochs, steps / spe)
    np.testing.assert_array_equal(np.unique(column(rows, "epoch", "full")), [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(np.unique(column(rows, "epoch", "half")), [0.0, 1.0, 2.0])
    info = json.loads((out / "run.json").read_text())["schemes"]
    assert info["half"]["steps_per_epoch"] == 17 and info["full"]["steps_per_epoch"] == 9
    assert info["half"]["bits_per_worker_epoch"] == 17 * info["half"]["bits_per_worker_step"]
    assert all(r["epochs_to_target_mean"] == 0.0 for r in result.summary)


def test_a_sweep_runs_as_one_call_and_reports_like_ordinary_schemes(tmp_path):
    """A scheme swept over b × r expands into named schemes that share one compiled call with the
    unswept ones; metrics, summary, run.json and the report treat them as ordinary schemes, and a
    one-dimensional sweep gets its plot of the final metric against the field."""
    from jax_ec.report import write_report
    out = tmp_path / "sweep"
    cfg = synthetic(trials=2, steps=4, eval_every=2, schemes=[
        {"name": "mv", "code": "uncoded", "sweep": {"b": [0, 1, 2]}},
        {"name": "bern", "code": "bernoulli", "r": 2, "sweep": {"b": [1, 2], "r": [2, 3]}}])
    result = run_experiment(cfg, out, progress_bar=False)
    names = ["mv[b=0]", "mv[b=1]", "mv[b=2]", "bern[b=1,r=2]", "bern[b=1,r=3]", "bern[b=2,r=2]", "bern[b=2,r=3]"]
    assert [r["scheme"] for r in result.summary] == names
    run = json.loads((out / "run.json").read_text())
    assert [g["schemes"] for g in run["groups"]] == [names]          # one compiled call
    assert run["schemes"]["bern[b=2,r=3]"]["swept_from"] == "bern"
    assert run["schemes"]["bern[b=2,r=3]"]["sweep_point"] == {"b": 2, "r": 3}
    assert run["schemes"]["bern[b=2,r=3]"]["b"] == 2
    assert [len(b[0]) for b in (run["schemes"][n]["byzantine_workers"] for n in names[:3])] == [0, 1, 2]
    assert (out / "sweep_b.png").read_bytes()[:4] == b"\x89PNG"     # mv is swept over b alone
    assert not (out / "sweep_r.png").exists()                        # bern is swept over two fields
    assert {r["scheme"] for r in read_metrics(out)} == set(names)
    report = write_report([out], tmp_path / "rep" / "report.md")
    text = report.read_text()
    assert "bern[b=2,r=3]" in text and "sweep_b.png" in text
    assert (tmp_path / "rep" / "sweep_sweep_b.png").is_file()
