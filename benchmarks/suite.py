"""Every speed measurement the goals need, in one command for a GPU session.

    PYTHONPATH=. python -m benchmarks.suite [--out DIR] [--deadline-s S] [--only PART,...] [--smoke]

Runs the parts below one after another, each in its own Python process (a part that fails, hangs
or runs out of memory loses only itself: its error is recorded and the next part starts), within
its own time budget and a total deadline (:data:`DEADLINE_S`, so that the whole suite, compilation
included, fits in 8 minutes on one H100/H200). The parts share a persistent compilation cache in a
fresh temporary folder, so a program two parts compile (the same plain or election step) compiles
once per suite run. In order of priority (a part the deadline leaves no time for is skipped):

* ``step_ratio_float32`` / ``step_ratio_bfloat16``: ResNet-18 (random CIFAR-shaped data, batch 240,
  n = k = 15, Bernoulli r = 2): the election step against a plain one-gradient step
  (:mod:`benchmarks.step_ratio`), with ``task.compute_dtype`` float32 and bfloat16;
* ``redundancy``: the ResNet-18 election step at r ∈ {1, 2, 3, 5, 15} (:mod:`benchmarks.redundancy_sweep`);
* ``trials_small``: per-trial throughput of the digits MLP and a logistic regression at
  T ∈ {1, 8, 64, 512} trials per call, ``vmap`` and ``lax.map`` (:mod:`benchmarks.trials_sweep`);
* ``paper_loop``: the paper's per-worker PyTorch loop on the GPU against the jax_ec election step,
  ResNet-18 (:mod:`benchmarks.paper_loop`; skipped, with the reason, unless torch with CUDA imports);
* ``vote_kernel``: the election alone at d = 11,173,962 (:mod:`benchmarks.vote_kernel`), its
  bandwidth against the device's peak (:data:`PEAK_BANDWIDTH_GBPS`);
* ``amazon_default`` / ``amazon_sweep``: ``jax-ec run`` of ``configs/amazon_paper.yaml`` and
  ``configs/sweeps/amazon_fig5_b.yaml`` end to end in a subprocess, into a temporary folder (wall
  time from process start to exit);
* ``trials_resnet``: ResNet-18 at T ∈ {1, 4} trials per call (``vmap``).

Writes into ``benchmarks/results/<device>/`` (``<device>``: ``jax.devices()[0].device_kind`` as a
slug, e.g. ``nvidia_h200``; ``cpu`` on the CPU): ``suite.json`` (every part's status, time, summary
and error; the goals; the ratios), ``suite.md`` (the same as tables, also printed) and each
benchmark's own JSON. ``--smoke`` runs the same parts and code paths on the CPU with tiny sizes
(a digits CNN stands in for ResNet-18, the logistic regression alone for the small models, the
``rbg`` random-number generator, which XLA:CPU compiles faster), into a temporary folder unless
``--out`` is given.

The goals (:data:`GOALS`) are those of ``benchmarks/README.md``; they are judged on a GPU only (on
another device the suite reports the measurement and ``met: null``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# The whole suite within 8 minutes of one GPU, compilation included, with 30 s to spare for
# starting Python and the device.
DEADLINE_S = 450.0
# A part starts only with at least this many seconds left before the deadline.
MIN_PART_S = 20.0
# A part still running this long after SIGTERM is killed.
KILL_GRACE_S = 5.0

# Goals (benchmarks/README.md, "Training-step performance" and issue 15), judged on a GPU only.
ELECTION_OVER_PLAIN_MAX = 1.3     # ResNet-18 election step / plain one-gradient step, same dtype
REDUNDANCY_FLAT_MAX = 1.1         # ResNet-18 election step at r = n / at r = 1
PAPER_LOOP_SPEEDUP_MIN = 100.0    # the paper's per-worker loop / the jax_ec election step (ResNet-18)
TRIALS_GOAL_T = 64                # per-trial throughput at T = TRIALS_GOAL_T trials per call ...
TRIALS_SPEEDUP_MIN = 20.0         # ... at least this many times that at T = 1 (small models)
GOAL_PLATFORM = "gpu"

# Peak memory bandwidth (GB/s) by device kind (a lower-case substring of jax's device_kind; the
# first match wins, so the more specific names come first). Sources: NVIDIA's data sheets — H200
# (4.8 TB/s HBM3e), H100 (SXM 3.35 TB/s, PCIe 2 TB/s, NVL 3.9 TB/s), A100 (80 GB SXM 2,039 GB/s,
# 80 GB PCIe 1,935 GB/s, 40 GB 1,555 GB/s).
PEAK_BANDWIDTH_GBPS: tuple[tuple[str, float], ...] = (
    ("h200", 4800.0),
    ("h100 pcie", 2000.0),
    ("h100 nvl", 3900.0),
    ("h100", 3350.0),
    ("a100-sxm4-80gb", 2039.0),
    ("a100 80gb pcie", 1935.0),
    ("a100", 1555.0),
)

RESNET_PARAMS = 11_173_962
# What every part imports (module -> pip name); torch and tensorflow-datasets are not needed.
REQUIRED_MODULES: dict[str, str] = {"jax": "jax", "flax": "flax", "optax": "optax", "numpy": "numpy",
                                    "scipy": "scipy", "yaml": "pyyaml", "pydantic": "pydantic",
                                    "matplotlib": "matplotlib", "tqdm": "tqdm"}


def missing_modules() -> list[str]:
    """The pip names of :data:`REQUIRED_MODULES` that do not import here."""
    import importlib.util
    return [pip for module, pip in REQUIRED_MODULES.items() if importlib.util.find_spec(module) is None]


def device_slug(kind: str) -> str:
    """``"NVIDIA H200"`` → ``"nvidia_h200"``: the device kind as a folder name."""
    return re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_") or "unknown"


def peak_bandwidth(kind: str) -> float | None:
    """The device's peak memory bandwidth in GB/s (:data:`PEAK_BANDWIDTH_GBPS`), None if unknown."""
    low = kind.lower()
    return next((gbps for key, gbps in PEAK_BANDWIDTH_GBPS if key in low), None)


