"""Multi-process runs (``jax.distributed``) with real processes on this host: two ``jax-ec run``
processes of two CPU devices each, gloo collectives over TCP on localhost.

* they give exactly the metrics and summary of one process with four devices (every column but
  the wall times), and only process 0 writes the results folder they share;
* a SIGKILL of one process ends the other within a bound, with one line and a non-zero status;
  the same two commands then resume from the last checkpoint and end with the same metrics;
* bad flags and environment variables stop with one line before anything compiles.

All subprocesses share a persistent XLA compilation cache (a temporary folder) so that only the
first ones pay for compiling.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from builders import one_error_line
from jax_ec.checkpoint import CHECKPOINT_DIR
from jax_ec.cli import main
from jax_ec.distributed import LOST_PEER_EXIT, Cluster, cluster_from_flags
from jax_ec.folder import RESULT_FILES

CONFIG = {
    "name": "distributed_tiny",
    "seed": 3,
    "trials": 4,
    "task": {"name": "synthetic", "num_samples": 256, "num_features": 8, "hidden": [8]},
    "n": 5, "b": 1, "attack": "reverse",
    "partitioning": "split", "batch_size": 20, "steps": 8, "eval_every": 2,
    "optim": {"lr": 0.05, "lr_boundaries": [], "momentum": 0.9, "worker_momentum": 0.0},
    "schemes": [{"name": "uncoded", "code": "uncoded"}, {"name": "bern", "code": "bernoulli", "r": 2}],
    # 2 schemes × 4 trials over 4 devices: two pairs per device, whichever process holds it.
    "runtime": {"mesh": {"trials": 4}},
}
WAIT_S = 240      # bound on a whole run; a healthy one needs seconds
LOST_PEER_S = 60  # bound on how long a process outlives the one killed
# Environment variables through which JAX detects a cluster (jax._src.clusters).
SCHEDULERS = ("SLURM_", "OMPI_", "PMIX_", "KUBERNETES_", "TPU_", "MEGASCALE_")

# The CLI in a child process that checkpoints after every chunk; in process PAUSE_PROCESS it writes
# a marker file after its first mid-group checkpoint and sleeps, so that the parent kills it there.
PAUSING_CLI = """
import os, pathlib, sys, time
import jax
import jax_ec.checkpoint as ck
ck.Checkpointer.due = lambda self, group, now: True
marker = pathlib.Path(os.environ["PAUSE_MARKER"])
original = ck.Checkpointer.save_progress
def paused(self, *args, **kwargs):
    original(self, *args, **kwargs)
    if jax.process_index() == int(os.environ["PAUSE_PROCESS"]):
        marker.write_text("paused")
        time.sleep(600)
