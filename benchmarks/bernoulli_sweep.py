"""Smallest Bernoulli connection probability p for a target failure probability, as n grows.

    python -m benchmarks.bernoulli_sweep [--quick] [--seed S] [--out DIR]

For odd n from 5 to 201 (k = n partitions) and each setting below, :func:`smallest_p` bisects p on
the grid 2^-12 with common random numbers (one key per (setting, n)) until the Monte Carlo failure
probability (256 code draws × 256 sign patterns = 65,536 pairs; resolution 1.5e-5, about 650 failures
at the target) is at most the target. Both settings use target 1e-2 and b = floor(fraction · n)
Byzantine workers placed uniformly at random (one set per code draw):

* ``uniform_reverse_b10``: uniform ±1 partition signs, failure = master vote ≠ majority µ of the
  partition signs (or a tie), reverse attack, b = floor(0.1 n). Near-tie patterns (|Σ s_j| small,
  probability ~ 1/sqrt(n)) can only be decided by workers that see almost every partition, so this
  setting needs p close to 1 at every n;
* ``correct75_directional_b20``: each partition sign correct (+1) with probability q = 0.75,
  failure = master vote ≠ +1 (or a tie), directional attack (every Byzantine worker sends −1, empty
  or not), b = floor(0.2 n). For small n even p = 1 (every worker holds every partition, so the vote
  is the partitions' own majority) misses the target, since P(Binomial(n, 0.75) ≤ n/2) > 1e-2 for
  n ≤ 19: those entries are null ("unreachable").

Because p* is selected on the same random numbers that estimate f(p*) ≤ target, the JSON also
re-estimates the failure probability at p* with a fresh key (an out-of-sample check, with its CI).

Also writes the load-deviation plot: empirical P(|load − np| ≥ nε) for n = 201, p = sqrt(log n / n)
against the exact binomial tail and Hoeffding's 2·exp(−2ε²n).

Outputs (in ``benchmarks/results/`` by default): ``bernoulli_smallest_p.json`` (settings, per n: b,
smallest p, sqrt(log n / n), ratio, failure estimate with its 95% CI at p (same key and a fresh key) and at p − 2^-12, seconds;
a log-log slope of p against n; run metadata), ``bernoulli_smallest_p.png`` (p against
sqrt(log n / n) and the ratio against n) and ``bernoulli_load_deviation.png``. About 4 minutes on
2 CPU cores; ``--quick`` runs a few n with fewer draws in well under a minute.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import jax
import numpy as np

from jax_ec.analysis.bernoulli import failure_probability, load_deviation_curve, smallest_p
from jax_ec.analysis.report import load_deviation_table, plot_load_deviation, plot_smallest_p, smallest_p_table
from jax_ec.results import run_metadata, write_json

NS = (5, 7, 9, 11, 13, 15, 19, 25, 31, 41, 51, 65, 81, 101, 125, 151, 175, 201)
QUICK_NS = (5, 11, 25, 51)
SETTINGS = {
    "uniform_reverse_b10": dict(sign_model="uniform", b_fraction=0.1, attack="reverse", target=1e-2),
    "correct75_directional_b20": dict(sign_model=("correct", 0.75), b_fraction=0.2, attack="directional",
                                      target=1e-2),
}
RESOLUTION_BITS = 12


def _slope(ns, ps, n_min=25):
    """Least-squares slope of log p against log n over the reachable n >= n_min."""
    pts = [(math.log(n), math.log(p)) for n, p in zip(ns, ps) if n >= n_min and p is not None and p > 0
           and math.isfinite(p)]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def run(out_dir: Path, seed: int, quick: bool) -> dict:
    ns = QUICK_NS if quick else NS
    draws, patterns = (128, 128) if quick else (256, 256)
    root = jax.random.PRNGKey(seed)
    results = {}
    ps_by_setting = {}
    for s_index, (name, setting) in enumerate(SETTINGS.items()):
        rows = []
        for n in ns:
            key = jax.random.fold_in(jax.random.fold_in(root, s_index), n)
            b = int(math.floor(setting["b_fraction"] * n + 1e-9))
            common = dict(attack=setting["attack"], sign_model=setting["sign_model"], draws=draws,
                          patterns_per_draw=patterns)
            t0 = time.perf_counter()
            p = smallest_p(key, n, setting["target"], b=b, resolution_bits=RESOLUTION_BITS, **common)
            seconds = time.perf_counter() - t0
            row = {"n": n, "b": b, "smallest_p": p, "sqrt_log_n_over_n": math.sqrt(math.log(n) / n),
                   "seconds": seconds}
            if math.isfinite(p):
                row["ratio"] = p / row["sqrt_log_n_over_n"]
                row["mean_load"] = n * p
                row["failure_at_p"] = failure_probability(key, n, p, b, **common)._asdict()
                row["failure_at_p_fresh_key"] = failure_probability(jax.random.fold_in(key, 1_000_003), n, p,
                                                                    b, **common)._asdict()
                if p > 0:
                    below = p - 2.0**-RESOLUTION_BITS
                    row["failure_below_p"] = failure_probability(key, n, below, b, **common)._asdict()
            else:
                row["unreachable"] = True
                row["failure_at_p1"] = failure_probability(key, n, 1.0, b, **common)._asdict()
            rows.append(row)
            print(f"{name:26s} n={n:4d} b={b:3d} p={p:.4f}  ({seconds:.1f} s)", flush=True)
        ps = [r["smallest_p"] for r in rows]
        ps_by_setting[name] = ps
        print(smallest_p_table([r["n"] for r in rows], ps), flush=True)
        sign = setting["sign_model"]
        results[name] = {
            "setting": {**setting, "sign_model": sign if isinstance(sign, str) else list(sign),
                        "placement": "uniform", "k": "n", "draws": draws, "patterns_per_draw": patterns,
                        "resolution": 2.0**-RESOLUTION_BITS},
            "loglog_slope_p_vs_n_from_n25": _slope(ns, ps),
            "rows": rows,
        }

    plot_smallest_p(out_dir / "bernoulli_smallest_p.png", ns, ps_by_setting,
                    title="smallest Bernoulli p (k = n) with failure probability ≤ 1e-2")

    n_load = 201
    p_load = math.sqrt(math.log(n_load) / n_load)
    eps_grid = [round(x, 3) for x in np.linspace(0.01, 0.2, 20)]
    t0 = time.perf_counter()
    estimates = load_deviation_curve(jax.random.fold_in(root, 99), n_load, p_load, eps_grid,
                                     draws=500 if quick else 5000)
    load_seconds = time.perf_counter() - t0
    plot_load_deviation(out_dir / "bernoulli_load_deviation.png", n_load, p_load, eps_grid, estimates=estimates)
    print(load_deviation_table(n_load, p_load, eps_grid, estimates), flush=True)

    report = {
        "description": "smallest Bernoulli connection probability p (k = n) with Monte Carlo failure "
                       "probability <= target, by bisection with common random numbers "
                       "(jax_ec.analysis.bernoulli.smallest_p); null p = target unreachable even at p = 1",
        "seed": seed,
        "quick": quick,
        "ns": list(ns),
        "settings": results,
        "load_deviation": {
            "n": n_load, "p": p_load, "eps": eps_grid, "seconds": load_seconds,
            "estimates": [e._asdict() for e in estimates],
        },
        "metadata": run_metadata(),
    }
    write_json(out_dir / "bernoulli_smallest_p.json", report)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few n, fewer draws")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    run(args.out, args.seed, args.quick)
    print(f"total {time.perf_counter() - t0:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