# ------------------------------------------------------------------------------------------------
# Sizes: the GPU suite and its smoke form


@dataclass(frozen=True)
class Sizes:
    """What each part measures (the GPU sizes, or the smoke form's tiny ones)."""
    conv_model: str = "resnet18"
    model_args: tuple[str, ...] = ("--n", "15", "--r", "2", "--batch", "240", "--resnet-train", "2000")
    conv_set: tuple[str, ...] = ()
    step_timing: tuple[str, ...] = ("--steps", "5", "--repeats", "5", "--budget-s", "20")
    redundancies: str = "1,2,3,5,n"
    small_models: str = "mlp,logreg"
    small_trials: str = "1,8,64,512"
    small_modes: str = "vmap,map"
    small_timing: tuple[str, ...] = ("--steps", "10", "--repeats", "5", "--budget-s", "5")
    conv_trials: str = "1,4"
    conv_trial_timing: tuple[str, ...] = ("--steps", "3", "--repeats", "3", "--budget-s", "15")
    vote_args: tuple[str, ...] = ("--d", str(RESNET_PARAMS), "--repeats", "10")
    paper_timing: tuple[str, ...] = ("--steps", "5", "--repeats", "3", "--budget-s", "30")
    run_flags: tuple[str, ...] = ()
    quick: bool = False


GPU_SIZES = Sizes()
SMOKE_SIZES = Sizes(
    conv_model="cnn",
    model_args=("--n", "3", "--r", "2", "--batch", "6", "--resnet-train", "12"),
    conv_set=("--set", "task.width=2", "--set", "b=1"),
    step_timing=("--steps", "1", "--repeats", "1"),
    redundancies="1,n",
    small_models="logreg",
    small_trials="1,4",
    small_modes="vmap",
    small_timing=("--steps", "2", "--repeats", "1"),
    conv_trials="1,2",
    conv_trial_timing=("--steps", "1", "--repeats", "1"),
    vote_args=("--d", "100000", "--repeats", "1"),
    paper_timing=("--steps", "1", "--repeats", "1"),
    run_flags=("--smoke",),
    quick=True,
)


# ------------------------------------------------------------------------------------------------
# Parts: each a function run in its own process, returning a JSON-able summary


@dataclass(frozen=True)
class Context:
    out: Path            # the results folder
    sizes: Sizes
    smoke: bool


class Skipped(Exception):
    """A part that cannot run here (the reason is recorded)."""


