"""Checkpoint and resume: a real `jax-ec run` subprocess killed with SIGKILL resumes and ends with
exactly the metrics of an uninterrupted run (every column but wall_time), whether it was killed in
the middle of a scheme or between two schemes; checkpoints of another config are refused; the
checkpoint files are written atomically.

The killed runs pause (sleep) right after a chosen checkpoint write, through a wrapper that patches
:class:`jax_ec.checkpoint.Checkpointer` in the child process only, so the SIGKILL lands at a known
point and the test is deterministic. All subprocesses share a persistent XLA compilation cache (a
temporary folder) so that only the first one pays for compiling.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from jax_ec._io import save_npz_atomic
from jax_ec.checkpoint import CHECKPOINT_DIR, Checkpointer, CheckpointError, config_fingerprint
from jax_ec.cli import main
from jax_ec.config import config_from_dict

CONFIG = {
    "name": "resume_tiny",
    "seed": 3,
    "trials": 2,
    "task": {"name": "synthetic", "num_samples": 256, "num_features": 8, "hidden": [8]},
    "n": 5, "b": 1, "attack": "reverse",
    "partitioning": "split", "batch_size": 20, "steps": 12, "eval_every": 2,
    "optim": {"lr": 0.05, "lr_boundaries": [], "momentum": 0.9, "worker_momentum": 0.0},
    # Two groups (one compiled call each): the sign votes of both codes, and the median.
    "schemes": [{"name": "uncoded", "code": "uncoded"}, {"name": "bern", "code": "bernoulli", "r": 2},
                {"name": "median", "code": "uncoded", "aggregator": "median", "lr": 0.01}],
}
STEPS = [0, 2, 4, 6, 8, 10, 12]
WAIT_S = 240  # bound on any wait; a healthy run needs a few seconds

# Runs the CLI in a child process that checkpoints after every chunk (instead of once a minute);
# after the first call of Checkpointer.<HOOK> it writes a marker file and sleeps, so the parent
# can SIGKILL it right there.
PAUSING_CLI = """
import os, pathlib, sys, time
import jax_ec.checkpoint as ck
ck.Checkpointer.due = lambda self, scheme, now: True
hook, marker = os.environ["PAUSE_AFTER"], pathlib.Path(os.environ["PAUSE_MARKER"])
original = getattr(ck.Checkpointer, hook)
def paused(self, *args, **kwargs):
    original(self, *args, **kwargs)
    marker.write_text(hook)
    time.sleep(600)
