"""Exhaustive verification of the deterministic construction for every n <= 25 and every b < n/2.

    python -m benchmarks.verify_deterministic [--max-n 25] [--out DIR]

For each n (odd and even), each b < n/2 and both variants (every worker busy; idle workers
allowed), builds :func:`jax_ec.analysis.design.deterministic` and checks with the exact verifier
that it is perfectly b-tolerant, that its worst-case cost ``2B + Z`` equals the knapsack value the
construction predicts (``margin = n − 2b − worst_cost``), that every partition is held and (busy
variant) every worker holds one; also checks it is *not* (b + 1)-tolerant where b + 1 < n/2
(the redundancy is not wasted on a larger b). Writes ``benchmarks/results/verify_deterministic.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax

from jax_ec.analysis.design import deterministic, deterministic_design
from jax_ec.analysis.verify import verify
from jax_ec.results import run_metadata, write_json


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=25)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    rows = []
    t_all = time.perf_counter()
    for n in range(1, args.max_n + 1):
        for b in range((n + 1) // 2):
            for allow_idle in (False, True):
                t0 = time.perf_counter()
                d = deterministic_design(n, b, allow_idle)
                G = deterministic(n, b, allow_idle)
                res = verify(G, b)
                nxt = verify(G, b + 1) if 2 * (b + 1) < n else None
                rows.append({
                    "n": n, "b": b, "allow_idle": allow_idle, "k": d.k,
                    "redundancy": d.redundancy, "ones": d.ones, "full": d.full, "fixers": d.fixers,
                    "idle": d.idle, "singletons": d.singletons, "even_sets": list(d.even_sets),
                    "worst_cost": d.worst_cost, "budget": d.budget,
                    "tolerant": res.tolerant, "margin": res.margin,
                    "margin_matches_knapsack": res.margin == n - 2 * b - d.worst_cost,
                    "every_partition_held": bool((G.sum(axis=0) > 0).all()),
                    "every_worker_busy": bool((G.sum(axis=1) > 0).all()),
                    "tolerant_b_plus_1": None if nxt is None else nxt.tolerant,
                    "patterns_checked": res.patterns_checked, "configurations": res.configurations,
                    "seconds": time.perf_counter() - t0,
                })
    ok = all(r["tolerant"] and r["margin_matches_knapsack"] and r["every_partition_held"]
             and (r["allow_idle"] or r["every_worker_busy"]) for r in rows)
    out = {
        "benchmark": "verify_deterministic",
        "device": str(jax.devices()[0].device_kind),
        "jax_version": jax.__version__,
        "max_n": args.max_n,
        "cases": len(rows),
        "all_ok": ok,
        "not_tolerant_for_b_plus_1": sum(1 for r in rows if r["tolerant_b_plus_1"] is False),
        "tolerant_for_b_plus_1": sum(1 for r in rows if r["tolerant_b_plus_1"] is True),
        "total_seconds": time.perf_counter() - t_all,
        "rows": rows,
        "metadata": run_metadata(),
    }
    path = Path(args.out) / "verify_deterministic.json"
    write_json(path, out)
    print(f"{len(rows)} (n, b, variant) cases with n <= {args.max_n}: all tolerant and as predicted: {ok}; "
          f"{out['total_seconds']:.1f} s; wrote {path}")
    if not ok:
        raise SystemExit(1)
    return out


if __name__ == "__main__":
    main()