def _bench_argv(ctx: Context, *args: str, out_name: str) -> list[str]:
    argv = [*args, "--out", str(ctx.out / out_name)]
    return argv + (["--quick"] if ctx.sizes.quick else [])


def _step_ratio(ctx: Context, dtype: str) -> dict:
    from benchmarks import step_ratio
    s = ctx.sizes
    name = f"step_ratio_{dtype}.json"
    res = step_ratio.main(_bench_argv(ctx, "--models", s.conv_model, *s.model_args, *s.conv_set, *s.step_timing,
                                      "--no-breakdown", "--set", f"task.compute_dtype={dtype}", out_name=name))
    r = res[s.conv_model]
    meas = r["measurements"]
    return {"model": s.conv_model, "compute_dtype": dtype, "num_params": r["num_params"],
            "runtime": r["runtime"], "timing_mode": r["timing_mode"],
            "plain_ms": meas["plain"]["median_ms_per_unit"], "election_ms": meas["election"]["median_ms_per_unit"],
            "plain_compile_s": meas["plain"]["warmup_s_incl_compile"],
            "election_compile_s": meas["election"]["warmup_s_incl_compile"],
            "election_over_plain": r["ratios"]["election/plain"]["median"],
            "election_over_plain_min": r["ratios"]["election/plain"]["min"], "file": name}


def _redundancy(ctx: Context) -> dict:
    from benchmarks import redundancy_sweep
    s = ctx.sizes
    name = "redundancy_sweep.json"
    model_args = [a for i, a in enumerate(s.model_args) if a != "--r" and (i == 0 or s.model_args[i - 1] != "--r")]
    res = redundancy_sweep.main(_bench_argv(ctx, "--models", s.conv_model, "--rs", s.redundancies, *model_args,
                                            *s.conv_set, *s.step_timing, out_name=name))
    r = res[s.conv_model]
    per_r = {k: {"r": v["r"], "realised_redundancy": v["realised_redundancy"], "max_load": v["max_load"],
                 "ms": v["ms"], "over_first_r": v["vs_first_r"]["median"], "over_plain": v["vs_plain"]["median"]}
             for k, v in r["per_r"].items()}
    last = per_r[max(per_r, key=lambda k: per_r[k]["r"])]
    return {"model": s.conv_model, "num_params": r["num_params"], "per_r": per_r, "largest_r": last["r"],
            "largest_r_over_first_r": last["over_first_r"], "max_over_first_r": r["max_ratio_vs_first_r"],
            "file": name}


def _trials(ctx: Context, models: str, trials: str, timing: tuple[str, ...], modes: str, name: str) -> dict:
    from benchmarks import trials_sweep
    s = ctx.sizes
    conv = s.conv_model in models.split(",")
    argv = ["--models", models, "--modes", modes, *timing]
    argv += ["--resnet-trials", trials] if models == "resnet18" else ["--trials", trials]
    if conv:
        argv += [*s.model_args, *s.conv_set]
    res = trials_sweep.main(_bench_argv(ctx, *argv, out_name=name))
    out = {"file": name, "models": {}}
    for model, r in res.items():
        per_t = {int(t): {"trial_steps_per_s": v["trial_steps_per_s"], "faster_mode": v["faster_mode"],
                          "best_over_best_first_t": v.get("best_vs_best_first_t")}
                 for t, v in r["per_trials"].items()}
        ts = sorted(per_t)
        goal_t = TRIALS_GOAL_T if TRIALS_GOAL_T in per_t else (ts[-1] if ts else None)
        out["models"][model] = {"num_params": r["num_params"], "per_trials": per_t, "skipped": r["skipped"],
                                "ratio_t": goal_t, "ratio_over_t1": per_t[goal_t]["best_over_best_first_t"]
                                if ts and ts[0] == 1 and goal_t != 1 else None}
    return out


def _trials_small(ctx: Context) -> dict:
    s = ctx.sizes
    return _trials(ctx, s.small_models, s.small_trials, s.small_timing, s.small_modes, "trials_sweep_small.json")


def _trials_conv(ctx: Context) -> dict:
    s = ctx.sizes
    return _trials(ctx, s.conv_model, s.conv_trials, s.conv_trial_timing, "vmap", "trials_sweep_conv.json")


