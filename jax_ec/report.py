"""Reports over result folders: a markdown table per figure and accuracy-vs-time plots.

``jax-ec report DIR [DIR ...]`` reads each folder written by :func:`jax_ec.experiment.run_experiment`
(``metrics.csv``, ``run.json``) and writes ``report.md`` with, per folder (one paper figure), one
row per scheme: the final metric mean with its 95% CI, the fraction of trials reaching the target,
iterations, epochs and simulated time to the target (mean and CI over the trials that reach it),
and the communication cost (bits per coordinate, per worker per step and per worker per epoch: a
reduced-minibatch scheme takes more steps per epoch), plus one plot of the curves per folder and,
for schemes swept over one field, the final metric against that field. A folder comparing several
defenses under several attacks also gets the defense × attack matrix of :mod:`jax_ec.matrix`, one
table and one heat map per b. Under each table a line
says how the intervals are made (:func:`jax_ec.results.ci_method_text`: Student-t, clipped to the
quantity's range).

Every folder is read and checked (its files, the target against the metric's range) and the
output path too, before anything is written.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import NamedTuple

from ._io import atomic_write_text
from .config import metric_range, read_yaml
from .folder import check_published
from .matrix import matrices, matrix_markdown, plot_matrix
from .results import ci_method_text, plot_curves, plot_sweeps, read_metrics_csv, summarize

__all__ = ["report_markdown", "write_report"]


def _fmt(x: float, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _ci(row: dict, prefix: str) -> str:
    """``mean [low, high]``, ``*`` after an interval its range clipped (:func:`jax_ec.results.summarize`)."""
    mean, low, high = row[f"{prefix}_mean"], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]
    if math.isnan(mean):
        return "–"
    if math.isnan(low):
        return _fmt(mean)
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]" + ("*" if prefix in row["ci_clipped"].split() else "")


class _Run(NamedTuple):
    folder: Path
    curves: list
    run: dict
    cfg: dict
    target: float | None


def _read_run(folder: Path, target: float | None) -> _Run:
    """A result folder's curves, run.json and config.yaml, checked; ``target`` (or the folder's)
    must lie in the metric's range."""
    if not folder.exists():
        raise FileNotFoundError(f"report: {str(folder)!r} does not exist; expected a folder written by `jax-ec run`")
    if not folder.is_dir():
        raise FileNotFoundError(f"report: {str(folder)!r} is a file, not a folder; expected a folder written by "
                                "`jax-ec run`")
    for name in ("metrics.csv", "run.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"report: {str(folder / name)!r} is missing; expected a folder written by "
                                    "`jax-ec run`")
    curves = read_metrics_csv(folder / "metrics.csv")
    if not curves:
        raise ValueError(f"report: {str(folder / 'metrics.csv')!r} has no rows; expected the curves of a run")
    try:
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise ValueError(f"report: {str(folder / 'run.json')!r} cannot be read as JSON ({exc})") from None
    if not isinstance(run, dict):
        raise ValueError(f"report: {str(folder / 'run.json')!r} holds a {type(run).__name__}; expected an object")
    problems = check_published(folder)
    if problems:
        raise ValueError(f"report: the files in {str(folder)!r} are not one run's ({'; '.join(problems)}); "
                         "rerun the config into that folder to publish a consistent set")
    cfg = read_yaml(folder / "config.yaml", field="report") if (folder / "config.yaml").is_file() else {}
    cfg = cfg if isinstance(cfg, dict) else {}
    metric = curves[0].metric_name
    low, high = metric_range(metric)
    if target is None:
        target = cfg.get("target")
        if target is not None and not (isinstance(target, (int, float)) and low <= target <= high):
            raise ValueError(f"report: {str(folder / 'config.yaml')!r}: target is {target!r}; {metric} lies in "
                             f"[{low:g}, {high:g}]")
    elif not low <= target <= high:
        raise ValueError(f"--target: got {target!r}; {metric} (of {str(folder)!r}) lies in [{low:g}, {high:g}]")
    return _Run(folder, curves, run, cfg, target)


def _plot_names(folders: list[Path]) -> list[str]:
    """A distinct file stem per folder: its name, numbered where names repeat (a/run, b/run)."""
    names = [f.name or "run" for f in folders]
    counts = {name: names.count(name) for name in names}
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if counts[name] == 1 else f"{name}_{seen[name]}")
    return out


