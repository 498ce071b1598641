"""Fuzzing the command line as a whole (hypothesis, derandomized: the same examples every run).

Random command lines of every subcommand — `run`, `report`, `codes show|verify|design|estimate` —
built from valid and invalid values: configs that are missing, folders, empty, malformed or hold
duplicate keys; output locations that are files, under files, folders or a finished results
folder; numbers that are negative, zero, huge, non-finite or not numbers; unknown names; `--set`
overrides with typos and out-of-range values. The property for each:

* the exit status is 0, or 2 with exactly one line on stderr naming what is wrong;
* no traceback (an exception escaping `main` fails the test), no run longer than ``BOUND_S``;
* a finished results folder given as `--out` is byte-identical afterwards unless the command
  succeeded (and then it still passes :func:`jax_ec.folder.check_published`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jax_ec.cli import main
from jax_ec.folder import WORK_DIR, check_published

BOUND_S = 120
"""A command that runs longer is a hang: the slowest valid example here (a tiny run compiled from
scratch, or a code estimate with a few draws) takes seconds."""
EXAMPLES = int(os.environ.get("FUZZ_CLI_EXAMPLES", 60))
"""Examples per run (CI: the default; a longer search: ``FUZZ_CLI_EXAMPLES=1000``)."""

CONFIG = {
    "name": "fuzz_cli", "seed": 1, "trials": 2,
    "task": {"name": "synthetic", "num_samples": 96, "num_features": 4, "num_classes": 3, "hidden": [4]},
    "n": 5, "b": 1, "attack": "reverse", "partitioning": "split", "batch_size": 20, "steps": 2, "eval_every": 1,
    "optim": {"lr": 0.05, "lr_boundaries": [], "worker_momentum": 0.0},
    "schemes": [{"name": "u", "code": "uncoded"}, {"name": "b", "code": "bernoulli", "r": 2}],
}


class Hang(Exception):
    pass


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz_cli")
    p = {"root": root}
    p["config"] = root / "tiny.yaml"
    p["config"].write_text(json.dumps(CONFIG))
    p["empty"] = root / "empty.yaml"
    p["empty"].write_text("")
    p["garbage"] = root / "garbage.yaml"
    p["garbage"].write_text("{[: not yaml\n")
    p["dupkeys"] = root / "dup.yaml"
    p["dupkeys"].write_text("name: a\nseed: 1\nseed: 2\n")
    p["list"] = root / "list.yaml"
    p["list"].write_text("- 1\n- 2\n")
    p["dir"] = root / "a_folder"
    p["dir"].mkdir()
    p["file"] = root / "a_file.txt"
    p["file"].write_text("x")
    p["ragged"] = root / "ragged.csv"
    p["ragged"].write_text("1,0,1\n1,1\n0,1,1\n")
    p["good_csv"] = root / "good.csv"
    p["good_csv"].write_text("1,1,0\n0,1,1\n1,0,1\n1,0,0\n0,1,0\n")
    p["pickled"] = root / "pickled.npy"
    np.save(p["pickled"], np.array([{"a": 1}], dtype=object), allow_pickle=True)
    p["finished"] = root / "finished"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", str(p["config"]), "--out", str(p["finished"]), "--no-progress"]) == 0
    p["finished_copy"] = root / "finished_copy"
    shutil.copytree(p["finished"], p["finished_copy"])
    return p


def snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        return {}
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file() and not str(f.relative_to(folder)).startswith(WORK_DIR)}


# ----------------------------------------------------------------------------------- strategies
NUMBERS = ["-5", "-1", "0", "1", "2", "3", "5", "7", "x", "1e3", "nan", "inf", "99999999999", "2.5"]
SEEDS = ["0", "7", "-1", "4294967295", "4294967296", "99999999999999999999", "x", "1.5"]
SETS = ["steps=1", "steps=0", "steps=1e3", "seed=-1", "seed=4294967296", "target=80", "target=0.5",
        "optim.lr=nan", "optim.lr=-1", "n=3", "b=7", "b=-1", "trails=2", "schemes.0.r=99", "schemes.1.r=0",
        "eval_every=0", "task.hidden=[]", "runtime.trial_batching=map", "schemes=[]", "attack=nonsense",
        "task.num_samples=3", "batch_size=0", "schemes.5.code=uncoded", "=", "novalue", "n: 5"]
CODES = ["uncoded", "bernoulli", "paper_n5", "deterministic", "repetition", "draco", "nonsense",
         "@ragged", "@good_csv", "@pickled", "@dir", "@missing"]


def opt(flag: str, values: list[str]):
    return st.one_of(st.just([]), st.sampled_from(values).map(lambda v: [flag, v]))


def path_token(name: str) -> str:
    return "@" + name


run_args = st.tuples(
    st.sampled_from(["@config", "@config", "@config", "@missing", "@dir", "@empty", "@garbage", "@dupkeys",
                     "@list"]),
    st.sampled_from(["@new", "@new", "@finished", "@file", "@under_file", "@dir"]),
    opt("--trials", ["1", "2", "0", "-1", "x", "99999999999"]),
    st.lists(st.sampled_from(SETS), max_size=2).map(lambda xs: [a for x in xs for a in ("--set", x)]),
    st.lists(st.sampled_from(["--fresh", "--wait", "--resume", "--smoke"]), max_size=2, unique=True),
).map(lambda t: ["run", t[0], "--out", t[1], *t[2], *t[3], *t[4], "--no-progress"])

report_args = st.tuples(
    st.lists(st.sampled_from(["@finished_copy", "@missing", "@file", "@dir"]), min_size=1, max_size=2),
    st.one_of(st.just([]), st.sampled_from(["@new_md", "@dir", "@under_file", "@file"]).map(lambda v: ["--out", v])),
).map(lambda t: ["report", *t[0], *t[1]])

show_args = st.tuples(
    st.sampled_from(["show", "verify"]), st.sampled_from(CODES),
    opt("--n", NUMBERS[:9]), opt("--b", NUMBERS[:9]), opt("--r", ["0", "2", "-1", "x", "nan", "1.5"]),
    opt("--seed", SEEDS), st.one_of(st.just([]), st.just(["--allow-idle"])),
    opt("--plot", ["@new_png", "@dir", "@under_file"]),
).map(lambda t: ["codes", t[0], t[1], *t[2], *t[3], *t[4], *t[5], *t[6], *t[7]])

design_args = st.tuples(
    st.lists(st.sampled_from(["5", "9", "0", "-5", "1", "x", "2.5"]), min_size=0, max_size=2),
    st.lists(st.sampled_from(["1", "2", "-1", "10", "x"]), min_size=0, max_size=2),
    st.one_of(st.just([]), st.just(["--min"])), opt("--plot", ["@new_png", "@dir", "@under_file"]),
).map(lambda t: ["codes", "design", *(["--n", *t[0]] if t[0] else []), *(["--b", *t[1]] if t[1] else []),
                 *t[2], *t[3]])

estimate_args = st.tuples(
    st.sampled_from(["failure", "smallest-p", "load", "nonsense"]),
    st.lists(st.sampled_from(["1", "2", "5", "9", "-3", "0", "x"]), min_size=1, max_size=2),
    opt("--p", ["0.1", "0.3", "0", "1.5", "nan", "x"]), opt("--b", ["0", "1", "-1", "99", "x"]),
    opt("--attack", ["reverse", "omniscient", "worst_case", "nonsense"]),
    opt("--sign-model", ["uniform", "correct:0.7", "correct:2", "nonsense"]),
    opt("--target", ["0.01", "0", "2", "x"]), st.sampled_from(["8", "16", "0", "-1", "x"]),
    opt("--patterns", ["4", "0", "x"]), opt("--seed", SEEDS), opt("--plot", ["@new_png", "@dir", "@under_file"]),
).map(lambda t: ["codes", "estimate", t[0], "--n", *t[1], *t[2], *t[3], *t[4], *t[5], *t[6], "--draws", t[7],
                 *t[8], *t[9], *t[10]])

command_lines = st.one_of(run_args, report_args, show_args, design_args, estimate_args)


def resolve(argv: list[str], places: dict[str, Path], example: int) -> list[str]:
    fresh = places["root"] / f"ex{example}"
    names = {"@new": fresh / "out", "@new_md": fresh / "report.md", "@new_png": fresh / "plot.png",
             "@under_file": places["file"] / "sub", "@missing": places["root"] / "missing.yaml"}
    return [str(names.get(a) or places[a[1:]]) if a.startswith("@") else a for a in argv]


def _alarm(signum, frame):
    raise Hang(f"no answer within {BOUND_S} s")


_counter = iter(range(10**9))


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(argv=command_lines)
def test_every_command_line_succeeds_or_fails_with_one_line(argv, places):
    argv = resolve(argv, places, next(_counter))
    before = snapshot(places["finished"])
    err, out = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(BOUND_S)
    cwd = os.getcwd()
    os.chdir(places["root"])      # default outputs (report/report.md, results/...) land in the temp folder
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main(argv)
            except SystemExit as exc:       # argparse
                rc = exc.code
    finally:
        os.chdir(cwd)
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
    assert rc in (0, 2), (argv, rc, err.getvalue())
    if rc == 2:
        assert len(lines) == 1, (argv, lines)
        assert lines[0].startswith(("jax-ec: error: ", "jax-ec codes: error: ", "jax-ec: ")), (argv, lines)
    if str(places["finished"]) in argv:
        if rc == 0:
            assert check_published(places["finished"]) == [], argv
            shutil.rmtree(places["finished"])
            shutil.copytree(places["finished_copy"], places["finished"])
        else:
            assert snapshot(places["finished"]) == before, argv


# End-to-end and subprocess tests: `python -m pytest -m slow` (CI runs them after the default set).
pytestmark = pytest.mark.slow
