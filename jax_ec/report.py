"""Reports over result folders: a markdown table per figure and accuracy-vs-time plots.

``jax-ec report DIR [DIR ...]`` reads each folder written by :func:`jax_ec.experiment.run_experiment`
(``metrics.csv``, ``run.json``) and writes ``report.md`` with, per folder (one paper figure), one
row per scheme: the final metric mean with its 95% CI, the fraction of trials reaching the target,
iterations, epochs and simulated time to the target (mean and CI over the trials that reach it),
and the communication cost (bits per coordinate, per worker per step and per worker per epoch: a
reduced-minibatch scheme takes more steps per epoch), plus one plot of the curves per folder and,
for schemes swept over one field, the final metric against that field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ._io import atomic_write_text
from .results import plot_curves, plot_sweeps, read_metrics_csv, summarize

__all__ = ["report_markdown", "write_report"]


def _fmt(x: float, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _ci(row: dict, prefix: str) -> str:
    mean, low, high = row[f"{prefix}_mean"], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]
    if math.isnan(mean):
        return "–"
    if math.isnan(low):
        return _fmt(mean)
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]"


def report_markdown(folders: list[str | Path], target: float | None = None,
                    plot_dir: str | Path | None = None) -> str:
    """Markdown for the given result folders (``target`` overrides each folder's configured one)."""
    import yaml
    parts = []
    for folder in map(Path, folders):
        for name in ("metrics.csv", "run.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"report: {str(folder / name)!r} is missing; expected a folder written by "
                                        "`jax-ec run`")
        curves = read_metrics_csv(folder / "metrics.csv")
        run = json.loads((folder / "run.json").read_text())
        cfg = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else {}
        tgt = target if target is not None else cfg.get("target")
        rows = summarize(curves, tgt)
        metric = curves[0].metric_name
        parts.append(f"## {run.get('name', folder.name)} (`{folder}`)\n")
        parts.append(f"n = {cfg.get('n')}, b = {cfg.get('b')}, attack = {cfg.get('attack')}, "
                     f"{run.get('trials')} trials, target {metric} = {tgt}; "
                     f"device: {', '.join(d['device_kind'] for d in run['metadata'].get('jax_devices') or [])}\n")
        parts.append(f"| scheme | final {metric} [95% CI] | reached | iterations to target | epochs to target | "
                     "simulated time to target | bits/coord | bits/worker/step | bits/worker/epoch |")
        parts.append("|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            info = run["schemes"].get(row["scheme"], {})
            parts.append(
                f"| {row['scheme']} | {_ci(row, 'final')} | {_fmt(row['reached'] * 100, 3)}% | "
                f"{_ci(row, 'steps_to_target')} | {_ci(row, 'epochs_to_target')} | {_ci(row, 'simtime_to_target')} | "
                f"{info.get('bits_per_coordinate', '–')} | {info.get('bits_per_worker_step', '–')} | "
                f"{info.get('bits_per_worker_epoch', '–')} |")
        if plot_dir is not None:
            png = Path(plot_dir) / f"{folder.name}.png"
            plot_curves(png, curves, title=str(run.get("name", folder.name)))
            parts.append(f"\n![{folder.name}]({png.name})")
            origins = {name: (info.get("swept_from") or name, tuple((info.get("sweep_point") or {}).items()))
                       for name, info in run["schemes"].items()}
            for sweep_png in plot_sweeps(plot_dir, rows, origins, title=str(run.get("name", folder.name)),
                                         prefix=f"{folder.name}_"):
                parts.append(f"\n![{sweep_png.stem}]({sweep_png.name})")
        parts.append("")
    return "\n".join(parts)


def write_report(folders: list[str | Path], out: str | Path, target: float | None = None) -> Path:
    """Write ``out`` (markdown) and one PNG per folder beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, report_markdown(folders, target, plot_dir=out.parent))
    return out
