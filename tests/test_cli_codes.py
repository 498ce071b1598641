"""`jax-ec codes show|verify|design|estimate`."""

from __future__ import annotations

from jax_ec.cli import main


def test_codes_show_and_verify_the_paper_example(capsys, tmp_path):
    assert main(["codes", "show", "paper_n5"]) == 0
    out = capsys.readouterr().out
    assert "redundancy r = 3.8" in out and "largest perfectly tolerated b = 1" in out
    assert main(["codes", "verify", "paper_n5", "--b", "1"]) == 0
    assert "TOLERANT" in capsys.readouterr().out
    png = tmp_path / "margins.png"
    assert main(["codes", "verify", "paper_n5", "--b", "2", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "NOT tolerant" in out and "counterexample" in out
    assert png.read_bytes().startswith(b"\x89PNG")


def test_codes_design_and_estimates_are_reproducible(capsys, tmp_path):
    assert main(["codes", "design", "--n", "5", "7", "--b", "1", "2", "--plot", str(tmp_path / "r.png")]) == 0
    assert "3.8" in capsys.readouterr().out
    argv = ["codes", "estimate", "failure", "--n", "9", "--p", "0.3", "--draws", "16", "--patterns", "16",
            "--seed", "3"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == first
    assert main(["codes", "estimate", "load", "--n", "21", "--p", "0.2", "--draws", "50",
                 "--plot", str(tmp_path / "load.png")]) == 0
    assert "Hoeffding" in capsys.readouterr().out


def test_codes_bad_input_is_one_line(capsys, tmp_path):
    assert main(["codes", "show", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.startswith("jax-ec: error: code file")
    assert main(["codes", "verify", "uncoded", "--n", "3", "--b", "5"]) == 2
    assert capsys.readouterr().err.startswith("jax-ec: error: b")