setattr(ck.Checkpointer, hook, paused)
from jax_ec.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("xla_cache")
    return {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def cli(config_path, out, *extra):
    return [str(config_path), "--out", str(out), "--no-progress", *extra]


def run_cli(args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jax_ec.cli", "run", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=WAIT_S)


def metrics_without_wall_time(out: Path) -> list[list[str]]:
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    wall = rows[0].index("wall_time")
    return [r[:wall] + r[wall + 1:] for r in rows]


@pytest.fixture(scope="module")
def reference(config_path, env, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    proc = run_cli(cli(config_path, out), env, out)
    assert proc.returncode == 0, proc.stderr
    assert not (out / CHECKPOINT_DIR).exists()  # removed once the results are written
    return out


def kill_at(config_path, env, out: Path, hook: str, into_empty: bool = True) -> None:
    """Start a run that pauses after its first ``hook`` call, wait for it, SIGKILL it."""
    marker = out.parent / f"{out.name}.paused"
    proc = subprocess.Popen([sys.executable, "-c", PAUSING_CLI, "run", *cli(config_path, out)],
                            env={**env, "PAUSE_AFTER": hook, "PAUSE_MARKER": str(marker)}, cwd=out.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before pausing: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint within {WAIT_S} s")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    if into_empty:
        assert not (out / "metrics.csv").exists()  # nothing final was written


def checkpoint_meta(path: Path) -> dict:
    with np.load(path) as z:
        return json.loads(z["__meta__"].tobytes().decode())


@pytest.mark.parametrize("hook", ["save_progress", "save_finished"], ids=["mid_group", "between_groups"])
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(hook, reference, config_path, env, tmp_path, capsys):
    out = tmp_path / "run"
    kill_at(config_path, env, out, hook)
    ckpt = out / CHECKPOINT_DIR
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.yaml", "group0.npz"]  # no torn or temporary file
    meta = checkpoint_meta(ckpt / "group0.npz")
    if hook == "save_progress":
        assert (meta["finished"], meta["chunks_done"], meta["steps_done"]) == (False, 1, 2)
        # The same folder with another config is refused with one line before anything runs.
        before = (ckpt / "group0.npz").read_bytes(), (ckpt / "config.yaml").read_text()
        assert not (out / "config.yaml").exists()    # nothing is published before the run finishes
        assert main(["run", *cli(config_path, out), "--set", "seed=4"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("jax-ec: error: checkpoints: "), err
        assert "different config (seed: " in err[0] and "--fresh" in err[0]   # names the field that differs
        assert ((ckpt / "group0.npz").read_bytes(), (ckpt / "config.yaml").read_text()) == before
    else:
        assert (meta["finished"], meta["chunks_done"], meta["steps_done"]) == (True, 6, 12)

    proc = run_cli(cli(config_path, out), env, tmp_path)  # resumes by default
    assert proc.returncode == 0, proc.stderr
    assert metrics_without_wall_time(out) == metrics_without_wall_time(reference)
    assert len(metrics_without_wall_time(out)) == 1 + 3 * 2 * len(STEPS)
    run = json.loads((out / "run.json").read_text())
    ref = json.loads((reference / "run.json").read_text())
    resumed = {s: info["resumed_from_step"] for s, info in run["schemes"].items()}
    first = 2 if hook == "save_progress" else 12     # the first group's checkpoint; the second ran afresh
    assert resumed == {"uncoded": first, "bern": first, "median": None}
    for s in ("uncoded", "bern", "median"):
        for key in ("redundancy", "max_load", "byzantine_workers"):
            assert run["schemes"][s][key] == ref["schemes"][s][key]
    with open(out / "summary.csv") as f, open(reference / "summary.csv") as g:
        a, b = list(csv.reader(f)), list(csv.reader(g))
        wall = a[0].index("wall_time_s")
        assert [r[:wall] + r[wall + 1:] for r in a] == [r[:wall] + r[wall + 1:] for r in b]
    assert not ckpt.exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("hook", ["note_config", "save_progress", "save_finished"],
                         ids=["before_compiling", "mid_group", "between_groups"])
def test_a_kill_leaves_a_finished_folder_byte_identical(hook, reference, config_path, env, tmp_path):
    """A second run into a finished folder, killed before compiling, mid-group or between groups,
    leaves the published files as they were (its checkpoints live in the hidden .jax_ec/)."""
    import shutil
    from jax_ec.folder import check_published
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    kill_at(config_path, env, out, hook, into_empty=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert check_published(out) == []


def test_fresh_discards_checkpoints_and_resume_refuses_foreign_files(config_path, tmp_path, capsys):
    out = tmp_path / "run"
    (out / CHECKPOINT_DIR).mkdir(parents=True)
    (out / CHECKPOINT_DIR / "group0.npz").write_bytes(b"junk")
    small = ["--set", "steps=2", "--set", "schemes=[{name: uncoded, code: uncoded}]"]
    assert main(["run", *cli(config_path, out), *small]) == 2
    err = capsys.readouterr().err
    assert "jax-ec: error: checkpoints: " in err and "not a readable jax_ec checkpoint" in err
    with pytest.raises(SystemExit):  # --fresh and --resume are exclusive
        main(["run", *cli(config_path, out), "--resume", "--fresh"])
    capsys.readouterr()
    assert main(["run", *cli(config_path, out), *small, "--fresh"]) == 0
    capsys.readouterr()
    run = json.loads((out / "run.json").read_text())
    assert run["schemes"]["uncoded"]["resumed_from_step"] is None
    assert not (out / CHECKPOINT_DIR).exists()
    command = run["reproducibility"]["command"]
    assert command.startswith("jax-ec run ") and "--fresh" in command


# ---------------------------------------------------------------------------------------------
# The checkpoint files themselves (no training)
# ---------------------------------------------------------------------------------------------

def test_atomic_write_keeps_the_previous_checkpoint_on_failure(tmp_path):
    path = tmp_path / "c.npz"
    save_npz_atomic(path, {"x": np.arange(3)})
    before = path.read_bytes()

    class Boom:  # np.savez fails half-way through the archive
        def __array__(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_npz_atomic(path, {"a": np.ones(1000), "b": Boom()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left


def test_damaged_or_foreign_checkpoint_is_refused(tmp_path):
    cfg = config_from_dict(CONFIG)
    ck = Checkpointer(tmp_path / CHECKPOINT_DIR, cfg)
    ck.directory.mkdir(parents=True)
    (ck.directory / "group0.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match=r"^checkpoints: .*not a readable jax_ec checkpoint.*--fresh"):
        ck.check_config()
    save_npz_atomic(ck.directory / "group0.npz", {"__meta__": np.frombuffer(b'{"format": 99}', np.uint8)})
    with pytest.raises(CheckpointError, match=r"^checkpoints: .*format 99"):
        ck.check_config()


def test_fingerprint_ignores_out_dir_and_covers_everything_else(tmp_path):
    base = config_from_dict(CONFIG)
    assert config_fingerprint(base) == config_fingerprint(config_from_dict({**CONFIG, "out_dir": "elsewhere"}))
    for change in ({"seed": 4}, {"trials": 3}, {"steps": 10}, {"eval_every": 3},
                   {"optim": {**CONFIG["optim"], "lr": 0.06}}):
        assert config_fingerprint(config_from_dict({**CONFIG, **change})) != config_fingerprint(base), change
    # How the run executes is not part of it: a run may resume with other execution choices.
    for change in ({"runtime": {"trial_batching": "map"}}, {"runtime": {"mesh": {"trials": 2}}}):
        assert config_fingerprint(config_from_dict({**CONFIG, **change})) == config_fingerprint(base), change
    # A matrix given as a file: its contents count, not only its path.
    matrix = tmp_path / "G.csv"
    matrix.write_text("1,1,0\n0,1,1\n1,0,1\n1,0,0\n0,1,0\n")
    with_file = {**CONFIG, "batch_size": 21, "schemes": [{"name": "m", "code": "matrix", "matrix": str(matrix)}]}
    first = config_fingerprint(config_from_dict(with_file))
    matrix.write_text("1,1,0\n0,1,1\n1,0,1\n1,0,0\n0,0,1\n")
    assert config_fingerprint(config_from_dict(with_file)) != first


def test_state_with_wrong_shapes_is_refused(tmp_path):
    """A checkpoint whose state arrays do not match the scheme's eval_shape is refused."""
    import jax.numpy as jnp

    cfg = config_from_dict(CONFIG)
    ck = Checkpointer(tmp_path / CHECKPOINT_DIR, cfg)
    ids = np.arange(2)
    state = {"w": jnp.zeros((2, 3)), "step": jnp.zeros((2,), jnp.int32)}
    ck.save_progress("group0", ("uncoded",), ids, state, np.zeros((2, 2)), np.zeros(2), 1, 2, 0.0)
    good = ck.load("group0", ("uncoded",), ids, 6, lambda: state)
    assert good.chunks_done == 1 and not good.finished
    np.testing.assert_array_equal(np.asarray(good.state["w"]), np.zeros((2, 3)))
    with pytest.raises(CheckpointError, match=r"state array .* expected"):
        ck.load("group0", ("uncoded",), ids, 6, lambda: {"w": jnp.zeros((2, 4)), "step": jnp.zeros((2,), jnp.int32)})
    with pytest.raises(CheckpointError, match=r"trials \[0, 1\]"):
        ck.load("group0", ("uncoded",), np.arange(3), 6, lambda: state)
    with pytest.raises(CheckpointError, match=r"schemes \['uncoded'\]"):
        ck.load("group0", ("uncoded", "bern"), ids, 6, lambda: state)
    other = Checkpointer(tmp_path / CHECKPOINT_DIR, config_from_dict({**CONFIG, "seed": 9}))
    with pytest.raises(CheckpointError, match="different config"):
        other.load("group0", ("uncoded",), ids, 6, lambda: state)


def test_checkpoint_interval_counts_from_the_scheme_start(tmp_path):
    ck = Checkpointer(tmp_path / CHECKPOINT_DIR, config_from_dict(CONFIG), every_s=60)
    ck.start("s", 100.0)
    assert not ck.due("s", 130.0) and ck.due("s", 160.0)
    ck.save_progress("s", ("s",), np.arange(2), {"w": np.zeros((2, 1))}, np.zeros((2, 2)), np.zeros(2), 1, 2, now=160.0)
    assert ck.saved_step("s") == 2 and not ck.due("s", 200.0) and ck.due("s", 221.0)
    every_chunk = Checkpointer(tmp_path / CHECKPOINT_DIR, config_from_dict(CONFIG), every_s=0)
    every_chunk.start("s", 100.0)
    assert every_chunk.due("s", 100.0)


# ---------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM: a stop at the next safe point, one line, the progress kept
# ---------------------------------------------------------------------------------------------

# Runs the CLI in a child process that checkpoints after every chunk and signals itself right
# after its first mid-group checkpoint (SIGNALS: the signal names, sent one after the other).
SIGNALLING_CLI = """
import os, signal, sys
import jax_ec.checkpoint as ck
ck.Checkpointer.due = lambda self, scheme, now: True
hook = os.environ.get("SIGNAL_AFTER", "save_progress")
original, sent = getattr(ck.Checkpointer, hook), []
def save_then_signal(self, *args, **kwargs):
    original(self, *args, **kwargs)
    if not sent:
        sent.append(1)
        for name in os.environ["SIGNALS"].split(","):
            os.kill(os.getpid(), getattr(signal, name))
setattr(ck.Checkpointer, hook, save_then_signal)
from jax_ec.cli import main
sys.exit(main(sys.argv[1:]))
"""


def signalled_run(config_path, env, out: Path, signals: str, after: str = "save_progress"
                  ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SIGNALLING_CLI, "run", *cli(config_path, out)],
                          env={**env, "SIGNALS": signals, "SIGNAL_AFTER": after}, cwd=out.parent, capture_output=True, text=True,
                          timeout=WAIT_S)


def test_ctrl_c_stops_at_a_safe_point_with_one_line_and_the_same_command_resumes(reference, config_path, env,
                                                                                  tmp_path):
    out = tmp_path / "run"
    proc = signalled_run(config_path, env, out, "SIGINT")
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, lines     # the acknowledgement, then what was kept and how to resume
    assert lines[0].startswith("jax-ec: SIGINT: stopping at the next safe point")
    assert lines[1].startswith("jax-ec: interrupted; 0 of 3 schemes done") and "resume with the same command" in lines[1]
    assert not (out / "metrics.csv").exists() and not (out / "run.json").exists()   # nothing half-published
    meta = checkpoint_meta(out / CHECKPOINT_DIR / "group0.npz")
    assert meta["finished"] is False and meta["steps_done"] >= 2       # the chunk in flight was saved too
    proc = run_cli(cli(config_path, out), env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert metrics_without_wall_time(out) == metrics_without_wall_time(reference)
    assert not (out / ".jax_ec").exists()


def test_ctrl_c_before_compiling_stops_cleanly(config_path, env, tmp_path):
    out = tmp_path / "early"
    proc = signalled_run(config_path, env, out, "SIGINT", after="note_config")
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("jax-ec: interrupted; 0 of 3 schemes done (the next group "
                                                           "had not started)")
    assert not (out / "metrics.csv").exists()


def test_sigterm_stops_with_143_and_a_second_signal_stops_at_once(config_path, env, tmp_path):
    out = tmp_path / "term"
    proc = signalled_run(config_path, env, out, "SIGTERM")
    assert proc.returncode == 143, proc.stderr
    assert "Traceback" not in proc.stderr and "jax-ec: interrupted; " in proc.stderr
    out2 = tmp_path / "twice"
    proc = signalled_run(config_path, env, out2, "SIGINT,SIGINT")
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "SIGINT again: stopped at once" in proc.stderr
    assert not (out2 / "metrics.csv").exists()
    assert (out2 / CHECKPOINT_DIR / "group0.npz").exists()   # the last checkpoint stays for a resume


# End-to-end and subprocess tests: `python -m pytest -m slow` (CI runs them after the default set).
pytestmark = pytest.mark.slow
