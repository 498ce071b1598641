"""jax_ec.analysis.report: the printable tables and the figures of the analysis."""

from __future__ import annotations

import jax
import pytest

import jax_ec
from jax_ec.analysis.bernoulli import Estimate
from jax_ec.analysis.report import (design_table, estimate_table, load_deviation_table, plot_load_deviation,
                                    plot_margin_histogram, plot_redundancy, plot_smallest_p, search_table,
                                    smallest_p_table, verify_report)
from jax_ec.analysis.search import min_redundancy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KEY = jax.random.PRNGKey(0)


def test_verify_report_and_plot(tmp_path):
    text = verify_report(jax_ec.paper_code_n5(), 2)
    assert "NOT tolerant" in text and "attack='directional', direction=" in text
    assert "max tolerated   b = 1" in text
    assert "TOLERANT" in verify_report(jax_ec.paper_code_n5(), 1)
    path = tmp_path / "margins.png"
    plot_margin_histogram(path, jax_ec.paper_code_n5(), 1)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_design_table_and_plot(tmp_path):
    text = design_table([5, 7], r_min={(5, 1): 3.8})
    assert "3.8000" in text and "2b+1" in text and "r_min" in text
    assert len(text.splitlines()) == 2 + 3 + 4
    path = tmp_path / "redundancy.png"
    plot_redundancy(path, range(3, 12), bs=(1, 2), r_min={(5, 1): 3.8, (7, 1): 27 / 7})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tables_and_plots(tmp_path):
    est = Estimate(0.0123, 0.01, 0.015, 1000)
    table = estimate_table([{"n": 15, "p": 0.2, "attack": "reverse", "estimate": est},
                            {"n": 31, "p": 0.1, "attack": "worst_case", "estimate": est}])
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].split()[:3] == ["n", "p", "attack"]
    assert "P(fail)" in lines[0] and "worst_case" in lines[3] and "0.0123" in lines[2]
    sp = smallest_p_table([5, 201], [0.5, float("nan")])
    assert "sqrt(log n/n)" in sp and sp.splitlines()[3].split()[1] == "-"
    ld = load_deviation_table(51, 0.2, [0.1], [Estimate(0.01, 0.005, 0.02, 5100)])
    assert "Hoeffding" in ld
    plot_smallest_p(tmp_path / "p.png", [5, 11, 21], {"a": [0.9, 0.5, float("nan")], "b": [0.8, 0.4, 0.2]})
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC
    plot_load_deviation(tmp_path / "sub" / "load.png", 51, 0.2, [0.05, 0.1, 0.3], key=KEY, draws=50)
    assert (tmp_path / "sub" / "load.png").read_bytes()[:8] == PNG_MAGIC


def test_search_table():
    text = search_table([min_redundancy(5, 1)])
    assert "exact" in text and "3.8000" in text and "optimal" in text


def test_design_table_rows_come_one_by_one_and_skips_are_said():
    from jax_ec.analysis.report import design_rows
    rows = design_rows([5, 1000], [1, 3])
    assert next(rows).split()[:2] == ["n", "b"] and next(rows).startswith("---")
    assert next(rows).split()[:2] == ["5", "1"]                    # before n = 1000 is computed
    rest = list(rows)
    assert [r.split()[:2] for r in rest[:2]] == [["1000", "1"], ["1000", "3"]]
    assert rest[-1] == "skipped (no code is perfectly b-tolerant unless b < n/2): n = 5, b = 3"
    big = design_table([3001], [1])
    assert big.splitlines()[2].split()[-2] == "-" and "r(idle ok) not computed for n = 3001" in big


@pytest.mark.parametrize("call, message", [
    (lambda: design_table([0]), r"^ns: got 0; expected an integer >= 1"),
    (lambda: design_table(5), r"^ns: got 5; expected a list"),
    (lambda: design_table([5], [-1]), r"^bs: got -1"),
    (lambda: design_table([5], ["1"]), r"^bs: got '1'"),
    (lambda: smallest_p_table([1, 5], [0.5, 0.2]), r"^ns: got 1; expected an integer >= 2"),
    (lambda: smallest_p_table([5, 7], [0.5]), r"^ps: has 1 values; expected 2"),
    (lambda: load_deviation_table(5, 0.2, [0.1, 0.2], [Estimate(0.1, 0.0, 0.2, 10)]), r"^estimates: has 1"),
    (lambda: smallest_p_table([5], 0.5), r"^ps: got 0.5; expected a sequence"),
    (lambda: estimate_table([]), r"^rows: got \[\]; expected a non-empty list"),
    (lambda: estimate_table([{"n": 5}]), r"^rows\[0\]: got \{'n': 5\}; expected a dict .* 'estimate'"),
    (lambda: search_table(3), r"^results: got 3"),
    (lambda: search_table(["x"]), r"^results\[0\]: got 'x'; expected a SearchResult"),
])
def test_tables_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_plots_check_their_path_before_computing(tmp_path, monkeypatch):
    from jax_ec.analysis import report

    def no_work(*args, **kwargs):
        raise AssertionError("computed before checking the path")

    for name in ("margin_histogram", "deterministic_design", "load_deviation_curve"):
        monkeypatch.setattr(report, name, no_work)
    for call in (lambda path: plot_margin_histogram(path, jax_ec.paper_code_n5(), 1),
                 lambda path: plot_redundancy(path, [5, 7], bs=(1,)),
                 lambda path: plot_smallest_p(path, [5, 7], [0.5, 0.4]),
                 lambda path: plot_load_deviation(path, 21, 0.2, [0.1], key=KEY, draws=10)):
        with pytest.raises(ValueError, match=r"^path: '.*' is a folder"):
            call(tmp_path)
