"""Tables and plots of the analysis (kept apart from its maths in the other modules).

Printable tables and PNG figures of :mod:`jax_ec.analysis.verify` (exact tolerance),
:mod:`jax_ec.analysis.design` (the deterministic construction), :mod:`jax_ec.analysis.search`
(the exact minimum redundancy) and :mod:`jax_ec.analysis.bernoulli` (Bernoulli codes). Every figure
is written atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import _checks
from .._io import atomic_write_bytes
from ..codes import validate_allocation
from .bernoulli import Estimate, hoeffding_bound, load_deviation_curve, load_deviation_exact
from .design import Design, deterministic_design
from .verify import margin_histogram, max_tolerance, tolerance_text, verify

__all__ = ["verify_report", "plot_margin_histogram", "design_rows", "design_table", "plot_redundancy",
           "search_table", "plot_smallest_p", "plot_load_deviation", "estimate_table", "smallest_p_table",
           "load_deviation_table", "IDLE_TABLE_MAX_CELLS"]

#: The idle-allowed design search evaluates (T + 1)·(n + 1) cells (T = n − 2b − 1); tables skip it beyond this.
IDLE_TABLE_MAX_CELLS = 2 ** 23


# ---------------------------------------------------------------------------------------------
# Exact tolerance (verify)
# ---------------------------------------------------------------------------------------------

def _signs(v) -> str:
    return "".join({1: "+", -1: "-", 0: "0"}[int(x)] for x in v)


def verify_report(G, b: int) -> str:
    """A printable report of :func:`verify` for ``G`` and ``b`` (plus the largest tolerated b)."""
    res = verify(G, b)
    G = validate_allocation(G)
    n, k = G.shape
    loads = G.sum(axis=1)
    lines = [
        f"code            n = {n} workers, k = {k} partitions, redundancy r = {G.sum() / n:.4g}"
        f" (loads min {loads.min()}, max {loads.max()}, idle workers {int((loads == 0).sum())})",
        f"symmetry        {res.column_groups} distinct columns, {res.row_groups} distinct rows, "
        f"{res.configurations} configurations evaluated",
        f"patterns        {res.patterns_checked} checked"
        + (f", {res.patterns_skipped} tied patterns skipped (no correct answer)" if res.patterns_skipped else ""),
        f"b = {b:<12d} {'TOLERANT' if res.tolerant else 'NOT tolerant'}   worst-case margin = {res.margin}"
        "   (tolerant iff margin >= 1)",
        f"max tolerated   {tolerance_text(max_tolerance(G))}",
        "worst case" + (" (counterexample)" if not res.tolerant else " (tightest pattern)"),
        f"  pattern m     {_signs(res.pattern)}   (true majority µ = {res.majority:+d})",
        f"  honest votes  {_signs(res.honest_votes)}",
        f"  byzantine     {''.join('B' if x else '.' for x in res.byzantine)}   "
        f"(attack='directional', direction={res.direction:+d})",
        f"  received      {_signs(res.messages)}   master vote {res.vote:+d}",
    ]
    return "\n".join(lines)


def plot_margin_histogram(path, G, b: int, title: str | None = None) -> None:
    """PNG bar chart of :func:`margin_histogram` (failing margins in red), written atomically."""
    path = _checks.output_file("path", path)
    hist = margin_histogram(G, b)
    G = validate_allocation(G)
    xs = np.array(sorted(hist))
    ys = np.array([hist[x] for x in xs])
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(xs, ys, color=np.where(xs <= 0, "tab:red", "tab:blue"))
    ax.axvline(0.5, color="k", lw=0.8, ls="--")
    fail = float(ys[xs <= 0].sum())
    ax.set_xlabel(f"worst-case margin with b = {b} (tolerant iff all > 0)")
    ax.set_ylabel("fraction of sign patterns")
    ax.set_title(title or f"n = {G.shape[0]}, k = {G.shape[1]}, r = {G.sum() / G.shape[0]:.3g}: "
                 f"P(fail | uniform signs) = {fail:.4g}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------
# Deterministic codes (design) and the exact minimum (search)
# ---------------------------------------------------------------------------------------------


def _sizes_text(d: Design) -> str:
    parts = [f"{s}" for s in d.even_sets] + (["1"] * d.singletons)
    if not parts:
        return "-"
    out = []
    for s in dict.fromkeys(parts):
        c = parts.count(s)
        out.append(f"{s}^{c}" if c > 1 else s)
    return " ".join(out)


def _design_grid(ns, bs) -> tuple[list[int], list[int] | None]:
    """``ns``: integers >= 1 (workers); ``bs``: integers >= 0, or None (every ``b < n/2``)."""
    if isinstance(ns, (str, bytes)) or not isinstance(ns, Iterable):
        raise ValueError(f"ns: got {_checks.brief(ns)}; expected a list of worker counts n >= 1")
    ns = [_checks.integer("ns", n, 1, hint=" (workers)") for n in ns]
    if bs is not None:
        if isinstance(bs, (str, bytes)) or not isinstance(bs, Iterable):
            raise ValueError(f"bs: got {_checks.brief(bs)}; expected a list of Byzantine counts b >= 0")
        bs = [_checks.integer("bs", b, 0) for b in bs]
    return ns, bs


def design_rows(ns, bs=None, r_min: dict | None = None) -> Iterator[str]:
    """The lines of :func:`design_table`, each row yielded as soon as it is computed: header, rule,
    one row per ``(n, b)`` with ``b < n/2``, then notes on what was skipped."""
    ns, bs = _design_grid(ns, bs)
    return _design_lines(ns, bs, r_min)


def _design_lines(ns, bs, r_min):
    header = f"{'n':>3} {'b':>3} {'r(constr)':>10} {'full':>4} {'fix':>3} {'light set sizes':<22} " \
             f"{'r(idle ok)':>10} {'2b+1':>5}" + (f" {'r_min':>7}" if r_min is not None else "")
    yield header
    yield "-" * len(header)
    skipped, no_idle = [], []
    for n in ns:
        for b in (range((n + 1) // 2) if bs is None else bs):
            if not 2 * b < n:
                skipped.append(f"n = {n}, b = {b}")
                continue
            d = deterministic_design(n, b)
            if (n - 2 * b) * (n + 1) <= IDLE_TABLE_MAX_CELLS:
                idle = f"{deterministic_design(n, b, allow_idle=True).redundancy:>10.4f}"
            else:
                idle = f"{'-':>10}"
                no_idle.append(f"n = {n}")
            line = (f"{n:>3} {b:>3} {d.redundancy:>10.4f} {d.full:>4} {d.fixers:>3} "
                    f"{_sizes_text(d):<22} {idle} {2 * b + 1:>5}")
            if r_min is not None:
                v = r_min.get((n, b))
                line += f" {v:>7.4f}" if v is not None else f" {'-':>7}"
            yield line
    if skipped:
        yield f"skipped (no code is perfectly b-tolerant unless b < n/2): {'; '.join(skipped)}"
    if no_idle:
        yield (f"r(idle ok) not computed for {', '.join(dict.fromkeys(no_idle))}: its search takes "
               f"(n - 2b)·(n + 1) steps, more than {IDLE_TABLE_MAX_CELLS}")


def design_table(ns, bs=None, r_min: dict | None = None) -> str:
    """Printable table of :func:`deterministic` codes for every ``n`` in ``ns`` and ``b`` in ``bs``.

    ``bs=None`` takes every ``b < n/2``; pairs with ``b >= n/2`` (no tolerant code) are listed as
    skipped below the table. Columns: the construction's redundancy and structure (full workers,
    fixers, light set sizes written ``size^count``), its idle-allowed variant (``-`` when its
    ``O(n²)`` search exceeds :data:`IDLE_TABLE_MAX_CELLS`), the repetition code's ``2b + 1`` and,
    when ``r_min`` (a dict ``(n, b) -> value``) is given, the exact minimum.
    """
    return "\n".join(design_rows(ns, bs, r_min))


def plot_redundancy(path, ns, bs=(1, 2, 3), r_min: dict | None = None,
                    allow_idle: bool = False) -> None:
    """PNG: redundancy vs ``n`` per ``b`` — construction (solid), repetition ``2b + 1`` (dashed),
    exact ``r_min`` (markers, from a dict ``(n, b) -> value``) — written atomically."""
    path = _checks.output_file("path", path)
    ns, bs = _design_grid(ns, bs)
    allow_idle = _checks.flag("allow_idle", allow_idle)
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [f"C{i}" for i in range(10)]
    for idx, b in enumerate(bs):
        c = colors[idx % 10]
        xs = [n for n in ns if 2 * b < n]
        if not xs:
            continue
        ys = [deterministic_design(n, b, allow_idle).redundancy for n in xs]
        ax.plot(xs, ys, "-", color=c, lw=1.6, label=f"construction, b = {b}")
        ax.plot(xs, [2 * b + 1] * len(xs), "--", color=c, lw=1.0, label=f"repetition 2b+1 = {2 * b + 1}")
        if r_min:
            pts = [(n, r_min[(n, b)]) for n in xs if (n, b) in r_min]
            if pts:
                ax.plot(*zip(*pts), "o", color=c, ms=5, label=f"exact r_min, b = {b}")
    ax.set_xlabel("workers n (k = n partitions)")
    ax.set_ylabel("redundancy r (mean partitions per worker)")
    ax.set_title("perfectly b-tolerant codes" + (" (idle workers allowed)" if allow_idle else
                                                 " (every worker busy)"))
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def search_table(results) -> str:
    """Printable table of :class:`SearchResult` s: n, b, k, idle?, r_min (or bounds), time."""
    from .search import SearchResult
    if isinstance(results, (str, bytes)) or not isinstance(results, Iterable):
        raise ValueError(f"results: got {_checks.brief(results)}; expected a list of SearchResult")
    results = list(results)
    for i, res in enumerate(results):
        if not isinstance(res, SearchResult):
            raise ValueError(f"results[{i}]: got {_checks.brief(res)}; expected a SearchResult of min_redundancy")
    header = f"{'n':>3} {'b':>3} {'k':>3} {'idle':>5} {'r_min':>8} {'bounds on r':>17} {'seconds':>8}  status"
    lines = [header, "-" * len(header)]
    for res in results:
        if res.optimal:
            rmin, bounds = f"{res.r_min:.4f}", "exact"
        else:
            rmin = "-"
            hi = f"{res.redundancy:.4f}" if res.redundancy is not None else "?"
            bounds = f"[{res.redundancy_lower_bound:.4f}, {hi}]"
        lines.append(f"{res.n:>3} {res.b:>3} {res.k:>3} {str(res.allow_idle):>5} {rmin:>8} "
                     f"{bounds:>17} {res.seconds:>8.1f}  {'optimal' if res.optimal else 'time limit'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Bernoulli codes
# ---------------------------------------------------------------------------------------------


def _save(fig: Figure, path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())


def plot_smallest_p(path, ns: Sequence[int], ps: Sequence[float] | Mapping[str, Sequence[float]],
                    title: str = "") -> None:
    """Two panels: smallest ``p`` against ``sqrt(log n / n)`` (with the line ``p = sqrt(log n / n)``),
    and the ratio ``p / sqrt(log n / n)`` against ``n``. ``ps`` is one series or ``{label: series}``;
    ``nan`` entries (target unreachable) are skipped."""
    path = _checks.output_file("path", path)
    ns = _smallest_p_ns(ns)
    series = dict(ps) if isinstance(ps, Mapping) else {"smallest p": ps}
    for label, values in series.items():
        _same_length(f"ps[{label!r}]" if isinstance(ps, Mapping) else "ps", values, len(ns))
    ns_arr = np.asarray(ns, dtype=np.float64)
    scale = np.sqrt(np.log(ns_arr) / ns_arr)
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax_p, ax_ratio = fig.subplots(1, 2)
    for label, values in series.items():
        values = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(values)
        ax_p.plot(scale[ok], values[ok], "o-", ms=3.5, label=label)
        ax_ratio.plot(ns_arr[ok], values[ok] / scale[ok], "o-", ms=3.5, label=label)
    grid = np.linspace(0.0, max(scale.max(), 1e-9) * 1.05, 50)
    ax_p.plot(grid, grid, "k--", lw=0.8, label=r"$p = \sqrt{\log n / n}$")
    ax_p.set_xlabel(r"$\sqrt{\log n / n}$")
    ax_p.set_ylabel("smallest p reaching the target")
    ax_ratio.set_xscale("log")
    ax_ratio.set_yscale("log")
    ax_ratio.set_xlabel("n (workers = partitions)")
    ax_ratio.set_ylabel(r"$p \,/\, \sqrt{\log n / n}$")
    for ax in (ax_p, ax_ratio):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_load_deviation(path, n: int, p: float, eps_grid: Sequence[float], key=0, draws: int = 2000,
                        estimates: Sequence[Estimate] | None = None, level: float = 0.95) -> list[Estimate]:
    """Plot the empirical ``P(|load − np| ≥ nε)`` (with its Clopper–Pearson interval), the exact
    binomial tail and the Hoeffding bound ``2·exp(−2ε²n)`` against ``ε`` (log scale). Uses
    ``estimates`` when given, else computes :func:`load_deviation_curve` with ``key``; returns them.
    A zero estimate is drawn at its upper confidence bound as a downward triangle."""
    path = _checks.output_file("path", path)
    if estimates is None:
        estimates = load_deviation_curve(key, n, p, eps_grid, draws, level)
    _same_length("estimates", estimates, len(eps_grid))
    eps = np.asarray(eps_grid, dtype=np.float64)
    mean = np.array([e.mean for e in estimates])
    low = np.array([e.ci_low for e in estimates])
    high = np.array([e.ci_high for e in estimates])
    exact = np.array([load_deviation_exact(n, p, e) for e in eps])
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    pos = mean > 0
    ax.errorbar(eps[pos], mean[pos], yerr=[mean[pos] - low[pos], high[pos] - mean[pos]], fmt="o", ms=4,
                capsize=2, label=f"empirical ({estimates[0].trials} loads, {int(100 * level)}% CI)")
    if (~pos).any():
        ax.plot(eps[~pos], high[~pos], "v", color="C0", mfc="none", label="none observed: upper bound")
    ax.plot(eps, np.where(exact > 0, exact, np.nan), "-", color="C2", label="exact Binomial(n, p) tail")
    ax.plot(eps, hoeffding_bound(n, eps), "--", color="C3", label=r"Hoeffding $2e^{-2\varepsilon^2 n}$")
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(1e-7, 0.3 * min(high.min(), np.nanmin(np.where(exact > 0, exact, np.nan)))), top=2.5)
    ax.set_xlabel(r"$\varepsilon$")
    ax.set_ylabel(r"$P(|\mathrm{load}_i - np| \geq n\varepsilon)$")
    ax.set_title(f"worker load, n = k = {n}, p = {p:.4g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    _save(fig, path)
    return list(estimates)


def _fmt(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "-"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    body = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(line[i]) for line in ([list(header)] + body)) for i in range(len(header))]
    render = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([render(header), "  ".join("-" * w for w in widths), *(render(r) for r in body)])


def estimate_table(rows: Sequence[Mapping[str, Any]], level: float = 0.95) -> str:
    """Fixed-width table of estimates: each row maps parameter names (columns in the first row's
    order) to values, plus ``"estimate"`` → :class:`Estimate`, shown as mean, interval and trials."""
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not rows:
        raise ValueError(f"rows: got {_checks.brief(rows)}; expected a non-empty list of rows")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("estimate"), Estimate):
            raise ValueError(f"rows[{i}]: got {_checks.brief(row)}; expected a dict of parameters with an "
                             "'estimate' (an Estimate)")
    params = [c for c in rows[0] if c != "estimate"]
    pct = f"{100 * level:g}%"
    header = [*params, "P(fail)", f"{pct} CI low", f"{pct} CI high", "trials"]
    body = []
    for row in rows:
        est = row["estimate"]
        body.append([*(row.get(c, "") for c in params), est.mean, est.ci_low, est.ci_high, est.trials])
    return _table(header, body)


def _smallest_p_ns(ns) -> list[int]:
    """Worker counts ``n >= 2``: the scale ``sqrt(log n / n)`` is 0 at ``n = 1``."""
    if isinstance(ns, (str, bytes)) or not isinstance(ns, Iterable):
        raise ValueError(f"ns: got {_checks.brief(ns)}; expected a list of worker counts n >= 2")
    return [_checks.integer("ns", n, 2, hint=" (workers; sqrt(log n / n) is 0 at n = 1)") for n in ns]


def _same_length(name: str, values, length: int) -> None:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        raise ValueError(f"{name}: got {_checks.brief(values)}; expected a sequence of {length} values")
    if len(values) != length:
        raise ValueError(f"{name}: has {len(values)} values; expected {length}, one per entry of the grid")


def smallest_p_table(ns: Sequence[int], ps: Sequence[float]) -> str:
    """``n``, smallest ``p``, ``sqrt(log n / n)``, their ratio and the mean load ``n·p``."""
    ns = _smallest_p_ns(ns)
    _same_length("ps", ps, len(ns))
    rows = []
    for n, p in zip(ns, ps):
        scale = math.sqrt(math.log(n) / n)
        rows.append([int(n), float(p), scale, float(p) / scale, n * float(p)])
    return _table(["n", "smallest p", "sqrt(log n/n)", "ratio", "n*p"], rows)


def load_deviation_table(n: int, p: float, eps_grid: Sequence[float], estimates: Sequence[Estimate],
                         level: float = 0.95) -> str:
    """``ε``, empirical ``P(|load − np| ≥ nε)`` with its interval, the exact tail and Hoeffding's bound."""
    _same_length("estimates", estimates, len(eps_grid))
    pct = f"{100 * level:g}%"
    rows = [[float(e), est.mean, est.ci_low, est.ci_high, load_deviation_exact(n, p, e),
             float(hoeffding_bound(n, e))] for e, est in zip(eps_grid, estimates)]
    return _table(["eps", "empirical", f"{pct} CI low", f"{pct} CI high", "exact", "Hoeffding"], rows)