def _vote_kernel(ctx: Context) -> dict:
    import jax

    from benchmarks import vote_kernel
    s = ctx.sizes
    name = "vote_kernel.json"
    res = vote_kernel.main(_bench_argv(ctx, *s.vote_args, "--attacks", "reverse",
                                       "--step-json", str(ctx.out / "step_ratio_float32.json"), out_name=name))
    kind = jax.devices()[0].device_kind
    peak = peak_bandwidth(kind)
    meas = res["measurements"]
    funcs = {k: {"ms": v["ms"], "GBps": v["bandwidth_GBps"], "fraction_of_peak": v["bandwidth_GBps"] / peak if peak else None}
             for k, v in meas.items()}
    elections = {k: v for k, v in funcs.items() if k != "reference_read"}
    best = max(elections, key=lambda k: elections[k]["GBps"])
    return {"d": res["d"], "bytes_per_call": res["bytes_per_call"], "device_kind": kind, "peak_GBps": peak,
            "peak_note": None if peak else f"no peak bandwidth known for {kind!r}: achieved GB/s only",
            "functions": funcs, "best": best, "best_GBps": funcs[best]["GBps"],
            "best_fraction_of_peak": funcs[best]["fraction_of_peak"],
            "reference_read_GBps": funcs["reference_read"]["GBps"], "file": name}


def _paper_loop(ctx: Context) -> dict:
    try:
        import torch
    except ImportError as exc:
        raise Skipped(f"torch is not importable ({exc}); pip install torch (a CUDA build) to compare "
                      "with the paper's loop") from None
    cuda = torch.cuda.is_available()
    if not cuda and not ctx.smoke:
        raise Skipped(f"torch {torch.__version__} sees no CUDA device; the paper loop is compared on the GPU")
    from benchmarks import paper_loop
    s = ctx.sizes
    model = "resnet18" if s.conv_model == "resnet18" else "mlp"
    name = "paper_loop.json"
    res = paper_loop.main(_bench_argv(ctx, "--models", model, *s.model_args, *s.conv_set, *s.paper_timing,
                                      "--torch-device", "cuda" if cuda else "cpu", out_name=name))
    if res is None:
        raise Skipped("paper_loop measured nothing (torch missing)")
    r = res[model]
    return {"model": model, "torch_device": r["torch_device"], "ms_per_step": r["ms_per_step"],
            "partition_passes_per_paper_step": r["partition_passes_per_paper_step"],
            "speedup": r["speedup_jax_election_over_paper_loop"]["median"],
            "speedup_min": r["speedup_jax_election_over_paper_loop"]["min"], "file": name}


PART_FUNCTIONS: dict[str, Callable[[Context], dict]] = {
    "step_ratio_float32": lambda ctx: _step_ratio(ctx, "float32"),
    "redundancy": _redundancy,
    "trials_small": _trials_small,
    "paper_loop": _paper_loop,
    "step_ratio_bfloat16": lambda ctx: _step_ratio(ctx, "bfloat16"),
    "vote_kernel": _vote_kernel,
    "trials_resnet": _trials_conv,
}
# End-to-end runs: part name -> the config `jax-ec run` runs (into a temporary folder).
RUNS: dict[str, str] = {
    "amazon_default": "configs/amazon_paper.yaml",
    "amazon_sweep": "configs/sweeps/amazon_fig5_b.yaml",
}
# Order of the parts (priority: the goals first) and each one's budget in seconds on the GPU.
# The ResNet-18 float32 election and plain steps compile once, in step_ratio_float32; redundancy
# and paper_loop find them in the shared compilation cache.
BUDGETS_S: dict[str, float] = {
    "step_ratio_float32": 110.0,
    "redundancy": 60.0,
    "trials_small": 80.0,
    "paper_loop": 70.0,
    "step_ratio_bfloat16": 100.0,
    "vote_kernel": 30.0,
    "amazon_default": 60.0,
    "amazon_sweep": 90.0,
    "trials_resnet": 90.0,
}
SMOKE_BUDGET_S = 180.0     # per part in the smoke form: only there to stop a hang
SMOKE_DEADLINE_S = 900.0
PARTS = tuple(BUDGETS_S)


