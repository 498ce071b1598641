"""jax_ec.matrix: every scheme of a run lands in its (defense, attack) cell of the table of its b;
the report renders the tables and heat maps."""

from __future__ import annotations

import json
import math

import numpy as np

from jax_ec.cli import main
from jax_ec.matrix import attack_of, defense_of, matrices, matrix_markdown, plot_matrix


def _row(scheme: str, mean: float, low: float | None = None, high: float | None = None) -> dict:
    return {"scheme": scheme, "final_mean": mean, "final_ci_low": mean - 0.01 if low is None else low,
            "final_ci_high": mean + 0.01 if high is None else high}


INFO = {
    "no_attack": {"b": 0, "attack": "none", "placement": "uniform", "bits_per_worker_step": 10},
    "mv[attack=reverse,b=3]": {"b": 3, "attack": "reverse", "swept_from": "mv", "bits_per_worker_step": 10},
    "mv[attack=omniscient,b=3]": {"b": 3, "attack": "omniscient", "swept_from": "mv", "bits_per_worker_step": 10},
    "mv@adaptive": {"b": 3, "attack": "omniscient", "placement": "adaptive", "bits_per_worker_step": 10},
    "krum[attack=reverse,b=3]": {"b": 3, "attack": "reverse", "swept_from": "krum", "bits_per_worker_step": 320},
    "krum@ipm[attack_scale=100]": {"b": 3, "attack": "ipm", "attack_scale": 100.0, "swept_from": "krum@ipm",
                                   "bits_per_worker_step": 320},
    "krum[attack=reverse,b=6]": {"b": 6, "attack": "reverse", "swept_from": "krum", "bits_per_worker_step": 320},
    "krum[attack=alie,b=6]": {"b": 6, "attack": "alie", "swept_from": "krum", "bits_per_worker_step": 320},
    "mv[attack=reverse,b=6]": {"b": 6, "attack": "reverse", "swept_from": "mv", "bits_per_worker_step": 10},
    "mv_again": {"b": 6, "attack": "reverse", "swept_from": "mv", "bits_per_worker_step": 10},
}


def test_rows_columns_and_tables_per_b():
    assert defense_of("krum@ipm[attack_scale=100]", INFO["krum@ipm[attack_scale=100]"]) == "krum"
    assert defense_of("plain", {}) == "plain"
    assert attack_of(INFO["mv@adaptive"]) == "omniscient (adaptive)"
    assert attack_of(INFO["krum@ipm[attack_scale=100]"]) == "ipm ε=100"
    assert attack_of(INFO["no_attack"]) == "none"
    summary = [_row(name, 0.5 + 0.01 * i) for i, name in enumerate(INFO)]
    m3, m6 = matrices(summary, INFO)
    assert (m3.b, m6.b) == (3, 6)
    assert m3.defenses == ("no_attack", "mv", "krum")
    assert m3.attacks == ("none", "reverse", "omniscient", "omniscient (adaptive)", "ipm ε=100")
    assert m3.cells[("krum", "ipm ε=100")]["scheme"] == "krum@ipm[attack_scale=100]"
    assert ("krum", "omniscient") not in m3.cells and m3.bits == {"no_attack": 10, "mv": 10, "krum": 320}
    assert m6.attacks == ("none", "reverse", "alie") and m6.duplicates == ("mv_again",)   # the baseline joins every b
    text = matrix_markdown(m3, "test_auc").splitlines()
    assert text[0] == "| defense (b = 3) | bits/worker/step | none | reverse | omniscient | omniscient (adaptive) | ipm ε=100 |"
    krum = next(line for line in text if line.startswith("| krum |"))
    assert krum == "| krum | 320 | – | 0.5400 [0.5300, 0.5500] | – | – | 0.5500 [0.5400, 0.5600] |"
    assert "mv_again" in matrix_markdown(m6, "test_auc")


def test_no_matrix_without_two_defenses_and_two_attacks():
    info = {"a": {"b": 3, "attack": "reverse"}, "b": {"b": 3, "attack": "reverse"}}
    assert matrices([_row("a", 0.5), _row("b", 0.6)], info) == []
    info = {"a": {"b": 3, "attack": "reverse"}, "a2": {"b": 3, "attack": "random", "swept_from": "a"}}
    assert matrices([_row("a", 0.5), _row("a2", 0.6)], info) == []
    # the default job: a baseline and two defenses under one attack
    info = {"clean": {"b": 0, "attack": "none"}, "mv": {"b": 5, "attack": "directional"},
            "bern": {"b": 5, "attack": "directional"}}
    assert matrices([_row(n, 0.5) for n in info], info) == []


def test_heat_map_is_written_with_empty_and_nan_cells(tmp_path):
    info = {"x": {"b": 2, "attack": "reverse"}, "y": {"b": 2, "attack": "random"},
            "z@1": {"b": 2, "attack": "random", "swept_from": "z@1"}}
    (m,) = matrices([_row("x", 0.7), _row("y", math.nan, math.nan, math.nan), _row("z@1", 0.9)], info)
    assert "| y | – | – | – |" in matrix_markdown(m, "test_accuracy")
    png = plot_matrix(tmp_path / "m.png", m, "test_accuracy", title="t")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_report_renders_the_matrix_and_heat_map(tmp_path, capsys):
    from jax_ec.results import SchemeCurves, write_metrics_csv
    folder = tmp_path / "zoo"
    folder.mkdir()
    names = ["mv[attack=reverse]", "mv[attack=random]", "med[attack=reverse]", "med[attack=random]"]
    rng = np.random.default_rng(0)
    curves = [SchemeCurves(name, np.array([0, 5]), np.array([[0.0, 1.0]] * 3), np.zeros((3, 2)),
                           rng.uniform(0.5, 0.9, (3, 2)), "test_auc", epoch=np.array([0.0, 1.0])) for name in names]
    write_metrics_csv(folder / "metrics.csv", curves)
    schemes = {name: {"b": 3, "attack": name.split("=")[1][:-1], "swept_from": name.split("[")[0],
                      "bits_per_worker_step": 1 if name.startswith("mv") else 32} for name in names}
    (folder / "run.json").write_text(json.dumps({"name": "zoo", "trials": 3, "metadata": {}, "schemes": schemes}))
    (folder / "config.yaml").write_text("target: 0.6\n")
    out = tmp_path / "rep" / "report.md"
    assert main(["report", str(folder), "--out", str(out)]) == 0
    text = out.read_text()
    assert "### Defense × attack, b = 3" in text
    assert "| defense (b = 3) | bits/worker/step | reverse | random |" in text
    med = float(np.mean(curves[2].metric[:, -1]))
    assert f"| med | 32 | {med:.4f} [" in text
    assert (tmp_path / "rep" / "zoo_matrix_b3.png").read_bytes().startswith(b"\x89PNG")
