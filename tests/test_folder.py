"""The results folder as a transaction (jax_ec.folder, and run_experiment through it).

* a publication cut short at any point leaves either the previous run's files or, once the next
  command opens the folder, the new run's files, never a mixture (check_published agrees);
* a second run into a folder in use stops with one message naming the holder, or waits (--wait);
* a run rejected late (memory check, divergence) or started with another config leaves a finished
  folder byte-identical; --fresh replaces it only once the new run has published.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from pathlib import Path

import pytest

from jax_ec import folder as folder_module
from jax_ec.cli import main
from jax_ec.config import ConfigError, config_from_dict
from jax_ec.experiment import DivergenceError, run_experiment
from jax_ec.folder import (WORK_DIR, FolderBusyError, FolderError, ResultsFolder, check_output_dir, check_published,
                           config_differences)


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (the hidden working area included) and its bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def visible(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(out).items() if not k.startswith(WORK_DIR)}


def publish_files(out: Path, files: dict[str, str], crash_after_moves: int | None = None, monkeypatch=None) -> None:
    """Stage ``files`` (run.json gets a marker) and publish them; with ``crash_after_moves``,
    the process 'dies' (an exception) after that many renames."""
    f = ResultsFolder(out).open()
    stage = f.stage()
    for name, text in files.items():
        (stage / name).write_text(text)
    if crash_after_moves is None:
        f.publish()
        f.close()
        return
    moves = []
    real = os.replace

    def dying_replace(src, dst):
        if len(moves) == crash_after_moves:
            raise SystemExit("killed")
        moves.append(dst)
        real(src, dst)

    monkeypatch.setattr(folder_module.os, "replace", dying_replace)
    with pytest.raises(SystemExit):
        f.publish()
    monkeypatch.setattr(folder_module.os, "replace", real)
    os.close(f._lock_fd)     # the process is gone: the OS releases its lock; nothing else is cleaned up


OLD = {"config.yaml": "old config\n", "metrics.csv": "old metrics\n", "summary.txt": "old summary\n",
       "curves.png": "old png\n", "run.json": json.dumps({"run": "old"})}
NEW = {"config.yaml": "new config\n", "metrics.csv": "new metrics\n", "summary.txt": "new summary\n",
       "run.json": json.dumps({"run": "new"})}   # the new run has no curves.png: the old one must go


# os.replace calls of a publication: run.json completed in staging (1), commit.json written (2:
# the commit point), then one rename per file (3..6), run.json last; 6 is a completed publication.
COMMIT_POINT = 2


@pytest.mark.parametrize("crash_after", range(6))
def test_a_publication_cut_short_is_completed_by_the_next_open_never_mixed(tmp_path, monkeypatch, crash_after):
    out = tmp_path / "out"
    publish_files(out, OLD)
    assert check_published(out) == []
    old = visible(out)
    publish_files(out, NEW, crash_after_moves=crash_after, monkeypatch=monkeypatch)
    if crash_after < COMMIT_POINT:
        assert visible(out) == old                      # before the commit point: nothing changed
    else:
        assert any("interrupted" in p for p in check_published(out))
        # run.json is never the old record beside new files.
        record = out / "run.json"
        moved = [n for n in NEW if n != "run.json" and (out / n).exists() and (out / n).read_text() == NEW[n]]
        assert not record.exists() or json.loads(record.read_text())["run"] == "new" or not moved
    # The next command to open the folder rolls a committed publication forward.
    ResultsFolder(out).open().close()
    assert check_published(out) == []
    assert not (out / WORK_DIR).exists()
    if crash_after < COMMIT_POINT:
        assert visible(out) == old
        return
    assert {k: v.decode() for k, v in visible(out).items() if k != "run.json"} == \
        {k: v for k, v in NEW.items() if k != "run.json"}
    assert json.loads((out / "run.json").read_text())["run"] == "new"
    assert set(json.loads((out / "run.json").read_text())["files"]) == set(NEW) - {"run.json"}


def test_a_crash_before_the_commit_point_leaves_the_previous_files(tmp_path):
    out = tmp_path / "out"
    publish_files(out, OLD)
    before = visible(out)
    f = ResultsFolder(out).open()
    stage = f.stage()
    (stage / "metrics.csv").write_text("half written")
    os.close(f._lock_fd)     # killed while writing the staged files
    ResultsFolder(out).open().close()
    assert visible(out) == before and check_published(out) == []


def test_check_published_names_a_changed_or_missing_file(tmp_path):
    out = tmp_path / "out"
    publish_files(out, OLD)
    (out / "metrics.csv").write_text("edited\n")
    (out / "curves.png").unlink()
    problems = check_published(out)
    assert "metrics.csv is not the file run.json recorded (SHA-256 differs)" in problems
    assert "curves.png is missing" in problems
    assert check_published(tmp_path / "nothing") == ["run.json is missing: the folder holds no committed run"]


def test_a_folder_in_use_is_refused_with_its_holder_or_waited_for(tmp_path, capsys):
    out = tmp_path / "out"
    first = ResultsFolder(out).open()
    with pytest.raises(FolderBusyError, match=rf"--out: '{out}' is in use by another jax-ec run \(pid {os.getpid()} "
                                              r"on .*\); .*--wait"):
        ResultsFolder(out).open()
    released = []

    def release():
        time.sleep(0.5)
        released.append(time.monotonic())
        first.close()       # unlinks the lock file: the waiter must lock the new one

    threading.Thread(target=release).start()
    second = ResultsFolder(out, wait=True).open()
    got = time.monotonic()
    assert released and got >= released[0]
    assert "waiting for" in capsys.readouterr().out
    with pytest.raises(FolderBusyError):       # the waiter holds the current lock file
        ResultsFolder(out).open()
    second.close()
    assert not (out / WORK_DIR).exists()       # nothing was published: no working area is left


def test_output_paths_that_cannot_be_folders_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FolderError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(FolderError, match="cannot be created: .* is a file"):
        check_output_dir(tmp_path / "file" / "sub")
    assert issubclass(FolderError, ConfigError)


def test_config_differences_name_the_dotted_fields():
    old = {"seed": 1, "optim": {"lr": 0.1, "momentum": 0.9}, "schemes": [{"name": "a", "r": 2}], "runtime": {"x": 1}}
    new = {"seed": 1, "optim": {"lr": 0.2, "momentum": 0.9}, "schemes": [{"name": "a", "r": 3}], "runtime": {"x": 2}}
    assert config_differences(old, new) == ["optim.lr: 0.1 -> 0.2", "schemes.0.r: 2 -> 3"]


# ---------------------------------------------------------------------------------------------
# Through run_experiment
# ---------------------------------------------------------------------------------------------

TINY = {
    "name": "folder_tiny", "seed": 1, "trials": 2,
    "task": {"name": "synthetic", "num_samples": 128, "num_features": 4, "num_classes": 3, "hidden": [4]},
    "n": 5, "b": 1, "attack": "reverse", "partitioning": "split", "batch_size": 20, "steps": 4,
    "eval_every": 2, "optim": {"lr": 0.05, "lr_boundaries": [], "worker_momentum": 0.0},
    "schemes": [{"name": "bern", "code": "bernoulli", "r": 2}],
}


def tiny(**changes):
    data = copy.deepcopy(TINY)
    data.update(changes)
    return config_from_dict(data)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "out"
    run_experiment(tiny(), out, progress_bar=False, handle_signals=False)
    return out


def test_a_published_run_lists_its_files_and_leaves_no_working_area(finished):
    assert check_published(finished) == []
    files = json.loads((finished / "run.json").read_text())["files"]
    assert set(files) == {"config.yaml", "metrics.csv", "summary.csv", "summary.txt", "curves.png"}
    assert not (finished / WORK_DIR).exists()


def test_late_rejections_leave_a_finished_folder_byte_identical(finished, monkeypatch, tmp_path, capsys):
    before = snapshot(finished)
    # Another config: refused before anything runs, naming the fields.
    with pytest.raises(FolderError, match=r"holds the results of a different config \(seed: 1 -> 2\); use --fresh"):
        run_experiment(tiny(seed=2), finished, progress_bar=False, handle_signals=False)
    assert snapshot(finished) == before
    # The memory check, after the folder was opened and locked.
    from jax_ec import runtime
    monkeypatch.setattr(runtime, "available_bytes", lambda device=None: 1)
    with pytest.raises(ConfigError, match="need at least"):
        run_experiment(tiny(seed=2), finished, progress_bar=False, fresh=True, handle_signals=False)
    monkeypatch.undo()
    assert snapshot(finished) == before
    # A fresh run of another config that diverges: the old results stay until a run publishes.
    diverging = tiny(b=0, attack="none", optim={"lr": 0.05, "lr_boundaries": [], "worker_momentum": 0.0,
                                                 "weight_decay": 1.0},
                     schemes=[{"name": "mean_sgd", "code": "uncoded", "aggregator": "mean", "lr": 1e10}])
    with pytest.raises(DivergenceError):
        run_experiment(diverging, finished, progress_bar=False, fresh=True, handle_signals=False)
    assert visible(finished) == {k: v for k, v in before.items() if not k.startswith(WORK_DIR)}
    assert check_published(finished) == []
    # The CLI says the same in one line, exit code 2.
    config = tmp_path / "other.yaml"
    config.write_text(json.dumps({**TINY, "seed": 2}))
    assert main(["run", str(config), "--out", str(finished), "--no-progress", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different config (seed: 1 -> 2)" in err[0]


def test_fresh_replaces_another_configs_results_once_it_publishes(finished, tmp_path):
    out = tmp_path / "out"
    run_experiment(tiny(), out, progress_bar=False, handle_signals=False)
    run_experiment(tiny(seed=2), out, progress_bar=False, fresh=True, handle_signals=False)
    assert check_published(out) == []
    assert "seed: 2" in (out / "config.yaml").read_text()
    assert snapshot(out)["metrics.csv"] != snapshot(finished)["metrics.csv"]


def test_report_refuses_a_folder_whose_files_are_not_one_runs(finished, tmp_path, capsys):
    import shutil
    copy_ = tmp_path / "copy"
    shutil.copytree(finished, copy_, ignore=shutil.ignore_patterns(WORK_DIR))
    assert main(["report", str(copy_), "--out", str(tmp_path / "r.md")]) == 0
    (copy_ / "metrics.csv").write_text((copy_ / "metrics.csv").read_text().replace("bern", "other"))
    capsys.readouterr()
    assert main(["report", str(copy_), "--out", str(tmp_path / "r2.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics.csv is not the file run.json recorded" in err[0]
    assert not (tmp_path / "r2.md").exists()
