"""Tests for the command line (jax_ec.cli): clear one-line errors with exit code 2, and a tiny
end-to-end run of the packaged Amazon job that writes every result file."""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import io
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from builders import one_error_line
from jax_ec.cli import main
from jax_ec.config import load_config

TINY = ["--set", "steps=6", "--set", "eval_every=3", "--set", "task.n_train=1500"]
TINY_OVERRIDES = ["steps=6", "eval_every=3", "task.n_train=1500"]


@pytest.mark.parametrize("override, field, fragment", [
    ("trials=0", "trials", "expected an integer >= 1"),
    ("attack=nuke", "attack", "allowed: none, reverse, directional"),
    ("trails=3", "trails", "did you mean 'trials'"),
    ("optim.lr=-1", "optim.lr", "expected a step size > 0"),
    ("schemes.2.r=99", "schemes[2].r", "(0, 15]"),
    ("schemes.9.r=2", "--set schemes.9.r", "not a valid index"),
    ("b=15", "b", "b < n = 15"),
    ("batch_size=100", "batch_size", "k = 15"),
])
def test_bad_set_exits_2_with_one_line(override, field, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--no-progress", "--set", override]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"jax-ec: error: {field}: "), line
    assert fragment in line, line
    assert not (tmp_path / "results").exists()  # nothing written for a bad config


def test_set_without_equals_exits_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--set", "trials"]) == 2
    assert "expected key=value" in one_error_line(capsys)


@pytest.mark.parametrize("trials", ["0", "-3"])
def test_trials_flag_below_one_exits_2(trials, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--trials", trials]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"jax-ec: error: --trials: got {trials}"), line


def test_missing_config_file_exits_2(capsys, tmp_path):
    missing = tmp_path / "missing.yaml"
    assert main(["run", str(missing)]) == 2
    line = one_error_line(capsys)
    assert str(missing) in line and "does not exist" in line


def test_missing_data_file_exits_2(capsys, tmp_path):
    missing = tmp_path / "nowhere" / "train.csv"
    rc = main(["run", "--out", str(tmp_path / "out"), "--no-progress", "--trials", "2",
               "--set", f"task.data_path={missing}"])
    assert rc == 2
    line = one_error_line(capsys)
    assert str(missing) in line


def test_n_train_too_large_exits_2(capsys, tmp_path):
    rc = main(["run", "--out", str(tmp_path / "out"), "--no-progress", "--trials", "2",
               "--set", "task.n_train=40000"])
    assert rc == 2
    assert "task.n_train" in one_error_line(capsys)


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--trials", "many"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    capsys.readouterr()


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jax_ec.cli", "run", "--set", "n=0"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("jax-ec: error: n: got 0"), proc.stderr
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_console_script_is_installed():
    (ep,) = importlib.metadata.entry_points(group="console_scripts", name="jax-ec")
    assert ep.value == "jax_ec.cli:main"
    assert ep.load() is main


# ---------------------------------------------------------------------------------------------
# Tiny end-to-end run of the packaged Amazon job
# ---------------------------------------------------------------------------------------------

SCHEMES = ["no_attack", "signsgd_mv", "bernoulli_p2_15"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_run")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["run", "--out", str(out), "--no-progress", "--trials", "2", *TINY])
    return rc, stdout.getvalue(), stderr.getvalue(), out


def _metrics_rows(out):
    with open(out / "metrics.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, list(reader)


def test_tiny_run_prints_summary_table(tiny_run):
    rc, stdout, stderr, out = tiny_run
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    assert "final mean" in stdout
    for scheme in SCHEMES:
        assert scheme in stdout
    assert (out / "summary.txt").read_text().strip() in stdout
    assert "results written to" in stdout and str(out) in stdout


def test_tiny_run_writes_every_file(tiny_run):
    out = tiny_run[3]
    for name in ("metrics.csv", "summary.csv", "summary.txt", "config.yaml", "run.json", "curves.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_tiny_run_metrics_csv(tiny_run):
    out = tiny_run[3]
    header, rows = _metrics_rows(out)
    assert header == ["scheme", "trial", "step", "epoch", "sim_time", "wall_time", "metric_name", "metric"]
    assert len(rows) == 3 * 2 * 3
    keys = [(r[0], int(r[1]), int(r[2])) for r in rows]
    assert keys == [(s, t, step) for s in SCHEMES for t in range(2) for step in (0, 3, 6)]
    assert {r[6] for r in rows} == {"test_auc"}
    metric = np.array([float(r[7]) for r in rows])
    assert np.all((metric >= 0) & (metric <= 1))
    # AUC of the zero initialisation is 0.5 (all scores equal).
    assert all(float(r[7]) == pytest.approx(0.5) for r in rows if int(r[2]) == 0)
    wall = np.array([float(r[5]) for r in rows])
    assert np.all(np.isfinite(wall)) and np.all(wall >= 0)
    info = json.loads((out / "run.json").read_text())["schemes"]
    for r in rows:   # the epoch of every evaluation: step / steps per epoch
        assert float(r[3]) == pytest.approx(int(r[2]) / info[r[0]]["steps_per_epoch"])


def test_tiny_run_sim_time_is_step_times_max_load(tiny_run):
    out = tiny_run[3]
    _, rows = _metrics_rows(out)
    info = json.loads((out / "run.json").read_text())["schemes"]
    for scheme, trial, step, _epoch, sim_time, *_ in rows:
        max_load = info[scheme]["max_load"][int(trial)]
        assert float(sim_time) == pytest.approx(int(step) * max_load), (scheme, trial, step)
        if scheme in ("no_attack", "signsgd_mv"):
            assert max_load == 1
            assert float(sim_time) == int(step)


def test_tiny_run_summary_csv(tiny_run):
    out = tiny_run[3]
    with open(out / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert [r["scheme"] for r in summary] == SCHEMES
    for col in ("final_mean", "final_ci_low", "final_ci_high", "trials", "metric"):
        assert col in summary[0]
    _, rows = _metrics_rows(out)
    for r in summary:
        assert int(r["trials"]) == 2
        assert r["metric"] == "test_auc"
        finals = [float(m[7]) for m in rows if m[0] == r["scheme"] and int(m[2]) == 6]
        assert float(r["final_mean"]) == pytest.approx(np.mean(finals))
        assert float(r["final_ci_low"]) <= float(r["final_mean"]) <= float(r["final_ci_high"])


def test_tiny_run_config_yaml_reloads(tiny_run):
    out = tiny_run[3]
    expected, _ = load_config(None, TINY_OVERRIDES, trials=2)
    assert load_config(out / "config.yaml")[0] == expected


def test_tiny_run_json(tiny_run):
    out = tiny_run[3]
    run = json.loads((out / "run.json").read_text())
    assert run["name"] == "amazon_paper" and run["trials"] == 2 and run["seed"] == 0
    assert run["metadata"]["versions"]["jax"] == jax.__version__
    schemes = run["schemes"]
    assert list(schemes) == SCHEMES
    for name, info in schemes.items():
        assert len(info["redundancy"]) == 2
        assert len(info["max_load"]) == 2
        assert info["steps"] == 6
        assert len(info["byzantine_workers"]) == 2
        expected_b = 0 if name == "no_attack" else 5
        for workers in info["byzantine_workers"]:
            assert len(workers) == expected_b
            assert len(set(workers)) == expected_b and all(0 <= w < 15 for w in workers)
    assert schemes["no_attack"]["redundancy"] == [1.0, 1.0]
    assert schemes["signsgd_mv"]["redundancy"] == [1.0, 1.0]
    for r in schemes["bernoulli_p2_15"]["redundancy"]:
        assert 0 <= r <= 15
    # Common random numbers: the same Byzantine set per trial across attacked schemes.
    assert schemes["signsgd_mv"]["byzantine_workers"] == schemes["bernoulli_p2_15"]["byzantine_workers"]