def run_part_in_process(name: str, ctx: Context, path: Path) -> int:
    """The child side: run one part, write ``{"status", "summary" | "reason" | "error"}`` to ``path``."""
    try:
        summary = PART_FUNCTIONS[name](ctx)
        record = {"status": "ok", "summary": summary}
    except Skipped as why:
        record = {"status": "skipped", "reason": str(why)}
    except BaseException as exc:   # noqa: BLE001 - recorded, the suite goes on
        traceback.print_exc()
        record = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    path.write_text(json.dumps(record, indent=2, default=str))
    return 0 if record["status"] != "error" else 1


# ------------------------------------------------------------------------------------------------
# The parent side: one subprocess per part, with its budget


# The environment the suite was started with (before it changes its own for the device probe).
_START_ENV = dict(os.environ)


def _child_env(cache_dir: Path, smoke: bool, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A part's environment: the suite's own as started, the source tree on ``PYTHONPATH`` (absolute:
    the parts run in a temporary folder) and the suite's shared compilation cache. The smoke form
    draws random numbers with the ``rbg`` generator: XLA:CPU compiles the threefry draws of a model's
    initialization several times slower (the numbers differ; what is timed does not matter there)."""
    env = dict(_START_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_dir))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    if smoke:
        env.setdefault("JAX_DEFAULT_PRNG_IMPL", "rbg")
    env.update(extra or {})
    return env


def _run_process(cmd: list[str], timeout_s: float, env: dict[str, str], cwd: Path, log: Path
                 ) -> tuple[int | None, float, str]:
    """Run ``cmd`` (its output into ``log``) for at most ``timeout_s``, then SIGTERM and SIGKILL its
    process group; returns (exit code or None on timeout, seconds, the output's tail)."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
            for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            proc.wait()
    seconds = time.perf_counter() - start
    text = log.read_text(errors="replace")
    return code, seconds, text[-3000:]


def _e2e_summary(folder: Path, seconds: float) -> dict:
    run = json.loads((folder / "run.json").read_text())
    pair_steps = sum(int(run["trials"]) * int(s["steps"]) for s in run["schemes"].values())
    final = {}
    with open(folder / "summary.csv", newline="") as f:
        for row in csv.DictReader(f):
            final[row["scheme"]] = float(row["final_mean"])
    return {"wall_s": seconds, "schemes": len(run["schemes"]), "trials": int(run["trials"]),
            "compiled_calls": len(run["groups"]), "pair_steps": pair_steps, "pair_steps_per_s": pair_steps / seconds,
            "runtime": [g["runtime"] for g in run["groups"]], "final_metric": final}


def run_suite(out: Path, smoke: bool, parts: tuple[str, ...], deadline_s: float, log=print) -> dict:
    """Run ``parts`` (each in a subprocess, in :data:`PARTS` order) into ``out``; return the record."""
    sizes = SMOKE_SIZES if smoke else GPU_SIZES
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    start = time.perf_counter()
    records: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="jax_ec_suite_") as tmp:
        tmp_path = Path(tmp)
        for name in PARTS:
            if name not in parts:
                continue
            budget = SMOKE_BUDGET_S if smoke else BUDGETS_S[name]
            left = deadline_s - (time.perf_counter() - start)
            rec: dict[str, Any] = {"budget_s": budget}
            records[name] = rec
            if left < MIN_PART_S:
                rec.update(status="skipped", seconds=0.0, reason=f"deadline: {left:.0f} s left of {deadline_s:.0f} s")
                log(f"[suite] {name}: skipped ({rec['reason']})")
                continue
            timeout = min(budget, left)
            log_path = out / "logs" / f"{name}.log"
            if name in RUNS:
                folder = tmp_path / name
                cmd = [sys.executable, "-m", "jax_ec.cli", "run", str(ROOT / RUNS[name]), "--out", str(folder),
                       "--no-progress", "--fresh", *sizes.run_flags]
                env = _child_env(tmp_path / "cache", smoke)
            else:
                part_json = tmp_path / f"{name}.json"
                cmd = [sys.executable, "-m", "benchmarks.suite", "--part", name, "--part-json", str(part_json),
                       "--out", str(out)] + (["--smoke"] if smoke else [])
                # paper_loop shares the GPU with torch: jax takes memory as it needs it.
                env = _child_env(tmp_path / "cache", smoke,
                                 {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} if name == "paper_loop" else None)
            rec["command"] = shlex.join(cmd)
            log(f"[suite] {name}: starting (budget {timeout:.0f} s)")
            code, seconds, tail = _run_process(cmd, timeout, env, tmp_path, log_path)
            rec["seconds"] = seconds
            rec["log"] = str(log_path.relative_to(out))
            if code is None:
                rec.update(status="timeout", error=f"stopped after {seconds:.0f} s (budget {timeout:.0f} s)", tail=tail)
            elif name in RUNS:
                if code == 0:
                    try:
                        rec.update(status="ok", summary=_e2e_summary(tmp_path / name, seconds))
                    except (OSError, KeyError, ValueError) as exc:
                        rec.update(status="error", error=f"reading the results folder: {exc}", tail=tail)
                else:
                    rec.update(status="error", error=f"jax-ec run exited with {code}", tail=tail)
            else:
                try:
                    rec.update(json.loads(part_json.read_text()))
                except (OSError, ValueError):
                    rec.update(status="error", error=f"the part's process exited with {code} and no record", tail=tail)
                if rec["status"] == "error":
                    rec.setdefault("tail", tail)
            log(f"[suite] {name}: {rec['status']} in {seconds:.1f} s"
                + (f" ({rec.get('error') or rec.get('reason')})" if rec["status"] != "ok" else ""))
    return {"parts": records, "wall_s": time.perf_counter() - start}


# ------------------------------------------------------------------------------------------------
# Goals and tables


def _summary(record: dict, part: str) -> dict | None:
    rec = record["parts"].get(part)
    return rec.get("summary") if rec and rec.get("status") == "ok" else None


def goals(record: dict, platform: str) -> list[dict]:
    """Each goal of :data:`GOALS`' constants with its measurement (None where its part did not run)."""
    judged = platform == GOAL_PLATFORM
    rows = []

    def add(goal: str, value: float | None, target: float, sense: str, part: str, note: str | None = None):
        met = None
        if value is not None and judged:
            met = bool(value <= target if sense == "<=" else value >= target)
        notes = [note] if note else []
        if not judged:
            notes.append(f"judged on a {GOAL_PLATFORM} only; measured on {platform}")
        rows.append({"goal": goal, "measured": value, "target": target, "sense": sense, "met": met, "part": part,
                     "note": "; ".join(notes) or None})

    for dtype in ("float32", "bfloat16"):
        s = _summary(record, f"step_ratio_{dtype}")
        add(f"election step / plain step ({dtype})", s and s["election_over_plain"], ELECTION_OVER_PLAIN_MAX, "<=",
            f"step_ratio_{dtype}", s and f"{s['model']}: {s['election_ms']:.2f} ms vs {s['plain_ms']:.2f} ms")
    s = _summary(record, "redundancy")
    add("election step at r = n / at r = 1", s and s["largest_r_over_first_r"], REDUNDANCY_FLAT_MAX, "<=", "redundancy",
        s and f"{s['model']}, r = {s['largest_r']:g}")
    s = _summary(record, "paper_loop")
    add("paper loop / election step", s and s["speedup"], PAPER_LOOP_SPEEDUP_MIN, ">=", "paper_loop",
        s and f"{s['model']}: {s['ms_per_step']['torch_paper_loop']:.1f} ms vs "
              f"{s['ms_per_step']['jax_election']:.2f} ms ({s['torch_device']})")
    s = _summary(record, "trials_small")
    for model in (s or {}).get("models", {}) or GPU_SIZES.small_models.split(","):
        m = (s or {}).get("models", {}).get(model)
        t = m["ratio_t"] if m else TRIALS_GOAL_T
        add(f"{model}: per-trial throughput T = {t} / T = 1", m and m["ratio_over_t1"], TRIALS_SPEEDUP_MIN, ">=",
            "trials_small", None if not m or t == TRIALS_GOAL_T else f"the goal is at T = {TRIALS_GOAL_T}")
    return rows


def ratios(record: dict) -> list[dict]:
    """The other measurements as rows of (what, value, unit, part)."""
    rows = []
    for dtype in ("float32", "bfloat16"):
        s = _summary(record, f"step_ratio_{dtype}")
        if s:
            rows.append({"what": f"{s['model']} plain step ({dtype})", "value": s["plain_ms"], "unit": "ms",
                         "part": f"step_ratio_{dtype}"})
            rows.append({"what": f"{s['model']} election step ({dtype})", "value": s["election_ms"], "unit": "ms",
                         "part": f"step_ratio_{dtype}"})
            rows.append({"what": f"{s['model']} election step compile + first call ({dtype})",
                         "value": s["election_compile_s"], "unit": "s", "part": f"step_ratio_{dtype}"})
    f32, bf16 = _summary(record, "step_ratio_float32"), _summary(record, "step_ratio_bfloat16")
    if f32 and bf16:
        rows.append({"what": "election step bfloat16 / float32", "value": bf16["election_ms"] / f32["election_ms"],
                     "unit": "x", "part": "step_ratio_*"})
    s = _summary(record, "redundancy")
    if s:
        for v in s["per_r"].values():
            rows.append({"what": f"{s['model']} election step r = {v['r']:g} / r = 1 (realised r "
                                 f"{v['realised_redundancy']:.2f})", "value": v["over_first_r"], "unit": "x",
                         "part": "redundancy"})
    for part in ("trials_small", "trials_resnet"):
        s = _summary(record, part)
        for model, m in (s or {}).get("models", {}).items():
            for t, v in m["per_trials"].items():
                best = max(v["trial_steps_per_s"].values())
                rows.append({"what": f"{model} T = {t}: trial-steps/s (best of {', '.join(v['trial_steps_per_s'])}, "
                                     f"{v['faster_mode']} faster)", "value": best, "unit": "1/s", "part": part})
            if m["ratio_over_t1"] is not None:
                rows.append({"what": f"{model} per-trial throughput T = {m['ratio_t']} / T = 1",
                             "value": m["ratio_over_t1"], "unit": "x", "part": part})
    s = _summary(record, "vote_kernel")
    if s:
        rows.append({"what": f"vote kernel ({s['best']}, d = {s['d']:,}) bandwidth", "value": s["best_GBps"],
                     "unit": "GB/s", "part": "vote_kernel"})
        rows.append({"what": "vote kernel ms", "value": s["functions"][s["best"]]["ms"], "unit": "ms",
                     "part": "vote_kernel"})
        if s["best_fraction_of_peak"] is not None:
            rows.append({"what": f"vote kernel bandwidth / peak ({s['peak_GBps']:.0f} GB/s)",
                         "value": s["best_fraction_of_peak"], "unit": "x", "part": "vote_kernel"})
        rows.append({"what": "streaming read (ones @ S) bandwidth", "value": s["reference_read_GBps"], "unit": "GB/s",
                     "part": "vote_kernel"})
    s = _summary(record, "paper_loop")
    if s:
        rows.append({"what": f"paper loop / election step ({s['model']}, {s['torch_device']})", "value": s["speedup"],
                     "unit": "x", "part": "paper_loop"})
    for part in RUNS:
        s = _summary(record, part)
        if s:
            rows.append({"what": f"{part}: jax-ec run wall time ({s['schemes']} schemes x {s['trials']} trials)",
                         "value": s["wall_s"], "unit": "s", "part": part})
            rows.append({"what": f"{part}: (scheme, trial)-steps per second of wall time", "value": s["pair_steps_per_s"],
                         "unit": "1/s", "part": part})
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown(doc: dict) -> str:
    env = doc["environment"]
    lines = [f"# jax_ec benchmark suite: {env['device_kind']}" + (" (smoke form)" if doc["smoke"] else ""), "",
             f"jax {env['jax_version']}, {env['platform']}, git {(env.get('git') or {}).get('commit', '?')}, "
             f"{doc['wall_s']:.0f} s in all (deadline {doc['deadline_s']:.0f} s).", "",
             "## Goals (benchmarks/README.md)", "", "| goal | measured | target | met | note |", "|---|---|---|---|---|"]
    for g in doc["goals"]:
        met = {True: "yes", False: "NO", None: "–"}[g["met"]]
        lines.append(f"| {g['goal']} | {_fmt(g['measured'])} | {g['sense']} {g['target']:g} | {met} | {g['note'] or ''} |")
    lines += ["", "## Measurements", "", "| measurement | value | unit |", "|---|---|---|"]
    lines += [f"| {r['what']} | {_fmt(r['value'])} | {r['unit']} |" for r in doc["ratios"]]
    lines += ["", "## Parts", "", "| part | status | seconds | budget | note |", "|---|---|---|---|---|"]
    for name, rec in doc["parts"].items():
        note = rec.get("error") or rec.get("reason") or ""
        lines.append(f"| {name} | {rec['status']} | {rec.get('seconds', 0):.1f} | {rec['budget_s']:.0f} | "
                     f"{note.replace('|', '/')[:200]} |")
    return "\n".join(lines) + "\n"


def _environment() -> dict:
    """The device and versions, without taking the GPU's memory from the parts."""
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    from benchmarks import _timing as T
    env = T.environment()
    return env


def main(argv: list[str] | None = None) -> dict | int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results/<device>/; "
                        "with --smoke a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="the same parts with tiny sizes, on any device")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help=f"total seconds (default {DEADLINE_S:g}; smoke {SMOKE_DEADLINE_S:g})")
    parser.add_argument("--only", default=None, help=f"comma-separated parts (default all: {', '.join(PARTS)})")
    parser.add_argument("--part", choices=PARTS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--part-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.part is not None:    # the child side of one part
        if not args.part_json or not args.out:
            parser.error("--part needs --part-json and --out")
        ctx = Context(Path(args.out), SMOKE_SIZES if args.smoke else GPU_SIZES, args.smoke)
        return run_part_in_process(args.part, ctx, Path(args.part_json))

    parts = PARTS
    if args.only:
        parts = tuple(p.strip() for p in args.only.split(",") if p.strip())
        unknown = [p for p in parts if p not in PARTS]
        if unknown:
            parser.error(f"--only: unknown part(s) {', '.join(unknown)}; allowed: {', '.join(PARTS)}")
    deadline = args.deadline_s if args.deadline_s is not None else (SMOKE_DEADLINE_S if args.smoke else DEADLINE_S)
    if deadline <= 0:
        parser.error(f"--deadline-s: got {deadline:g}; expected seconds > 0")
    from benchmarks import device_wheels
    if (site := device_wheels.activate()) is not None:   # a bare GPU machine: the carried wheels
        _START_ENV["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [_START_ENV.get("PYTHONPATH")])])
    if missing := missing_modules():
        print(f"benchmarks.suite: error: missing Python packages {', '.join(missing)}; "
              f"pip install {' '.join(missing)} (or pip install -e .; on a machine without network, carry the "
              f"wheels of `python -m benchmarks.device_wheels` in .device_wheels/)", file=sys.stderr)
        return 2
    env = _environment()
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = Path(tempfile.mkdtemp(prefix="jax_ec_suite_smoke_"))
    else:
        out = RESULTS / device_slug(env["device_kind"])
    if env["platform"] != GOAL_PLATFORM and not args.smoke:
        print(f"[suite] note: running on {env['platform']} ({env['device_kind']}); the sizes are chosen for a GPU "
              "and the goals are judged on a GPU only (--smoke for a quick check)")
    print(f"[suite] {env['device_kind']}: {len(parts)} part(s) into {out}, deadline {deadline:.0f} s")
    record = run_suite(out, args.smoke, parts, deadline)
    doc = {"suite": "benchmarks.suite", "smoke": args.smoke, "environment": env,
           "device_slug": device_slug(env["device_kind"]), "deadline_s": deadline, "wall_s": record["wall_s"],
           "constants": {"ELECTION_OVER_PLAIN_MAX": ELECTION_OVER_PLAIN_MAX, "REDUNDANCY_FLAT_MAX": REDUNDANCY_FLAT_MAX,
                         "PAPER_LOOP_SPEEDUP_MIN": PAPER_LOOP_SPEEDUP_MIN, "TRIALS_GOAL_T": TRIALS_GOAL_T,
                         "TRIALS_SPEEDUP_MIN": TRIALS_SPEEDUP_MIN, "GOAL_PLATFORM": GOAL_PLATFORM},
           "parts": record["parts"]}
    doc["goals"] = goals(doc, env["platform"])
    doc["ratios"] = ratios(doc)
    text = markdown(doc)
    from jax_ec._io import atomic_write_text, write_json
    write_json(out / "suite.json", doc)
    atomic_write_text(out / "suite.md", text)
    print()
    print(text)
    print(f"[suite] wrote {out / 'suite.json'} and {out / 'suite.md'}")
    return doc


if __name__ == "__main__":
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
