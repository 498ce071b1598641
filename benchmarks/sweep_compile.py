"""A whole sweep against one scheme: what grouping schemes into one compiled call saves.

    python -m benchmarks.sweep_compile [--trials 10] [--steps 100] [--repeats 2] [--quick] [--out PATH]

Times, wall clock from process start to exit (``jax-ec run`` in a fresh Python process each time,
compilation included), the digits MLP (``configs/digits_byzantine40.yaml`` with ``task.model:
mlp``) with ``--trials`` trials and ``--steps`` steps:

* ``one``: one scheme, Bernoulli r = 2 at b = 3;
* ``sweep``: a sweep over b ∈ {1, …, 6} × r ∈ {1, 2}, 12 schemes (one static shape: one compiled call);
* ``explicit``: the same 12 schemes written out one by one (they group the same way).

Reported: each median wall time and its ratio to ``one`` (the goal: the sweep within 1.5×), beside
the steps each run computes (12× for the sweep).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks import _timing as T

CONFIG = T.CONFIGS / "digits_byzantine40.yaml"


def variants(trials: int, steps: int) -> dict[str, list[str]]:
    common = ["task.model=mlp", f"trials={trials}", f"steps={steps}", f"eval_every={max(1, steps // 4)}"]
    grid = [(b, r) for b in range(1, 7) for r in (1, 2)]
    explicit = ", ".join(f"{{name: 'bern[b={b},r={r}]', code: bernoulli, r: {r}, b: {b}, nonempty_rows: true}}"
                         for b, r in grid)
    return {
        "one": [*common, "schemes=[{name: bern, code: bernoulli, r: 2, b: 3, nonempty_rows: true}]"],
        "sweep": [*common, "schemes=[{name: bern, code: bernoulli, r: 2, nonempty_rows: true, "
                           "sweep: {b: [1, 2, 3, 4, 5, 6], r: [1, 2]}}]"],
        "explicit": [*common, f"schemes=[{explicit}]"],
    }


def run_once(overrides: list[str], out: Path) -> float:
    return T.time_cli_run([sys.executable, "-m", "jax_ec.cli", "run"], CONFIG, out, overrides)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    T.common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.steps, args.repeats = 2, 4, 1
    env = T.environment()
    runs = variants(args.trials, args.steps)
    times: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):      # interleaved: a slow spell hits every variant alike
            for name, overrides in runs.items():
                times[name].append(run_once(overrides, Path(tmp) / f"{name}{rep}"))
                print(f"  {name} #{rep}: {times[name][-1]:.1f} s")
        groups = {name: json.loads((Path(tmp) / f"{name}0" / "run.json").read_text())["groups"] for name in runs}
    median = {name: statistics.median(t) for name, t in times.items()}
    rows = [{"variant": name, "schemes": 1 if name == "one" else 12, "groups": len(groups[name]),
             "s": median[name], "ratio": median[name] / median["one"]} for name in runs]
    print(T.table(rows, [("variant", "variant", ""), ("schemes", "schemes", "d"), ("groups", "compiled calls", "d"),
                         ("s", "wall s (median)", ".1f"), ("ratio", "/ one scheme", ".2f")]))
    goal = median["sweep"] / median["one"]
    print(f"sweep / one scheme: {goal:.2f} (goal <= 1.5: {'met' if goal <= 1.5 else 'missed'})")
    T.write_result(T.out_path(args, "sweep_compile"), "sweep_compile", env, args,
                   {"times_s": times, "median_s": median, "groups": groups,
                    "ratio_sweep_over_one": goal, "ratio_explicit_over_one": median["explicit"] / median["one"]})
    return median


if __name__ == "__main__":
    main()
