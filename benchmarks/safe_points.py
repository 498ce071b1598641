"""What the safe points cost: the training loop in calls of about ``SAFE_POINT_S`` against one call
per evaluation chunk.

    python -m benchmarks.safe_points [--repeats 2] [--quick] [--out PATH]

A run checks for Ctrl-C / ``SIGTERM`` between two compiled calls of its training loop, and sizes the
calls to about :data:`jax_ec.experiment.SAFE_POINT_S` seconds of device work
(:class:`jax_ec.experiment._Pacer`). This benchmark times the Amazon default job
(``configs/amazon_paper.yaml``), wall clock from process start to exit (``jax-ec run`` in a fresh
process, compilation included), with the shipped value and with calls as long as an evaluation
chunk (``SAFE_POINT_S`` = 1e9), interleaved, and checks that both write the same metrics.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks import _timing as T

CONFIG = T.CONFIGS / "amazon_paper.yaml"
QUICK = ["trials=2", "epochs=1"]
# The CLI with SAFE_POINT_S replaced (argv[1]) before anything runs.
PATCHED_CLI = """
import sys
import jax_ec.experiment as experiment
experiment.SAFE_POINT_S = float(sys.argv[1])
from jax_ec.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run_once(safe_point_s: float, overrides: list[str], out: Path) -> float:
    return T.time_cli_run([sys.executable, "-c", PATCHED_CLI, repr(safe_point_s), "run"], CONFIG, out, overrides)


def main(argv=None) -> dict:
    from jax_ec.experiment import SAFE_POINT_S
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    T.common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    variants = {"safe_points": SAFE_POINT_S, "one_call_per_chunk": 1e9}
    overrides = QUICK if args.quick else []
    env = T.environment()
    times: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):      # interleaved: a slow spell hits both alike
            for name, seconds in variants.items():
                times[name].append(run_once(seconds, overrides, Path(tmp) / f"{name}{rep}"))
                print(f"  {name} #{rep}: {times[name][-1]:.1f} s", flush=True)
        same = T.metrics_without_wall_time(Path(tmp) / "safe_points0") == T.metrics_without_wall_time(Path(tmp) / "one_call_per_chunk0")
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratio = medians["safe_points"] / medians["one_call_per_chunk"]
    print(f"safe points ({SAFE_POINT_S} s) {medians['safe_points']:.1f} s, one call per chunk "
          f"{medians['one_call_per_chunk']:.1f} s: ratio {ratio:.3f}; same metrics: {same}")
    T.write_result(T.out_path(args, "safe_points"), "safe_points", env, args,
                   {"safe_point_s": SAFE_POINT_S, "times_s": times, "median_s": medians,
                    "ratio_safe_points_over_one_call": ratio, "same_metrics": same})
    return {"ratio": ratio, "same": same}


if __name__ == "__main__":
    main()