def report_markdown(folders: list[str | Path], target: float | None = None,
                    plot_dir: str | Path | None = None) -> str:
    """Markdown for the given result folders (``target`` overrides each folder's configured one).

    Every folder is read and checked before anything is written; plots (with ``plot_dir``) are
    named after their folders, numbered where two folders share a name.
    """
    if target is not None and not math.isfinite(target):
        raise ValueError(f"--target: got {target!r}; expected a finite number")
    runs = [_read_run(folder, target) for folder in map(Path, folders)]
    if plot_dir is not None:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
    parts = []
    for (folder, curves, run, cfg, tgt), stem in zip(runs, _plot_names([r.folder for r in runs])):
        rows = summarize(curves, tgt)
        metric = curves[0].metric_name
        devices = ", ".join(d.get("device_kind", "?") for d in (run.get("metadata") or {}).get("jax_devices") or [])
        parts.append(f"## {run.get('name', folder.name)} (`{folder}`)\n")
        parts.append(f"n = {cfg.get('n')}, b = {cfg.get('b')}, attack = {cfg.get('attack')}, "
                     f"{run.get('trials')} trials, target {metric} = {tgt}; device: {devices or '?'}\n")
        parts.append(f"| scheme | final {metric} [95% CI] | reached | iterations to target | epochs to target | "
                     "simulated time to target | bits/coord | bits/worker/step | bits/worker/epoch |")
        parts.append("|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            info = (run.get("schemes") or {}).get(row["scheme"], {})
            parts.append(
                f"| {row['scheme']} | {_ci(row, 'final')} | {_fmt(row['reached'] * 100, 3)}% | "
                f"{_ci(row, 'steps_to_target')} | {_ci(row, 'epochs_to_target')} | {_ci(row, 'simtime_to_target')} | "
                f"{info.get('bits_per_coordinate', '–')} | {info.get('bits_per_worker_step', '–')} | "
                f"{info.get('bits_per_worker_epoch', '–')} |")
        parts.append(f"\n{ci_method_text([metric])}")
        if plot_dir is not None:
            png = Path(plot_dir) / f"{stem}.png"
            plot_curves(png, curves, title=str(run.get("name", folder.name)))
            parts.append(f"\n![{stem}]({png.name})")
            origins = {name: (info.get("swept_from") or name, tuple((info.get("sweep_point") or {}).items()))
                       for name, info in (run.get("schemes") or {}).items()}
            for sweep_png in plot_sweeps(plot_dir, rows, origins, title=str(run.get("name", folder.name)),
                                         prefix=f"{stem}_"):
                parts.append(f"\n![{sweep_png.stem}]({sweep_png.name})")
        for m in matrices(rows, run.get("schemes") or {}):
            parts.append(f"\n### Defense × attack, b = {m.b}\n")
            parts.append(matrix_markdown(m, metric))
            if plot_dir is not None:
                png = plot_matrix(Path(plot_dir) / f"{stem}_matrix_b{m.b}.png", m, metric,
                                  title=str(run.get("name", folder.name)))
                parts.append(f"\n![{png.stem}]({png.name})")
        parts.append("")
    return "\n".join(parts)


def _check_out(out: Path) -> None:
    """Refuse an output path that cannot take the report (its missing folders are created later,
    once the inputs are checked)."""
    if out.is_dir():
        raise ValueError(f"report --out: {str(out)!r} is a directory; expected a markdown file path "
                         f"(e.g. {str(out / 'report.md')!r})")
    if out.exists() and not out.is_file():
        raise ValueError(f"report --out: {str(out)!r} is not a regular file; expected a markdown file path")
    existing = next(p for p in (out.parent.absolute(), *out.parent.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"report --out: {str(existing)!r} is a file, not a folder; expected a markdown file path")
    if not os.access(existing, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"report --out: {str(out)!r} cannot be written (permission denied in {str(existing)!r})")


def write_report(folders: list[str | Path], out: str | Path, target: float | None = None) -> Path:
    """Write ``out`` (markdown) and one PNG per folder beside it; the output path is checked first."""
    out = Path(out)
    _check_out(out)
    atomic_write_text(out, report_markdown(folders, target, plot_dir=out.parent))
    return out
