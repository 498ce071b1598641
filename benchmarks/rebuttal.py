"""The rebuttal's claims, measured on the Amazon task and the shipped digits: a table with 95% CIs.

    python -m benchmarks.rebuttal [--results benchmarks/results/rebuttal] [--out PATH]

Reads the results folders that ``jax-ec run configs/rebuttal/*.yaml`` wrote into
``benchmarks/results/rebuttal/`` (the commands are in benchmarks/README.md) and compares final
metrics trial by trial: trial t uses the same key in every scheme of a config (its code draw,
Byzantine set, initialization and data order), so scheme differences are paired. For a claim
"A beats B" the statistic is the mean over trials of ``final_A − final_B`` with its Student-t 95%
interval; for "A degrades less than B under noise" it is the mean of
``(B_clean − B_noisy) − (A_clean − A_noisy)``. Verdict: *holds* when the interval lies above 0,
*does not hold* when it lies below 0, *inconclusive* when it contains 0.

Writes ``claims.json`` and ``claims.md`` beside the folders and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jax_ec._io import atomic_write_text, write_json
from jax_ec.results import CI_LEVEL, mean_ci, read_metrics_csv

RESULTS = Path(__file__).resolve().parent / "results" / "rebuttal"


@dataclass(frozen=True)
class Claim:
    claim: str            # a, b, c, d
    folder: str           # results folder under RESULTS
    setting: str          # what was run
    better: str | tuple[str, str]     # scheme (or (clean, noisy) pair) claimed to be better
    worse: str | tuple[str, str]


def _claims() -> list[Claim]:
    out = []
    for task, attacks in (("amazon", ("directional", "reverse", "omniscient")),
                          ("digits", ("directional", "reverse", "omniscient"))):
        for attack in attacks:
            for b in (3, 6):
                out.append(Claim("a", f"{task}_a_{attack}", f"{task}, {attack}, b = {b} of 15",
                                 f"bernoulli_r2_b{b}", f"signsgd_mv_b{b}"))
    for task in ("amazon", "digits"):
        for r, reff in ((2.5, 1.25), (3, 1.5)):
            out.append(Claim("b", f"{task}_b", f"{task}, directional, b = 6, r = {r:g}, rho = 0.5 (r_eff = {reff:g})",
                             f"bernoulli_r{r:g}_rho0.5", "signsgd_mv"))
        out.append(Claim("d", f"{task}_b", f"{task}, directional, b = 6: r_eff = 1.5 vs coordinate median (FGM), "
                         "the sign schemes' step size", "bernoulli_r3_rho0.5", "median"))
    for lr in ("0.01", "0.1", "1", "10"):
        out.append(Claim("d", "amazon_d_fgm_lr", f"amazon, directional, b = 6: r_eff = 1.5 vs FGM at step size {lr}",
                         "bernoulli_r3_rho0.5", f"median_lr{lr}"))
    for task in ("amazon", "digits"):
        for b in (0, 6):
            out.append(Claim("c", f"{task}_c", f"{task}, per-copy noise, b = {b}: Bernoulli r = 2 vs SignSGD-MV",
                             (f"bernoulli_r2_b{b}", f"bernoulli_r2_b{b}_noise"),
                             (f"signsgd_mv_b{b}", f"signsgd_mv_b{b}_noise")))
    return out


def _finals(folder: Path) -> tuple[dict[str, np.ndarray], dict, str]:
    curves = {c.scheme: c.metric[:, -1] for c in read_metrics_csv(folder / "metrics.csv")}
    run = json.loads((folder / "run.json").read_text())
    metric = read_metrics_csv(folder / "metrics.csv")[0].metric_name
    return curves, run, metric


def _interval(x: np.ndarray) -> tuple[float, float, float]:
    m, lo, hi = mean_ci(x, level=CI_LEVEL)
    return float(m), float(lo), float(hi)


def _verdict(lo: float, hi: float) -> str:
    if math.isnan(lo):
        return "inconclusive"
    return "holds" if lo > 0 else "does not hold" if hi < 0 else "inconclusive"


def evaluate(results: Path) -> list[dict]:
    rows = []
    for c in _claims():
        folder = results / c.folder
        names = [c.better, c.worse] if isinstance(c.better, str) else [*c.better, *c.worse]
        missing = None
        if not (folder / "metrics.csv").is_file():
            missing = f"not run: no results in {c.folder}/"
        else:
            finals, run, metric = _finals(folder)
            absent = [n for n in names if n not in finals]
            if absent:
                missing = f"not run: {c.folder}/ lacks {', '.join(absent)}"
        if missing is not None:     # said in the table, never silently left out
            rows.append({"claim": c.claim, "setting": c.setting, "folder": c.folder, "verdict": missing})
            continue
        info = run["schemes"]
        if isinstance(c.better, str):
            diff = finals[c.better] - finals[c.worse]
            values = {c.better: _interval(finals[c.better]), c.worse: _interval(finals[c.worse])}
            statistic = f"final {metric}: {c.better} − {c.worse}"
        else:
            (a_clean, a_noisy), (b_clean, b_noisy) = c.better, c.worse
            diff = (finals[b_clean] - finals[b_noisy]) - (finals[a_clean] - finals[a_noisy])
            values = {n: _interval(finals[n]) for n in names}
            statistic = f"drop of {b_clean} − drop of {a_clean} (drop: clean − noisy final {metric})"
        mean, lo, hi = _interval(diff)
        rows.append({
            "claim": c.claim, "setting": c.setting, "folder": c.folder, "trials": int(len(diff)),
            "metric": metric, "statistic": statistic, "difference": mean, "ci_low": lo, "ci_high": hi,
            "verdict": _verdict(lo, hi), "schemes": values,
            "bits_per_worker_step": {n: info[n].get("bits_per_worker_step") for n in names},
            "bits_per_worker_epoch": {n: info[n].get("bits_per_worker_epoch") for n in names},
        })
    return rows


def _fmt(m: float, lo: float, hi: float, digits: int = 4) -> str:
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown(rows: list[dict]) -> str:
    lines = ["| claim | setting | trials | schemes: final metric [95% CI] | paired difference [95% CI] | "
             "bits/worker/step (/epoch) | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "difference" not in r:
            lines.append(f"| ({r['claim']}) | {r['setting']} | – | – | – | – | {r['verdict']} |")
            continue
        schemes = "; ".join(f"{n} {_fmt(*v)}" for n, v in r["schemes"].items())
        bits = ", ".join(f"{n}: {b:,} ({r['bits_per_worker_epoch'][n]:,})"
                         for n, b in r["bits_per_worker_step"].items()) if r["claim"] == "d" else "–"
        lines.append(f"| ({r['claim']}) | {r['setting']} | {r['trials']} | {schemes} | "
                     f"{_fmt(r['difference'], r['ci_low'], r['ci_high'])} | {bits} | {r['verdict']} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS), help="folder holding the rebuttal result folders")
    parser.add_argument("--out", default=None, help="where claims.json and claims.md go (default: --results)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    out = Path(args.out) if args.out else results
    rows = evaluate(results)
    table = markdown(rows)
    print(table)
    write_json(out / "claims.json", {"claims": rows, "ci_level": CI_LEVEL,
                                      "method": "paired Student-t interval of per-trial differences of final metrics"})
    atomic_write_text(out / "claims.md", table + "\n")
    return rows


if __name__ == "__main__":
    main()
