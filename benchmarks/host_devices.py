"""Host devices on the CPU: one JAX device per core against one device for the whole machine.

    python -m benchmarks.host_devices [--repeats 2] [--quick] [--out PATH]

``jax-ec run`` gives JAX's CPU backend one device per available core and, with ``runtime.mesh.trials:
auto``, splits the (scheme, trial) pairs of each compiled call over them
(:func:`jax_ec.runtime.use_host_cores`). This benchmark times, wall clock from process start to exit
(``jax-ec run`` in a fresh Python process, compilation included), each case with
``JAX_NUM_CPU_DEVICES=1`` (one device, XLA's own threads only) and with the default (one device per
core), and checks that both runs wrote the same metrics:

* ``amazon``: the default job (``configs/amazon_paper.yaml``: touched-coordinates formulation);
* ``digits_mlp``: ``configs/digits_byzantine40.yaml`` with the MLP, 10 trials, 300 steps (dense);
* ``digits_cnn``: the same with the CNN, 2 trials, 20 steps (dense, convolutions).

Reported: each median wall time and the ratio one device / per-core devices (> 1: the cores as
devices are faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks import _timing as T

CASES = {
    "amazon": ("amazon_paper.yaml", []),
    "digits_mlp": ("digits_byzantine40.yaml", ["task.model=mlp", "trials=10", "steps=300", "eval_every=100"]),
    "digits_cnn": ("digits_byzantine40.yaml", ["task.model=cnn", "trials=2", "steps=20", "eval_every=10"]),
}
QUICK = {
    "amazon": ["trials=2", "epochs=1"],
    "digits_mlp": ["trials=2", "steps=20", "eval_every=10"],
    "digits_cnn": ["steps=4", "eval_every=2"],
}


def run_once(config: str, overrides: list[str], out: Path, devices: int | None) -> float:
    env = dict(os.environ)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    if devices is not None:
        env["JAX_NUM_CPU_DEVICES"] = str(devices)
    return T.time_cli_run([sys.executable, "-m", "jax_ec.cli", "run"], T.CONFIGS / config, out, overrides, env)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    T.common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    cases = [c for c in args.cases.split(",") if c]
    env = T.environment()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    times: dict[str, dict[str, list[float]]] = {c: {"one": [], "cores": []} for c in cases}
    same: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):      # interleaved: a slow spell hits both alike
            for case in cases:
                config, overrides = CASES[case]
                overrides = overrides + (QUICK[case] if args.quick else [])
                for variant, devices in (("one", 1), ("cores", None)):
                    times[case][variant].append(run_once(config, overrides, Path(tmp) / f"{case}_{variant}{rep}",
                                                         devices))
                    print(f"  {case} {variant} #{rep}: {times[case][variant][-1]:.1f} s", flush=True)
        for case in cases:
            same[case] = T.metrics_without_wall_time(Path(tmp) / f"{case}_one0") == T.metrics_without_wall_time(Path(tmp) / f"{case}_cores0")
    rows = []
    for case in cases:
        one, per_core = statistics.median(times[case]["one"]), statistics.median(times[case]["cores"])
        rows.append({"case": case, "one": one, "cores": per_core, "ratio": one / per_core, "same": same[case]})
    print(f"cores: {cores}")
    print(T.table(rows, [("case", "case", ""), ("one", "1 device s", ".1f"), ("cores", f"{cores} devices s", ".1f"),
                         ("ratio", "1 / per-core", ".2f"), ("same", "same metrics", "")]))
    T.write_result(T.out_path(args, "host_devices"), "host_devices", env, args,
                   {"cores": cores, "times_s": times, "rows": rows})
    return {r["case"]: r["ratio"] for r in rows}


if __name__ == "__main__":
    main()
