"""`jax-ec report` over result folders."""

from __future__ import annotations

import pytest

from jax_ec.cli import main


@pytest.mark.slow   # a whole run; the default set keeps a shorter one of its kind
def test_report_table_and_plot(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "--out", str(run), "--no-progress", "--trials", "2", "--set", "steps=4",
                 "--set", "eval_every=2", "--set", "task.n_train=1500",
                 "--set", "schemes.2.aggregator=median"]) == 0
    capsys.readouterr()
    out = tmp_path / "rep" / "report.md"
    assert main(["report", str(run), "--out", str(out), "--target", "0.0"]) == 0
    text = out.read_text()
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| scheme | final test_auc [95% CI] |")
    rows = {line.split(" | ")[0][2:]: line.rstrip(" |").split(" | ") for line in lines[1:]}
    assert set(rows) == {"no_attack", "signsgd_mv", "bernoulli_p2_15"}
    assert rows["no_attack"][2] == "100%"           # target 0 is reached at step 0
    assert rows["no_attack"][4] == "0 [0, 0]"       # epochs to the target
    # bits per coordinate, per worker-step and per worker-epoch (n_train = 1500: shards of 100 samples,
    # 6 steps of 15 samples per epoch)
    assert rows["signsgd_mv"][6:9] == ["1", "263500", str(6 * 263500)]          # 1 bit per coordinate
    assert rows["bernoulli_p2_15"][6:9] == ["32", "8432000", str(6 * 8432000)]  # the median sends floats
    assert (tmp_path / "rep" / "run.png").read_bytes().startswith(b"\x89PNG")


def test_report_on_a_folder_without_results(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.md")]) == 2
    assert "metrics.csv" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Bad inputs fail before anything is written (result folders made without running)
# ---------------------------------------------------------------------------------------------


def fake_run(folder, metric=((0.5, 0.7), (0.5, 0.2)), name="test_auc", config="target: 0.6\n"):
    """A result folder as `jax-ec run` writes it: two trials of one scheme, two evaluations."""
    import json

    import numpy as np

    from jax_ec.results import SchemeCurves, write_metrics_csv
    folder.mkdir(parents=True)
    curves = SchemeCurves("s", np.array([0, 5]), np.array([[0.0, 1.0]] * 2), np.zeros((2, 2)), np.array(metric), name,
                          epoch=np.array([0.0, 1.0]))
    write_metrics_csv(folder / "metrics.csv", [curves])
    (folder / "run.json").write_text(json.dumps({"name": folder.name, "trials": 2, "metadata": {}, "schemes": {}}))
    (folder / "config.yaml").write_text(config)
    return folder


def report_error(argv, capsys) -> str:
    assert main(["report", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("jax-ec: error: ")
    return line.removeprefix("jax-ec: error: ")


def test_report_states_the_interval_method_and_stays_in_range(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    out = tmp_path / "new" / "folders" / "report.md"        # missing folders are created
    assert main(["report", str(run), "--out", str(out)]) == 0
    text = out.read_text()
    # The final AUC of the two trials, 0.45 ± 3.18 by Student-t, is clipped to [0, 1].
    assert "| s | 0.45 [0, 1]* | 50% |" in text
    assert ("95% CI (student_t_clipped): the Student-t interval of the mean over the trials, clipped to the possible "
            "range (test_auc in [0, 1]; times to target within the run); * marks an interval the range clipped.") in text


def test_report_out_is_a_directory(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    message = report_error([str(run), "--out", str(tmp_path)], capsys)
    assert message == (f"report --out: '{tmp_path}' is a directory; expected a markdown file path "
                       f"(e.g. '{tmp_path / 'report.md'}')")
    assert not list(tmp_path.glob("*.png"))


def test_report_out_under_a_file_or_unwritable(tmp_path, capsys, monkeypatch):
    run = fake_run(tmp_path / "run")
    (tmp_path / "file").write_text("x")
    message = report_error([str(run), "--out", str(tmp_path / "file" / "r.md")], capsys)
    assert message.startswith(f"report --out: '{tmp_path / 'file'}' is a file, not a folder"), message
    import jax_ec.report
    monkeypatch.setattr(jax_ec.report.os, "access", lambda path, mode: False)   # (tests may run as root)
    message = report_error([str(run), "--out", str(tmp_path / "r.md")], capsys)
    assert message.startswith(f"report --out: '{tmp_path / 'r.md'}' cannot be written (permission denied"), message


def test_report_target_outside_the_metric_range(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    message = report_error([str(run), "--out", str(tmp_path / "r.md"), "--target", "80"], capsys)
    assert message == f"--target: got 80.0; test_auc (of '{run}') lies in [0, 1]"
    message = report_error([str(run), "--out", str(tmp_path / "r.md"), "--target", "nan"], capsys)
    assert message.startswith("--target: got nan; expected a finite number")
    bad = fake_run(tmp_path / "bad", config="target: 80\n")
    message = report_error([str(bad), "--out", str(tmp_path / "r.md")], capsys)
    assert message == f"report: '{bad / 'config.yaml'}': target is 80; test_auc lies in [0, 1]"
    assert not (tmp_path / "r.md").exists()


def test_report_checks_every_folder_before_writing(tmp_path, capsys):
    good = fake_run(tmp_path / "good")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.csv").write_text("scheme,trial,step,epoch,sim_time,wall_time,metric_name,metric\n")
    (tmp_path / "broken" / "run.json").write_text("{}")
    out = tmp_path / "rep" / "r.md"
    message = report_error([str(good), str(tmp_path / "broken"), "--out", str(out)], capsys)
    assert message.startswith("report: ") and "has no rows" in message
    assert not (tmp_path / "rep").exists()                       # nothing written, no folder made
    (tmp_path / "broken" / "metrics.csv").write_text((good / "metrics.csv").read_text())
    (tmp_path / "broken" / "run.json").write_text("{not json")
    message = report_error([str(good), str(tmp_path / "broken"), "--out", str(out)], capsys)
    assert message.startswith(f"report: '{tmp_path / 'broken' / 'run.json'}' cannot be read as JSON"), message
    (tmp_path / "broken" / "run.json").write_text("{}")
    (tmp_path / "broken" / "config.yaml").write_text("target: 0.5\ntarget: 0.6\n")
    message = report_error([str(good), str(tmp_path / "broken"), "--out", str(out)], capsys)
    assert message == f"target: repeated key in '{tmp_path / 'broken' / 'config.yaml'}' (lines 1 and 2); each key may appear once"


def test_report_folders_of_one_name_get_one_plot_each(tmp_path, capsys):
    a = fake_run(tmp_path / "a" / "run")
    b = fake_run(tmp_path / "b" / "run", metric=((0.5, 0.9), (0.5, 0.8)))
    out = tmp_path / "rep" / "r.md"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    text = out.read_text()
    assert "![run_1](run_1.png)" in text and "![run_2](run_2.png)" in text
    assert (tmp_path / "rep" / "run_1.png").read_bytes() != (tmp_path / "rep" / "run_2.png").read_bytes()
