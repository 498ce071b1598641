"""`jax-ec codes show|verify|design|estimate`."""

from __future__ import annotations

import numpy as np
import pytest

from jax_ec import _checks
from jax_ec.cli import main
from jax_ec.config import ConfigError, config_from_dict


def run(argv, capsys):
    """(exit code, stdout, stderr) of `jax-ec ARGV`, argparse's own exits included."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jax-ec: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_codes_show_and_verify_the_paper_example(capsys, tmp_path):
    assert main(["codes", "show", "paper_n5"]) == 0
    out = capsys.readouterr().out
    assert "redundancy r = 3.8" in out and "largest perfectly tolerated: b = 1" in out
    assert main(["codes", "verify", "paper_n5", "--b", "1"]) == 0
    assert "TOLERANT" in capsys.readouterr().out
    png = tmp_path / "margins.png"
    assert main(["codes", "verify", "paper_n5", "--b", "2", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "NOT tolerant" in out and "counterexample" in out
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow   # a whole run; the default set keeps a shorter one of its kind
def test_codes_design_and_estimates_are_reproducible(capsys, tmp_path):
    assert main(["codes", "design", "--n", "5", "7", "--b", "1", "3", "--plot", str(tmp_path / "r.png")]) == 0
    out = capsys.readouterr().out
    assert "3.8" in out and "skipped (no code is perfectly b-tolerant unless b < n/2): n = 5, b = 3" in out
    argv = ["codes", "estimate", "failure", "--n", "9", "--p", "0.3", "--draws", "16", "--patterns", "16",
            "--seed", "3"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == first
    assert main(["codes", "estimate", "load", "--n", "21", "--p", "0.2", "--draws", "50",
                 "--plot", str(tmp_path / "load.png")]) == 0
    assert "Hoeffding" in capsys.readouterr().out and (tmp_path / "load.png").is_file()


@pytest.mark.slow   # a whole run; the default set keeps a shorter one of its kind
def test_load_plots_of_several_settings_get_one_file_each(capsys, tmp_path):
    assert main(["codes", "estimate", "load", "--n", "9", "11", "--p", "0.2", "--draws", "5",
                 "--plot", str(tmp_path / "new" / "load.png")]) == 0
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["load_n11_p0.2.png", "load_n9_p0.2.png"]


def test_show_says_when_no_b_is_tolerated(capsys):
    assert main(["codes", "show", "bernoulli"]) == 0
    out = capsys.readouterr().out
    assert "= -1" not in out and "largest perfectly tolerated: none, not even b = 0" in out


@pytest.mark.parametrize("argv, fragments", [
    # numbers out of range, named by flag and value
    (["estimate", "smallest-p", "--n", "1"], ["--n: got 1; expected an integer >= 2"]),
    (["estimate", "failure", "--n", "0"], ["--n: got 0"]),
    (["estimate", "failure", "--n", "15", "--b", "15"], ["--b: got 15", "[0, 14]"]),
    (["estimate", "failure", "--b-fraction", "1.5"], ["--b-fraction: got 1.5"]),
    (["estimate", "failure", "--b-fraction", "nan"], ["--b-fraction: got nan"]),
    (["estimate", "failure", "--p", "1.2"], ["--p: got 1.2; expected a probability in [0, 1]"]),
    (["estimate", "failure", "--draws", "1"], ["--draws: got 1"]),
    (["estimate", "failure", "--patterns", "0"], ["--patterns: got 0"]),
    (["estimate", "smallest-p", "--target", "0"], ["--target: got 0.0; expected a probability in (0, 1)"]),
    (["estimate", "load", "--eps", "0.1", "-1"], ["--eps: got -1.0"]),
    (["estimate", "load", "--eps", "inf"], ["--eps: got inf"]),
    (["estimate", "failure", "--attack", "nuke"], ["--attack: unknown attack 'nuke'", "worst_case"]),
    (["estimate", "failure", "--sign-model", "correct:2"], ["--sign-model q: got 2.0"]),
    (["estimate", "failure", "--sign-model", "gauss"], ["--sign-model: unknown sign model 'gauss'"]),
    (["estimate", "failure", "--n", "100000"], ["--n: one draw", "GiB"]),
    (["design", "--n", "0", "--b", "1"], ["--n: got 0; expected an integer >= 1 (workers)"]),
    (["design", "--n", "-5"], ["--n: got -5"]),
    (["design", "--n", "5", "--b", "-1"], ["--b: got -1"]),
    (["design", "--n", "5", "--b", "10"], ["--b: got 10; no --n admits it", "b < n/2"]),
    (["design", "--n", "x"], ["--n: got 'x'; expected an integer"]),
    (["show", "uncoded", "--n", "0"], ["--n: got 0"]),
    (["show", "uncoded", "--n", "100000"], ["--n: an n × k = 100000 × 100000", "2**28"]),
    (["show", "bernoulli", "--r", "0"], ["--r: got 0.0", "<= 5"]),
    (["show", "bernoulli", "--n", "7", "--r", "8"], ["--r: got 8.0", "<= 7"]),
    (["show", "deterministic", "--n", "5", "--b", "3"], ["--b: got 3", "[0, 2]"]),
    (["show", "deterministic", "--n", "1"], ["--b (default 1): got 1"]),
    (["show", "draco", "--n", "4", "--b", "2"], ["--b: got 2", "DRACO"]),
    (["verify", "uncoded", "--n", "3", "--b", "5"], ["--b: got 5", "[0, 2]"]),
    (["verify", "paper_n5", "--b", "-1"], ["--b: got -1"]),
    (["verify", "deterministic", "--n", "1000"], ["code: exact verification", "distinct columns", "2**24"]),
    # seeds: the config's range and wording
    (["show", "bernoulli", "--seed", "99999999999999999999"], ["--seed: got 99999999999999999999"]),
    (["show", "bernoulli", "--seed", "4294967296"], ["--seed: got 4294967296; expected an integer >= 0 and < 2**32"]),
    (["show", "bernoulli", "--seed", "-1"], ["--seed: got -1"]),
    (["estimate", "failure", "--seed", "4294967296"], ["--seed: got 4294967296"]),
    # options the chosen code or estimate does not read
    (["show", "paper_n5", "--n", "7"], ["--n: got 7; paper_n5 has n = 5 workers"]),
    (["show", "uncoded", "--r", "3"], ["--r:", "does not use it", "bernoulli"]),
    (["show", "uncoded", "--seed", "3"], ["--seed:", "does not use it"]),
    (["show", "bernoulli", "--b", "1"], ["--b:", "does not use it"]),
    (["verify", "repetition", "--allow-idle"], ["--allow-idle:", "does not use it", "deterministic"]),
    (["estimate", "failure", "--plot", "x.png"], ["--plot:", "does not use it"]),
    (["estimate", "load", "--attack", "none"], ["--attack:", "does not use it"]),
    (["estimate", "smallest-p", "--p", "0.3"], ["--p:", "does not use it"]),
    (["estimate", "failure", "--b", "1", "--b-fraction", "0.2"], ["--b: give either --b", "not both"]),
    # unknown codes list the built-in names
    (["show", "nope"], ["code: unknown code 'nope'", "uncoded, bernoulli, paper_n5, deterministic"]),
    (["verify", "missing.csv"], ["code: unknown code 'missing.csv'", "existing CSV/.npy file"]),
])
def test_bad_input_is_one_line_naming_the_flag(argv, fragments, capsys):
    rc, out, err = run(["codes", *argv], capsys)
    assert_one_line_error(rc, err, *fragments)


def test_cli_seed_check_is_the_config_seed_check(capsys):
    rc, _, err = run(["codes", "show", "bernoulli", "--seed", str(2 ** 32)], capsys)
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"seed": 2 ** 32})
    assert rc == 2 and err.strip().removeprefix("jax-ec: error: --seed") == str(exc.value).removeprefix("seed")
    assert main(["codes", "show", "bernoulli", "--seed", str(2 ** 32 - 1)]) == 0


def test_code_files_name_the_file_and_row(capsys, tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,0,1\n1,1\n")
    rc, _, err = run(["codes", "show", str(ragged)], capsys)
    assert_one_line_error(rc, err, "ragged.csv", "line 2", "has 2 entries but line 1 has 3")
    pickled = tmp_path / "code.npy"
    np.save(pickled, np.array([[1, 0], [0, 1]], dtype=object), allow_pickle=True)
    rc, _, err = run(["codes", "show", str(pickled)], capsys)
    assert_one_line_error(rc, err, "code.npy", "pickled", "allow_pickle=False")
    good = tmp_path / "good.csv"
    good.write_text("1,1,1\n1,1,1\n1,1,1\n")
    rc, _, err = run(["codes", "verify", str(good), "--n", "4"], capsys)
    assert_one_line_error(rc, err, "--n: got 4", "good.csv", "n = 3")
    rc, _, err = run(["codes", "verify", str(good), "--b", "3"], capsys)
    assert_one_line_error(rc, err, "--b: got 3", "[0, 2]")
    assert main(["codes", "verify", str(good), "--b", "1"]) == 0


@pytest.mark.parametrize("argv", [
    ["verify", "paper_n5"],
    ["design", "--n", "5"],
    ["estimate", "smallest-p", "--n", "5", "--draws", "4", "--patterns", "4"],
    ["estimate", "load", "--n", "5", "--draws", "4"],
])
def test_output_paths_are_checked_before_any_work(argv, capsys, tmp_path, monkeypatch):
    from jax_ec.analysis import bernoulli, report

    def no_work(*args, **kwargs):
        raise AssertionError("computed before checking the output path")

    for module, names in [(report, ["verify", "margin_histogram", "max_tolerance", "deterministic_design"]),
                          (bernoulli, ["smallest_p", "load_deviation_curve"])]:
        for name in names:
            monkeypatch.setattr(module, name, no_work)
    rc, _, err = run(["codes", *argv, "--plot", str(tmp_path)], capsys)
    assert_one_line_error(rc, err, "--plot:", "is a folder")
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc, _, err = run(["codes", *argv, "--plot", str(blocker / "x.png")], capsys)
    assert_one_line_error(rc, err, "--plot: cannot create the folder")
    rc, _, err = run(["codes", *argv, "--plot", ""], capsys)
    assert_one_line_error(rc, err, "--plot: got ''")


def test_unwritable_output_folder_is_refused(tmp_path, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(ValueError, match=r"^--plot: cannot write '.*x.png': the folder .* is not writable"):
        _checks.output_file("--plot", tmp_path / "x.png")


def test_design_of_a_large_n_prints_its_row(capsys):
    # the construction is polynomial (tests/test_analysis_codes.py bounds its work); n = 1000 used to hang
    assert main(["codes", "design", "--n", "1000", "--b", "1"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[2].split()[:3] == ["1000", "1", "251.7490"] and rows[2].split()[-2:] == ["2.9980", "3"]


def test_show_of_a_large_code_summarises_it(capsys):
    assert main(["codes", "show", "deterministic", "--n", "1000"]) == 0
    out = capsys.readouterr().out
    assert "not printed" in out and len(out) < 2000
    assert "largest perfectly tolerated: not computed: exact verification" in out


def test_argparse_errors_of_codes_subcommands_are_one_line(capsys):
    rc, _, err = run(["codes", "estimate", "nothing"], capsys)
    assert_one_line_error(rc, err, "quantity: invalid choice: 'nothing'")
    rc, _, err = run(["codes", "show"], capsys)
    assert_one_line_error(rc, err, "the following arguments are required: code")
