"""Throughput of the exact tolerance verifier on a code where symmetry cannot help.

    python -m benchmarks.verify_throughput [--n 21] [--b 2] [--repeats 7] [--out DIR]

A 21 × 21 Bernoulli code (p = 1/2) with 21 distinct columns, so the column collapse does nothing
and every one of the 2^21 sign patterns is covered (2^20 evaluated: the m ↔ −m symmetry halves the
work). One warm-up call (it includes compilation) is timed separately; then the median over
``--repeats`` calls. Writes ``benchmarks/results/verify_throughput.json`` with the device, the JAX
version and patterns/s (patterns covered per second; configurations evaluated per second beside it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from jax_ec.analysis.verify import verify
from jax_ec.codes import bernoulli
from jax_ec.results import run_metadata, write_json


def distinct_column_code(n: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """The first Bernoulli(1/2) draw (seeds seed, seed + 1, ...) with n distinct columns."""
    while True:
        G = bernoulli(seed, n, n / 2)
        if len(np.unique(G.T, axis=0)) == n:
            return G, seed
        seed += 1


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=21)
    parser.add_argument("--b", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    G, seed = distinct_column_code(args.n)
    t0 = time.perf_counter()
    first = verify(G, args.b)
    warmup = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = verify(G, args.b)
        times.append(time.perf_counter() - t0)
    assert res.margin == first.margin
    median = statistics.median(times)
    out = {
        "benchmark": "verify_throughput",
        "device": str(jax.devices()[0].device_kind),
        "jax_backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "cpu_count": os.cpu_count(),
        "code": {"kind": "bernoulli", "seed": seed, "n": args.n, "k": args.n, "p": 0.5,
                 "distinct_columns": res.column_groups, "distinct_rows": res.row_groups,
                 "redundancy": float(G.sum()) / args.n},
        "b": args.b,
        "patterns_covered": res.patterns_checked,
        "configurations_evaluated": res.configurations,
        "tolerant": res.tolerant,
        "margin": res.margin,
        "warmup_seconds_incl_compile": warmup,
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": median,
        "patterns_per_second": res.patterns_checked / median,
        "configurations_per_second": res.configurations / median,
        "metadata": run_metadata(),
    }
    path = Path(args.out) / "verify_throughput.json"
    write_json(path, out)
    print(f"{res.patterns_checked} patterns of a {args.n}x{args.n} code (b = {args.b}): median "
          f"{median:.3f} s over {args.repeats} runs -> {out['patterns_per_second']:.3g} patterns/s "
          f"on {out['device']} (warm-up incl. compile {warmup:.2f} s); wrote {path}")
    return out


if __name__ == "__main__":
    main()
