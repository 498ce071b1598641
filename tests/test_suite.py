"""benchmarks.suite: its smoke form runs every part on the CPU and writes the record and the tables;
a failing, hanging or skipped part is recorded without losing the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import suite

ROOT = Path(__file__).resolve().parents[1]
STATUSES = {"ok", "skipped", "error", "timeout"}


def test_device_names_and_peak_bandwidths():
    assert suite.device_slug("NVIDIA H200") == "nvidia_h200"
    assert suite.device_slug("NVIDIA H100 80GB HBM3") == "nvidia_h100_80gb_hbm3"
    assert suite.device_slug("cpu") == "cpu"
    assert suite.peak_bandwidth("NVIDIA H200") == 4800.0
    assert suite.peak_bandwidth("NVIDIA H100 80GB HBM3") == 3350.0
    assert suite.peak_bandwidth("NVIDIA H100 PCIe") == 2000.0
    assert suite.peak_bandwidth("cpu") is None


def test_smoke_suite_writes_every_part_and_the_goals(tmp_path):
    out = tmp_path / "suite"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.suite", "--smoke", "--out", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "suite.json").read_text())
    assert doc["smoke"] is True and doc["device_slug"] == suite.device_slug(doc["environment"]["device_kind"])
    assert list(doc["parts"]) == list(suite.PARTS)
    for name, rec in doc["parts"].items():
        assert rec["status"] in STATUSES and rec["budget_s"] > 0
        if name == "paper_loop" and rec["status"] == "skipped":
            assert "torch" in rec["reason"]
        else:
            assert rec["status"] == "ok", (name, rec.get("error"), rec.get("tail"))
            assert rec["summary"] and (out / rec["log"]).is_file()
    parts = doc["parts"]
    assert parts["step_ratio_bfloat16"]["summary"]["compute_dtype"] == "bfloat16"
    assert parts["vote_kernel"]["summary"]["peak_GBps"] is None            # the CPU has no entry
    for name in ("amazon_default", "amazon_sweep"):
        summary = parts[name]["summary"]
        assert summary["wall_s"] > 0 and summary["schemes"] >= 3 and all(0 <= v <= 1 for v in summary["final_metric"].values())
    for name in ("step_ratio_float32.json", "step_ratio_bfloat16.json", "redundancy_sweep.json",
                 "trials_sweep_small.json", "trials_sweep_conv.json", "vote_kernel.json"):
        assert json.loads((out / name).read_text())["environment"]["device_kind"] == doc["environment"]["device_kind"]

    goals = {g["goal"]: g for g in doc["goals"]}
    assert len(goals) == 5 and "logreg: per-trial throughput T = 4 / T = 1" in goals       # smoke: logreg alone
    for g in goals.values():
        assert g["sense"] in ("<=", ">=") and g["met"] is None and "judged on a gpu" in g["note"]
        if g["part"] != "paper_loop" or parts["paper_loop"]["status"] == "ok":
            assert isinstance(g["measured"], float) and g["measured"] > 0
    assert goals["election step / plain step (float32)"]["target"] == suite.ELECTION_OVER_PLAIN_MAX
    assert doc["ratios"] and all({"what", "value", "unit", "part"} <= set(r) for r in doc["ratios"])

    text = (out / "suite.md").read_text()
    assert text.strip() in proc.stdout                                # printed as well
    for heading in ("## Goals", "## Measurements", "## Parts"):
        assert heading in text
    for g in goals:
        assert f"| {g} |" in text
    for name in suite.PARTS:
        assert f"| {name} | {parts[name]['status']} |" in text


def test_a_failing_part_is_recorded_and_the_child_exits_nonzero(tmp_path, monkeypatch):
    ctx = suite.Context(tmp_path, suite.SMOKE_SIZES, True)

    def broken(ctx):
        raise RuntimeError("out of device memory")

    def absent(ctx):
        raise suite.Skipped("no torch here")

    monkeypatch.setitem(suite.PART_FUNCTIONS, "vote_kernel", broken)
    monkeypatch.setitem(suite.PART_FUNCTIONS, "paper_loop", absent)
    assert suite.run_part_in_process("vote_kernel", ctx, tmp_path / "a.json") == 1
    assert json.loads((tmp_path / "a.json").read_text()) == {"status": "error",
                                                             "error": "RuntimeError: out of device memory"}
    assert suite.run_part_in_process("paper_loop", ctx, tmp_path / "b.json") == 0
    assert json.loads((tmp_path / "b.json").read_text()) == {"status": "skipped", "reason": "no torch here"}


def test_a_part_past_its_budget_is_stopped(tmp_path):
    code, _, tail = suite._run_process([sys.executable, "-c", "print('started', flush=True); import time; time.sleep(60)"],
                                       1.0, dict(os.environ), tmp_path, tmp_path / "log")
    assert code is None and "started" in tail


def test_parts_past_the_deadline_are_skipped_and_goals_stay_unmeasured(tmp_path):
    record = suite.run_suite(tmp_path, True, suite.PARTS, deadline_s=1.0, log=lambda _: None)
    assert {r["status"] for r in record["parts"].values()} == {"skipped"}
    assert all(r["reason"].startswith("deadline") for r in record["parts"].values())
    doc = {**record, "parts": record["parts"]}
    assert all(g["measured"] is None and g["met"] is None for g in suite.goals(doc, "gpu"))
    assert suite.ratios(doc) == []


@pytest.mark.parametrize("argv, flag", [(["--only", "nonsense"], "--only: unknown part(s) nonsense"),
                                        (["--deadline-s", "0"], "--deadline-s: got 0")])
def test_bad_arguments_are_named_before_anything_runs(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        suite.main(argv)
    assert exit_.value.code == 2 and flag in capsys.readouterr().err


# End-to-end and subprocess tests: `python -m pytest -m slow` (CI runs them after the default set).
pytestmark = pytest.mark.slow
