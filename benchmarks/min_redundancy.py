"""Exact minimum redundancy r_min(n, b) beside the construction and the repetition code.

    python -m benchmarks.min_redundancy [--max-n 11] [--exact-n 9] [--time-limit 240] [--out DIR]

For every n <= max-n (k = n partitions) and every b < n/2, with and without idle workers, runs the
exact integer program of :func:`jax_ec.analysis.search.min_redundancy` (seeded with the
construction's number of ones as an upper bound). Up to ``--exact-n`` the solver runs without a
time limit worth mentioning (600 s); above it with ``--time-limit`` seconds per case, and a case that
stops early is reported as bounds [lower, best found]. Prints a Markdown table (pasted into
docs/codes.md) and writes ``benchmarks/results/min_redundancy.json``. About 35 minutes on 2 CPU
cores with the defaults (n = 10, 11 dominate); ``--max-n 9`` takes about 3 minutes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from jax_ec.analysis.design import deterministic_design
from jax_ec.analysis.search import min_redundancy
from jax_ec.results import run_metadata, write_json


def _cell(entry: dict) -> str:
    if entry["optimal"]:
        return f"**{entry['ones'] / entry['n']:.4g}**"
    lo = entry["lower_bound"] / entry["n"]
    hi = "?" if entry["ones"] is None else f"{entry['ones'] / entry['n']:.4g}"
    return f"[{lo:.4g}, {hi}]"


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| n | b | r_min, every worker busy | construction `deterministic(n, b)` | "
        "r_min, idle allowed | construction, idle allowed | repetition 2b+1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['n']} | {r['b']} | {_cell(r['busy'])} | {r['construction_busy']:.4g} | "
                     f"{_cell(r['idle'])} | {r['construction_idle']:.4g} | {2 * r['b'] + 1} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=11)
    parser.add_argument("--exact-n", type=int, default=9)
    parser.add_argument("--time-limit", type=float, default=240.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    rows = []
    t_all = time.perf_counter()
    for n in range(1, args.max_n + 1):
        limit = 600.0 if n <= args.exact_n else args.time_limit
        for b in range((n + 1) // 2):
            row = {"n": n, "b": b, "k": n}
            for key, idle in (("busy", False), ("idle", True)):
                d = deterministic_design(n, b, idle)
                res = min_redundancy(n, b, allow_idle=idle, time_limit=limit, upper_bound=d.ones)
                row[key] = {
                    "n": n, "ones": res.ones, "lower_bound": res.lower_bound, "optimal": res.optimal,
                    "r_min": res.r_min, "best_redundancy": res.redundancy,
                    "seconds": res.seconds, "time_limit": limit, "status": res.status,
                    "matrix": None if res.G is None else res.G.tolist(),
                }
                row[f"construction_{key}"] = d.redundancy
                row[f"construction_{key}_ones"] = d.ones
                print(f"n={n:2d} b={b:2d} {key:4s}: ones {res.ones} (lower bound {res.lower_bound}, "
                      f"{'optimal' if res.optimal else 'time limit'}, {res.seconds:.1f} s); "
                      f"construction {d.ones}", flush=True)
            rows.append(row)
    table = markdown_table(rows)
    out = {
        "benchmark": "min_redundancy",
        "search_space": "all n x k 0/1 matrices with k = n (repeated rows allowed, partitions may be "
                        "unheld); 'busy': every row nonempty; 'idle': empty rows allowed",
        "max_n": args.max_n, "exact_n": args.exact_n, "time_limit": args.time_limit,
        "total_seconds": time.perf_counter() - t_all,
        "rows": rows,
        "markdown_table": table,
        "metadata": run_metadata(),
    }
    path = Path(args.out) / "min_redundancy.json"
    write_json(path, out)
    print(table)
    print(f"wrote {path} ({out['total_seconds']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
