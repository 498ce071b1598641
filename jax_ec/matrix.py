"""The defense × attack matrix of a result folder: final metric with its 95% CI per cell, one table
and one heat map per number b of Byzantine workers.

Every scheme of a run is one cell. Its **row** is the defense: the configured scheme it was swept
from (``swept_from``) or its own name, cut at the first ``@`` — so ``krum`` swept over attacks and a
separate ``krum@ipm`` swept over the IPM scale share the row ``krum``. Its **column** is the attack
as run: the attack's name (``none`` without Byzantine workers), the IPM scale ``ε`` where the attack
has one, and the placement when it is not ``uniform`` (``omniscient (adaptive)``). Schemes are
grouped into one table per b; the no-attack baselines (b = 0) join every table as the column
``none``. Each row also gives the defense's bits per worker and step (what a worker sends per
step: bits per coordinate × d). A b gets a matrix only when at least two defenses are attacked and
at least two attacks are run (so a run comparing schemes under one attack has none).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._io import atomic_write_bytes

__all__ = ["Matrix", "defense_of", "attack_of", "matrices", "matrix_markdown", "plot_matrix"]


class Matrix(NamedTuple):
    """One table: ``cells[(defense, attack)]`` is a summary row (:func:`jax_ec.results.summarize`)."""
    b: int
    defenses: tuple[str, ...]
    attacks: tuple[str, ...]
    cells: dict[tuple[str, str], dict[str, Any]]
    bits: dict[str, Any]     # defense -> bits per worker and step
    duplicates: tuple[str, ...] = ()   # schemes left out: another scheme filled their cell first


def defense_of(name: str, info: dict[str, Any]) -> str:
    """The row of scheme ``name``: its configured scheme (before a sweep), cut at the first ``@``."""
    return str(info.get("swept_from") or name).split("@", 1)[0]


def attack_of(info: dict[str, Any]) -> str:
    """The column of a scheme: its attack, the IPM scale where set, the placement unless uniform."""
    if not info.get("b"):
        return "none"
    label = str(info.get("attack"))
    scale = info.get("attack_scale")
    if scale is not None and label == "ipm":
        label += f" ε={scale:g}"
    placement = info.get("placement")
    if placement not in (None, "uniform"):
        label += f" ({placement})"
    return label


def matrices(summary: list[dict[str, Any]], schemes: dict[str, dict[str, Any]]) -> list[Matrix]:
    """One :class:`Matrix` per b > 0 of the run (``summary``: the rows of
    :func:`jax_ec.results.summarize`; ``schemes``: run.json's per-scheme records). Rows and columns
    keep the order in which schemes first fill them; two schemes landing on one cell keep the first
    (the matrix then names the second in a note: :func:`matrix_markdown`)."""
    by_b: dict[int, list[tuple[str, str, dict]]] = {}
    baseline: list[tuple[str, str, dict]] = []
    for row in summary:
        info = schemes.get(row["scheme"], {})
        entry = (defense_of(row["scheme"], info), attack_of(info), row)
        if info.get("b"):
            by_b.setdefault(int(info["b"]), []).append(entry)
        else:
            baseline.append(entry)
    out = []
    for b, entries in sorted(by_b.items()):
        defenses: dict[str, None] = {}
        attacks: dict[str, None] = {}
        cells: dict[tuple[str, str], dict] = {}
        bits: dict[str, Any] = {}
        duplicates: list[str] = []
        for defense, attack, row in [*baseline, *entries]:
            defenses.setdefault(defense)
            attacks.setdefault(attack)
            if (defense, attack) in cells:
                duplicates.append(row["scheme"])
                continue
            cells[(defense, attack)] = row
            bits.setdefault(defense, schemes.get(row["scheme"], {}).get("bits_per_worker_step"))
        attacked = {d for (d, a) in cells if a != "none"}
        if len(attacked) >= 2 and len([a for a in attacks if a != "none"]) >= 2:
            out.append(Matrix(b, tuple(defenses), tuple(attacks), cells, bits, tuple(duplicates)))
    return out


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    mean, low, high = row["final_mean"], row["final_ci_low"], row["final_ci_high"]
    if math.isnan(mean):
        return "–"
    if math.isnan(low):
        return f"{mean:.4f}"
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def matrix_markdown(m: Matrix, metric: str) -> str:
    """The matrix as a markdown table: one row per defense, its bits per worker and step, then the
    final ``metric`` (mean [95% CI]) under each attack; ``–`` where the run has no such cell."""
    lines = [f"| defense (b = {m.b}) | bits/worker/step | " + " | ".join(m.attacks) + " |",
             "|---|---|" + "---|" * len(m.attacks)]
    for d in m.defenses:
        bits = m.bits.get(d)
        lines.append(f"| {d} | {bits if bits is not None else '–'} | "
                     + " | ".join(_cell(m.cells.get((d, a))) for a in m.attacks) + " |")
    if m.duplicates:
        lines.append(f"\nNot in the table (another scheme fills the same cell): {', '.join(m.duplicates)}.")
    lines.append(f"\nCells: final {metric}, mean [95% CI] over trials.")
    return "\n".join(lines)


def plot_matrix(path: str | os.PathLike, m: Matrix, metric: str, title: str = "") -> Path:
    """A heat map of the matrix's mean final ``metric`` (rows: defenses, columns: attacks), each
    cell annotated with its mean; an empty cell is left blank. Written atomically as PNG."""
    grid = np.full((len(m.defenses), len(m.attacks)), np.nan)
    for i, d in enumerate(m.defenses):
        for j, a in enumerate(m.attacks):
            row = m.cells.get((d, a))
            if row is not None:
                grid[i, j] = row["final_mean"]
    fig = Figure(figsize=(1.2 * len(m.attacks) + 3.0, 0.45 * len(m.defenses) + 1.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    finite = grid[np.isfinite(grid)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=low, vmax=high if high > low else low + 1e-9,
                      aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isfinite(grid[i, j]):
                shade = (grid[i, j] - low) / (high - low) if high > low else 1.0
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=8,
                        color="black" if shade > 0.5 else "white")
    ax.set_xticks(range(len(m.attacks)), labels=list(m.attacks), rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(m.defenses)), labels=list(m.defenses), fontsize=8)
    fig.colorbar(image, ax=ax, label=f"final {metric} (mean over trials)")
    ax.set_title(f"{title + ': ' if title else ''}defense × attack, b = {m.b}", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