ck.Checkpointer.save_progress = paused
from jax_ec.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("xla_cache")
    base = {k: v for k, v in os.environ.items()
            if k not in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "XLA_FLAGS")}
    return {**base, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(config_path, out: Path, env: dict, process: int | None = None, port: int | None = None,
          devices: int = 2, script: str | None = None, extra_env: dict | None = None) -> subprocess.Popen:
    """``jax-ec run`` as process ``process`` of 2 (None: a single-process run) with ``devices`` CPU devices."""
    args = [str(config_path), "--out", str(out), "--no-progress"]
    if process is not None:
        args += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(process)]
    cmd = [sys.executable, "-c", script, "run", *args] if script else [sys.executable, "-m", "jax_ec.cli", "run", *args]
    return subprocess.Popen(cmd, env={**env, "JAX_NUM_CPU_DEVICES": str(devices), **(extra_env or {})},
                            cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen], timeout: float = WAIT_S) -> list[tuple[int, str, str]]:
    """Wait for every process (killing all of them past ``timeout``); their (status, stdout, stderr)."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


def run_two(config_path, out: Path, env: dict) -> list[tuple[int, str, str]]:
    port = free_port()
    return finish([start(config_path, out, env, i, port) for i in (0, 1)])


def without(path: Path, column: str) -> list[list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    i = rows[0].index(column)
    return [r[:i] + r[i + 1:] for r in rows]


def same_results(out: Path, reference: Path) -> None:
    assert without(out / "metrics.csv", "wall_time") == without(reference / "metrics.csv", "wall_time")
    assert without(out / "summary.csv", "wall_time_s") == without(reference / "summary.csv", "wall_time_s")


@pytest.fixture(scope="module")
def reference(config_path, env, tmp_path_factory):
    """One process, four CPU devices."""
    out = tmp_path_factory.mktemp("reference") / "run"
    ((rc, _, err),) = finish([start(config_path, out, env, devices=4)])
    assert rc == 0, err
    return out


def test_two_processes_equal_one_process_and_only_process_0_writes(reference, config_path, env, tmp_path):
    out = tmp_path / "run"
    (rc0, out0, err0), (rc1, out1, err1) = run_two(config_path, out, env)
    assert (rc0, rc1) == (0, 0), (err0, err1)
    same_results(out, reference)
    assert len(without(out / "metrics.csv", "wall_time")) == 1 + 2 * 4 * 5   # schemes × trials × evaluations
    # The folder holds one run's files, written by process 0 (its command), and nothing else.
    assert sorted(p.name for p in out.iterdir()) == sorted(RESULT_FILES)
    run = json.loads((out / "run.json").read_text())
    assert "--process-id 0" in run["reproducibility"]["command"]
    assert run["groups"][0]["mesh"] == {"trials": 4, "partitions": 1}
    assert "results written to" in out0 and "process 0 wrote the results" in out1
    assert "Traceback" not in err0 + err1


@pytest.mark.parametrize("killed", [0, 1])
def test_a_killed_process_ends_the_other_and_both_resume(killed, reference, config_path, env, tmp_path):
    out = tmp_path / "run"
    marker = tmp_path / "paused"
    port = free_port()
    procs = [start(config_path, out, env, i, port, script=PAUSING_CLI,
                   extra_env={"PAUSE_PROCESS": str(killed), "PAUSE_MARKER": str(marker)}) for i in (0, 1)]
    try:
        deadline = time.monotonic() + WAIT_S
        while not marker.exists():
            if any(p.poll() is not None for p in procs):
                pytest.fail(f"a process ended before the pause: {[(p.returncode, p.stderr.read()) for p in procs]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint within {WAIT_S} s")
            time.sleep(0.05)
        os.kill(procs[killed].pid, signal.SIGKILL)
        survivor = procs[1 - killed]
        try:
            _, err = survivor.communicate(timeout=LOST_PEER_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"process {1 - killed} still runs {LOST_PEER_S} s after process {killed} was killed")
    finally:
        finish(procs, timeout=1)
    assert procs[killed].returncode == -signal.SIGKILL
    # Its own status after a failed exchange with the killed one, or SIGABRT where JAX's runtime ended it first.
    assert survivor.returncode in (LOST_PEER_EXIT, -signal.SIGABRT), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"jax-ec: error: process {1 - killed} of 2: another process of the run stopped"), lines
    assert "rerun every process with the same command" in lines[0]
    assert not (out / "metrics.csv").exists()
    checkpoint = (out / CHECKPOINT_DIR / "group0.npz").read_bytes()
    if killed == 1:
        # A process that does not see process 0's checkpoint (no shared filesystem; here: another
        # --out) stops with one line before it computes anything; the checkpoint is kept.
        port = free_port()
        elsewhere = tmp_path / "elsewhere"
        (rc0, _, err0), (rc1, _, err1) = finish([start(config_path, out, env, 0, port),
                                                 start(config_path, elsewhere, env, 1, port)])
        assert rc1 == 2, err1
        assert err1.strip().splitlines() == [
            f"jax-ec: error: checkpoints: process 1 reads no checkpoint of group0 in "
            f"{str(elsewhere / CHECKPOINT_DIR / 'group0.npz')!r} but process 0 reads the step 2 checkpoint; every "
            "process must see the results folder (--out) on a filesystem they share"]
        assert rc0 in (LOST_PEER_EXIT, -signal.SIGABRT) and len(err0.strip().splitlines()) == 1, err0
        assert (out / CHECKPOINT_DIR / "group0.npz").read_bytes() == checkpoint
        assert not elsewhere.exists()

    # The same two commands resume from the checkpoint of step 2 and end with the same results.
    (rc0, _, err0), (rc1, _, err1) = run_two(config_path, out, env)
    assert (rc0, rc1) == (0, 0), (err0, err1)
    same_results(out, reference)
    run = json.loads((out / "run.json").read_text())
    assert {s: info["resumed_from_step"] for s, info in run["schemes"].items()} == {"uncoded": 2, "bern": 2}
    assert not (out / CHECKPOINT_DIR).exists()


# ------------------------------------------------------------------ flags (nothing starts or compiles)

@pytest.mark.parametrize("flags, start_, fragment", [
    (["--coordinator", "host0", "--num-processes", "2", "--process-id", "0"], "--coordinator: got 'host0'",
     "expected HOST:PORT"),
    (["--coordinator", "host0:99999", "--num-processes", "2", "--process-id", "0"], "--coordinator: got 'host0:99999'",
     "1..65535"),
    (["--coordinator", "host0:1234", "--num-processes", "0", "--process-id", "0"], "--num-processes: got '0'",
     "expected an integer >= 1"),
    (["--coordinator", "host0:1234", "--num-processes", "two", "--process-id", "0"], "--num-processes: got 'two'",
     "expected an integer >= 1"),
    (["--coordinator", "host0:1234", "--num-processes", "2", "--process-id", "2"], "--process-id: got '2'",
     "expected an integer in [0, 2)"),
    (["--coordinator", "host0:1234", "--num-processes", "2", "--process-id", "-1"], "--process-id: got '-1'",
     "expected an integer in [0, 2)"),
    (["--coordinator", "host0:1234", "--num-processes", "2"], "--process-id: missing", "go together"),
    (["--process-id", "1"], "--coordinator: missing", "--distributed"),
])
def test_bad_distributed_flags_exit_2_with_one_line(flags, start_, fragment, config_path, capsys, tmp_path,
                                                    monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "out"
    assert main(["run", str(config_path), "--out", str(out), "--no-progress", *flags]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"jax-ec: error: {start_}"), line
    assert fragment in line, line
    assert not out.exists()


def test_environment_variables_stand_in_for_the_flags(monkeypatch, config_path, capsys, tmp_path):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert cluster_from_flags() == Cluster("10.0.0.1:1234", 4, 3)
    assert cluster_from_flags(process_id="1") == Cluster("10.0.0.1:1234", 4, 1)   # a flag wins over its variable
    monkeypatch.setenv("JAX_PROCESS_ID", "4")
    assert main(["run", str(config_path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert one_error_line(capsys).startswith("jax-ec: error: JAX_PROCESS_ID: got '4'; expected an integer in [0, 4)")
    monkeypatch.delenv("JAX_PROCESS_ID")
    monkeypatch.delenv("JAX_NUM_PROCESSES")
    assert main(["run", str(config_path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("jax-ec: error: --num-processes: missing (given: JAX_COORDINATOR_ADDRESS '10.0.0.1:1234')")


def test_no_flags_and_no_variables_is_a_single_process_run():
    assert cluster_from_flags(environ={}) is None
    assert cluster_from_flags(detect=True, environ={}) == Cluster(None, None, None, True)
    assert cluster_from_flags("h:1", detect=True, environ={}) == Cluster("h:1", None, None, True)


def test_distributed_without_a_cluster_exits_2_with_one_line(config_path, env, tmp_path):
    """``--distributed`` where no scheduler tells JAX the values: one line, before anything compiles."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "jax_ec.cli", "run", str(config_path), "--out", str(out),
                           "--distributed"], env={k: v for k, v in env.items() if not k.startswith(SCHEDULERS)},
                          cwd=tmp_path, capture_output=True, text=True, timeout=WAIT_S)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jax-ec: error: --distributed: JAX found no cluster"), proc.stderr
    assert not out.exists()


# End-to-end and subprocess tests: `python -m pytest -m slow` (CI runs them after the default set).
pytestmark = pytest.mark.slow
