"""`jax-ec report` over result folders."""

from __future__ import annotations

from jax_ec.cli import main


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
