"""Experiment results: per-scheme learning curves, statistics, and atomic I/O.

An experiment runs several *schemes* (e.g. ``"no_attack"``, ``"signsgd_mv"``,
``"bernoulli_r2"``), each for ``T`` independent trials evaluated at the same
``E`` evaluation steps.  :class:`SchemeCurves` holds one scheme's results; the
functions here turn them into summary statistics (confidence intervals over
trials, :data:`CI_METHOD`; time-to-target), tidy CSV files, plots, and tables.

Every file is written atomically (temporary file in the destination directory,
then :func:`os.replace`), so an interrupted run never leaves a half-written
file behind.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from ._io import atomic_write_bytes, atomic_write_text
from .config import metric_range

CI_LEVEL = 0.95
"""Confidence level used by :func:`summarize` and :func:`plot_curves`."""

CI_METHOD = "student_t_clipped"
"""How :func:`summarize` and :func:`plot_curves` make every interval: the Student-t interval of the
mean over trials (:func:`mean_ci`), intersected with the range the quantity can take (the metric's
range, :func:`jax_ec.config.metric_range`; for steps, epochs and simulated time to the target, the
span of the run's evaluations)."""

METRICS_COLUMNS = ("scheme", "trial", "step", "epoch", "sim_time", "wall_time", "metric_name", "metric")
"""Header of the tidy metrics CSV, one row per (scheme, trial, eval point)."""

_OLD_METRICS_COLUMNS = ("scheme", "trial", "step", "sim_time", "wall_time", "metric_name", "metric")
# Folders written before the epoch column: still readable (epochs unknown).

SUMMARY_COLUMNS = (
    "scheme",
    "metric",
    "trials",
    "final_mean",
    "final_ci_low",
    "final_ci_high",
    "final_std",
    "target",
    "reached",
    "steps_to_target_mean",
    "steps_to_target_ci_low",
    "steps_to_target_ci_high",
    "epochs_to_target_mean",
    "epochs_to_target_ci_low",
    "epochs_to_target_ci_high",
    "simtime_to_target_mean",
    "simtime_to_target_ci_low",
    "simtime_to_target_ci_high",
    "final_sim_time_mean",
    "wall_time_s",
    "ci_method",
    "ci_clipped",
)
"""Columns of each row returned by :func:`summarize`, in order."""

_INTERVALS = ("final", "steps_to_target", "epochs_to_target", "simtime_to_target")
# The intervals of a summary row, by column prefix.



@dataclass(frozen=True, eq=False)
class SchemeCurves:
    """Evaluation curves of one scheme over ``T`` trials and ``E`` eval points.

    Attributes:
        scheme: scheme name, e.g. ``"bernoulli_r2"``.
        steps: ``(E,)`` int, the evaluation steps shared by all trials.
        sim_time: ``(T, E)`` float, simulated cluster time at each eval point,
            per trial (random codes give different times per trial).
        wall_time: ``(T, E)`` float, wall-clock seconds since the start of the
            scheme's run at each eval point (may be identical for all trials
            when trials run vectorised).
        metric: ``(T, E)`` float, metric value (higher is better).
        metric_name: name of the metric, e.g. ``"test_auc"``.
        epoch: ``(E,)`` float, the epoch of each eval step (``step / steps_per_epoch``), so that
            schemes of different steps per epoch (a reduced minibatch) align; ``None`` when unknown.

    Inputs are converted with :func:`numpy.asarray`; ``T >= 1`` and ``E >= 1``
    are required and shapes are checked, raising :class:`ValueError`.
    Equality and hashing are by identity (``eq=False``), since element-wise
    array comparison has no single truth value.
    """

    scheme: str
    steps: np.ndarray
    sim_time: np.ndarray
    wall_time: np.ndarray
    metric: np.ndarray
    metric_name: str
    epoch: np.ndarray | None = None

    def __post_init__(self) -> None:
        steps = np.asarray(self.steps)
        if steps.ndim != 1 or steps.size == 0:
            raise ValueError(
                f"{self.scheme!r}: steps must be a non-empty 1-D array, got shape {steps.shape}"
            )
        if not np.issubdtype(steps.dtype, np.integer):
            raise ValueError(f"{self.scheme!r}: steps must be integers, got dtype {steps.dtype}")
        object.__setattr__(self, "steps", steps)
        num_evals = steps.shape[0]
        for name in ("sim_time", "wall_time", "metric"):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.ndim != 2 or value.shape[0] == 0 or value.shape[1] != num_evals:
                raise ValueError(
                    f"{self.scheme!r}: {name} must have shape (T, {num_evals}) with T >= 1 "
                    f"(one column per eval step), got shape {value.shape}"
                )
            object.__setattr__(self, name, value)
        if self.epoch is not None:
            epoch = np.asarray(self.epoch, dtype=float)
            if epoch.shape != steps.shape:
                raise ValueError(f"{self.scheme!r}: epoch must have shape {steps.shape} (one per eval step), "
                                 f"got {epoch.shape}")
            object.__setattr__(self, "epoch", epoch)
        shapes = {self.sim_time.shape, self.wall_time.shape, self.metric.shape}
        if len(shapes) != 1:
            raise ValueError(
                f"{self.scheme!r}: sim_time, wall_time and metric must share one shape (T, E), "
                f"got {self.sim_time.shape}, {self.wall_time.shape}, {self.metric.shape}"
            )

    @property
    def num_trials(self) -> int:
        """Number of trials ``T``."""
        return self.metric.shape[0]


def mean_ci(
    x: np.ndarray, axis: int = 0, level: float = 0.95, bounds: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and two-sided Student-t confidence interval of the mean along ``axis``.

    With ``n`` samples, sample mean ``m`` and unbiased standard deviation
    ``s`` (``ddof=1``)::

        half = t_{(1 + level) / 2, n - 1} * s / sqrt(n)
        (mean, low, high) = (m, m - half, m + half)

    where ``t_{q, df}`` is the ``q`` quantile of Student's t with ``df``
    degrees of freedom.  With a single sample the interval is undefined and
    ``low``/``high`` are NaN (the mean is still returned); with no samples all
    three are NaN.  NaNs in ``x`` propagate to the results.

    ``bounds = (a, b)``: the samples, hence their mean ``μ``, lie in ``[a, b]`` (an accuracy or
    an AUC in ``[0, 1]``); the interval is then intersected with it, ``low ← max(low, a)``,
    ``high ← min(high, b)``. Since ``μ ∈ [a, b]``, the event ``μ ∈ [low, high]`` is the event
    ``μ ∈ [low, high] ∩ [a, b]``: the clipped interval has exactly the coverage of the t-interval
    and never reports impossible values. Clipping happens where the t-interval's normal
    approximation is weakest (few trials, a mean near a bound), which is why :func:`summarize`
    records it. (A percentile bootstrap stays in range too, but with the usual 2 to 10 trials it
    under-covers badly, taking 3 distinct values with 2 trials; a logit-transformed interval fails
    at the bounds themselves, an AUC or accuracy of exactly 1.)

    Returns:
        ``(mean, low, high)``, each of ``x``'s shape with ``axis`` removed.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    reduced_shape = np.delete(np.array(x.shape), axis)
    if n == 0:
        nan = np.full(reduced_shape, np.nan)[()]
        return nan, nan.copy(), nan.copy()
    mean = x.mean(axis=axis)
    if n == 1:
        half = np.full(reduced_shape, np.nan)[()]
    else:
        half = stats.t.ppf(0.5 + level / 2.0, df=n - 1) * x.std(axis=axis, ddof=1) / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = np.clip(low, *bounds)[()], np.clip(high, *bounds)[()]
    return mean, low, high


def time_to_target(curves: SchemeCurves, target: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, epochs and simulated time at which each trial first reaches ``target``.

    For trial ``i`` let ``k_i = min{k : metric[i, k] >= target}``; then
    ``steps_to_target[i] = steps[k_i]``, ``epochs_to_target[i] = epoch[k_i]`` and
    ``simtime_to_target[i] = sim_time[i, k_i]``.  Trials that never reach the
    target (NaN metrics never do) get NaN in all three; epochs are NaN when the
    curves do not know them.

    Returns:
        ``(steps_to_target, epochs_to_target, simtime_to_target)``, each ``(T,)`` float.
    """
    with np.errstate(invalid="ignore"):
        hit = curves.metric >= target
    reached = hit.any(axis=1)
    first = hit.argmax(axis=1)
    steps = np.where(reached, curves.steps[first].astype(float), np.nan)
    epochs = (np.where(reached, curves.epoch[first], np.nan) if curves.epoch is not None
              else np.full(curves.num_trials, np.nan))
    sim_time = np.where(reached, curves.sim_time[np.arange(curves.num_trials), first], np.nan)
    return steps, epochs, sim_time


def _sample_std(x: np.ndarray) -> float:
    """Unbiased (``ddof=1``) standard deviation of a 1-D sample; NaN if ``len(x) < 2``."""
    return float(np.std(x, ddof=1)) if x.size >= 2 else math.nan


def _bounded_ci(x: np.ndarray, bounds: tuple[float, float]) -> tuple[tuple[float, float, float], bool]:
    """:func:`mean_ci` at :data:`CI_LEVEL` clipped to ``bounds``, and whether clipping moved it."""
    mean, low, high = mean_ci(x, level=CI_LEVEL)
    clipped = np.clip([low, high], *bounds)
    return (mean, *clipped), not np.array_equal(clipped, [low, high], equal_nan=True)


def summarize(curves_list: list[SchemeCurves], target: float | None) -> list[dict[str, Any]]:
    """One summary row per scheme, with keys :data:`SUMMARY_COLUMNS` in order.

    * ``final_*``: mean, :data:`CI_LEVEL` CI and ``ddof=1`` std over trials of the metric at the
      last eval point.
    * ``target``: the target (NaN when ``None``); ``reached``: fraction of
      trials whose metric ever reaches it (NaN when ``target`` is ``None``).
    * ``steps_to_target_*`` / ``epochs_to_target_*`` / ``simtime_to_target_*``:
      mean and CI of :func:`time_to_target` over the trials that reached the target only
      (all NaN when none did or ``target`` is ``None``; CI NaN when one did).
    * ``final_sim_time_mean``: mean over trials of the simulated time at the
      last eval point.
    * ``wall_time_s``: mean over trials of the wall time at the last eval
      point, i.e. the scheme run's elapsed wall-clock seconds.
    * ``ci_method``: :data:`CI_METHOD`: every interval is the Student-t interval of the mean
      clipped to the quantity's possible range (:func:`mean_ci` with ``bounds``): the metric's
      (:func:`jax_ec.config.metric_range`; unbounded for a metric not listed there), and for a
      time to the target the span of the evaluations (steps ``[steps[0], steps[-1]]``, epochs
      likewise, simulated time ``[min, max]`` of ``sim_time``).
    * ``ci_clipped``: the intervals that clipping moved, by prefix (``final``,
      ``steps_to_target``, ``epochs_to_target``, ``simtime_to_target``), space-separated; empty
      when none.
    """
    rows = []
    for curves in curves_list:
        final = curves.metric[:, -1]
        intervals = {"final": _bounded_ci(final, metric_range(curves.metric_name))}
        if target is None:
            reached = math.nan
            for name in _INTERVALS[1:]:
                intervals[name] = ((math.nan,) * 3, False)
        else:
            steps, epochs, sim_time = time_to_target(curves, target)
            ok = ~np.isnan(steps)
            reached = float(ok.mean())
            epoch = curves.epoch if curves.epoch is not None else np.full(1, np.nan)
            intervals["steps_to_target"] = _bounded_ci(steps[ok], (curves.steps[0], curves.steps[-1]))
            intervals["epochs_to_target"] = _bounded_ci(epochs[ok], (epoch[0], epoch[-1]))
            intervals["simtime_to_target"] = _bounded_ci(sim_time[ok], (np.nanmin(curves.sim_time),
                                                                        np.nanmax(curves.sim_time)))
        values = (
            curves.scheme,
            curves.metric_name,
            curves.num_trials,
            *intervals["final"][0],
            _sample_std(final),
            math.nan if target is None else target,
            reached,
            *intervals["steps_to_target"][0],
            *intervals["epochs_to_target"][0],
            *intervals["simtime_to_target"][0],
            curves.sim_time[:, -1].mean(),
            curves.wall_time[:, -1].mean(),
            CI_METHOD,
            " ".join(name for name in _INTERVALS if intervals[name][1]),
        )
        row = dict(zip(SUMMARY_COLUMNS, values, strict=True))
        rows.append({k: v if isinstance(v, (str, int)) else float(v) for k, v in row.items()})
    return rows


def ci_method_text(metrics: list[str] | tuple[str, ...]) -> str:
    """One line saying how the intervals of a summary are made (:data:`CI_METHOD`), naming the
    range of each of ``metrics``."""
    ranges = []
    for metric in dict.fromkeys(metrics):
        low, high = metric_range(metric)
        ranges.append(f"{metric} in [{low:g}, {high:g}]" if math.isfinite(low) or math.isfinite(high)
                      else f"{metric} unbounded")
    return (f"{int(round(100 * CI_LEVEL))}% CI ({CI_METHOD}): the Student-t interval of the mean over the trials, "
            f"clipped to the possible range ({'; '.join([*ranges, 'times to target within the run'])}); "
            "* marks an interval the range clipped.")


def _csv_text(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    """Render a header and rows as CSV text with ``\\n`` line endings."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_metrics_csv(path: str | os.PathLike, curves_list: list[SchemeCurves]) -> None:
    """Write a tidy CSV with header :data:`METRICS_COLUMNS`, atomically.

    One row per (scheme, trial, eval point), trials numbered ``0..T-1``; the
    ``epoch`` column is empty when the curves do not know their epochs.
    Floats are written with ``repr`` precision, so :func:`read_metrics_csv`
    round-trips exactly.  Scheme names must be unique.
    """
    schemes = [c.scheme for c in curves_list]
    if len(set(schemes)) != len(schemes):
        raise ValueError(f"scheme names must be unique, got {schemes}")
    rows = [
        (
            c.scheme,
            trial,
            int(step),
            "" if c.epoch is None else float(c.epoch[k]),
            float(c.sim_time[trial, k]),
            float(c.wall_time[trial, k]),
            c.metric_name,
            float(c.metric[trial, k]),
        )
        for c in curves_list
        for trial in range(c.num_trials)
        for k, step in enumerate(c.steps)
    ]
    atomic_write_text(path, _csv_text(METRICS_COLUMNS, rows))


def read_metrics_csv(path: str | os.PathLike) -> list[SchemeCurves]:
    """Read a CSV written by :func:`write_metrics_csv` back into curves.

    Schemes keep their order of first appearance, trials are sorted by id and
    eval points keep file order.  Files written before the ``epoch`` column
    are read with ``epoch=None``.  Raises :class:`ValueError` naming the file
    (and the line) on a wrong header, a row of the wrong length or with a value
    that is not a number, on trials of one scheme with different eval steps,
    or on more than one metric name per scheme.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if header not in (METRICS_COLUMNS, _OLD_METRICS_COLUMNS):
            raise ValueError(f"{path}: expected header {METRICS_COLUMNS}, got {header}")
        has_epoch = header == METRICS_COLUMNS
        # scheme -> trial -> list of (step, epoch, sim_time, wall_time, metric); scheme -> metric names
        data: dict[str, dict[int, list[tuple[int, float, float, float, float]]]] = {}
        names: dict[str, set[str]] = {}
        for row in reader:
            if len(row) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields; expected {len(header)} "
                                 f"({', '.join(header)})")
            if not has_epoch:
                row = [*row[:3], "", *row[3:]]
            scheme, trial, step, epoch, sim_time, wall_time, metric_name, metric = row
            try:
                point = (int(step), float(epoch) if epoch else math.nan, float(sim_time), float(wall_time),
                         float(metric))
                trial_id = int(trial)
            except ValueError as exc:
                raise ValueError(f"{path}, line {reader.line_num}: {exc}; expected integer trial and step, numbers "
                                 "elsewhere") from None
            data.setdefault(scheme, {}).setdefault(trial_id, []).append(point)
            names.setdefault(scheme, set()).add(metric_name)

    curves_list = []
    for scheme, trials in data.items():
        if len(names[scheme]) != 1:
            raise ValueError(f"{path}: scheme {scheme!r} has several metric names {names[scheme]}")
        per_trial = [np.array(trials[t], dtype=float) for t in sorted(trials)]
        steps = per_trial[0][:, 0]
        if any(p.shape != per_trial[0].shape or (p[:, 0] != steps).any() for p in per_trial):
            raise ValueError(f"{path}: trials of scheme {scheme!r} have different eval steps")
        table = np.stack(per_trial)  # (T, E, 5)
        epoch = table[0, :, 1]
        curves_list.append(
            SchemeCurves(
                scheme=scheme,
                steps=steps.astype(np.int64),
                sim_time=table[:, :, 2],
                wall_time=table[:, :, 3],
                metric=table[:, :, 4],
                metric_name=names[scheme].pop(),
                epoch=None if np.isnan(epoch).all() else epoch,
            )
        )
    return curves_list


def write_summary_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Write :func:`summarize` rows as CSV with header :data:`SUMMARY_COLUMNS`, atomically.

    Every row must have exactly the keys :data:`SUMMARY_COLUMNS`.
    """
    for row in rows:
        if set(row) != set(SUMMARY_COLUMNS):
            raise ValueError(
                f"summary row keys differ from SUMMARY_COLUMNS: {sorted(set(row) ^ set(SUMMARY_COLUMNS))}"
            )
    atomic_write_text(path, _csv_text(SUMMARY_COLUMNS, [tuple(r[c] for c in SUMMARY_COLUMNS) for r in rows]))


def _fmt(value: float) -> str:
    """Compact number: 4 significant digits, whole numbers from 1e4 up, ``-`` for NaN."""
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def _fmt_ci(mean: float, low: float, high: float, clipped: bool = False) -> str:
    """``mean [low, high]`` (``*`` after a clipped interval), or just ``mean`` when the interval is undefined."""
    if math.isnan(low) or math.isnan(high):
        return _fmt(mean)
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]" + ("*" if clipped else "")


def format_summary_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width plain-text table of :func:`summarize` rows for the terminal, and a last line
    saying how the intervals are made (:func:`ci_method_text`).

    Columns: scheme, metric, trials, final mean [CI], percentage of trials
    reaching the target, and steps / epochs / simulated time to target as mean [CI].
    NaN is shown as ``-``; the CI is omitted when undefined (one trial); ``*`` follows an
    interval that the quantity's range clipped.
    """
    pct = int(round(100 * CI_LEVEL))
    header = (
        "scheme",
        "metric",
        "trials",
        f"final mean [{pct}% CI]",
        "reached",
        f"steps to target [{pct}% CI]",
        f"epochs to target [{pct}% CI]",
        f"sim time to target [{pct}% CI]",
    )

    def cell(r: dict[str, Any], name: str) -> str:
        return _fmt_ci(r[f"{name}_mean"], r[f"{name}_ci_low"], r[f"{name}_ci_high"],
                       name in r["ci_clipped"].split())

    body = [
        (
            str(r["scheme"]),
            str(r["metric"]),
            str(r["trials"]),
            cell(r, "final"),
            "-" if math.isnan(r["reached"]) else f"{100 * r['reached']:.0f}%",
            *(cell(r, name) for name in _INTERVALS[1:]),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    note = ci_method_text([r["metric"] for r in rows])
    return "\n".join([render(header), rule, *(render(line) for line in body), "", note])


def plot_curves(path: str | os.PathLike, curves_list: list[SchemeCurves], title: str = "") -> None:
    """Save a PNG of metric vs step, vs epoch (when every scheme knows its epochs) and vs
    simulated time, atomically.

    Each scheme is drawn as the mean over trials with a :data:`CI_LEVEL`
    band (:data:`CI_METHOD`: the Student-t interval clipped to the metric's range, :func:`mean_ci`;
    no band with one trial).  In the
    simulated-time panel the x coordinate of eval point ``k`` is the mean
    simulated time over trials, ``mean_i sim_time[i, k]``.  Schemes with
    different steps per epoch (a reduced minibatch) align in the epoch and
    time panels.  Uses the Agg canvas directly, without pyplot, so no global
    backend state is touched.
    """
    if not curves_list:
        raise ValueError("plot_curves needs at least one SchemeCurves")
    with_epochs = all(c.epoch is not None for c in curves_list)
    panels = 3 if with_epochs else 2
    fig = Figure(figsize=(5.5 * panels, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, sharey=True)
    labels = ("step", "epoch", "simulated time") if with_epochs else ("step", "simulated time")
    for curves in curves_list:
        mean, low, high = mean_ci(curves.metric, axis=0, level=CI_LEVEL, bounds=metric_range(curves.metric_name))
        xs = [curves.steps, *([curves.epoch] if with_epochs else []), curves.sim_time.mean(axis=0)]
        for ax, x in zip(axes, xs):
            (line,) = ax.plot(x, mean, label=curves.scheme)
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    metric_names = ", ".join(dict.fromkeys(c.metric_name for c in curves_list))
    for ax, label in zip(axes, labels):
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(metric_names)
    ax_time = axes[-1]
    ax_time.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())




def sweep_series(summary: list[dict[str, Any]], origins: dict[str, tuple[str, tuple]]
                 ) -> dict[str, dict[str, list[tuple[float, float, float, float]]]]:
    """The one-dimensional sweeps of a run: ``{field: {configured scheme: [(value, final mean, CI
    low, CI high), …]}}`` sorted by value, from the summary rows and each scheme's origin
    ``(configured scheme, ((field, value), …))``; only schemes swept over exactly one numeric field."""
    out: dict[str, dict[str, list]] = {}
    for row in summary:
        parent, point = origins.get(row["scheme"], (row["scheme"], ()))
        if len(point) != 1 or isinstance(point[0][1], (str, bool)) or point[0][1] is None:
            continue
        field, value = point[0]
        out.setdefault(field, {}).setdefault(parent, []).append(
            (float(value), row["final_mean"], row["final_ci_low"], row["final_ci_high"]))
    for series in out.values():
        for points in series.values():
            points.sort()
    return out


def plot_sweeps(out_dir: str | os.PathLike, summary: list[dict[str, Any]], origins: dict[str, tuple[str, tuple]],
                title: str = "", prefix: str = "") -> list[Path]:
    """One PNG per swept field (``<prefix>sweep_<field>.png``): the final metric against the field's value,
    one line per configured scheme with its :data:`CI_LEVEL` band (CI as in :func:`summarize`).
    Returns the files written (none when no scheme is swept over one field)."""
    paths = []
    metric = ", ".join(dict.fromkeys(r["metric"] for r in summary))
    for field, series in sweep_series(summary, origins).items():
        fig = Figure(figsize=(6.0, 4.2), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        for parent, points in series.items():
            x, mean, low, high = (np.array(v, float) for v in zip(*points))
            (line,) = ax.plot(x, mean, marker="o", label=parent)
            ok = ~(np.isnan(low) | np.isnan(high))
            ax.fill_between(x[ok], low[ok], high[ok], color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel(field)
        ax.set_ylabel(f"final {metric} (mean, {int(round(100 * CI_LEVEL))}% CI)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        if title:
            ax.set_title(f"{title}: final {metric} against {field}")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
        path = Path(out_dir) / f"{prefix}sweep_{field}.png"
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths
