"""Tests for jax_ec.results: statistics, CSV/JSON round trips, plots, atomic writes."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from jax_ec import results
from jax_ec.results import SchemeCurves


def make_curves(scheme: str = "signsgd_mv", trials: int = 3, seed: int = 0) -> SchemeCurves:
    rng = np.random.default_rng(seed)
    steps = np.array([0, 10, 20, 30])
    sim_time = np.cumsum(rng.uniform(0.5, 1.5, size=(trials, steps.size)), axis=1)
    wall_time = np.tile(np.array([0.0, 1.25, 2.5, 3.75]), (trials, 1))
    metric = np.clip(np.linspace(0.5, 0.9, steps.size) + rng.normal(0, 0.05, (trials, steps.size)), 0, 1)
    return SchemeCurves(scheme, steps, sim_time, wall_time, metric, "test_auc")


# --------------------------------------------------------------------------- SchemeCurves


def test_scheme_curves_validates_shapes():
    steps = np.array([1, 2, 3])
    ok = np.zeros((2, 3))
    SchemeCurves("s", steps, ok, ok, ok, "auc")
    with pytest.raises(ValueError, match="metric must have shape"):
        SchemeCurves("s", steps, ok, ok, np.zeros((2, 4)), "auc")
    with pytest.raises(ValueError, match="share one shape"):
        SchemeCurves("s", steps, ok, np.zeros((1, 3)), ok, "auc")
    with pytest.raises(ValueError, match="1-D"):
        SchemeCurves("s", np.zeros((1, 3), dtype=int), ok, ok, ok, "auc")
    with pytest.raises(ValueError, match="integers"):
        SchemeCurves("s", np.array([1.0, 2.0, 3.0]), ok, ok, ok, "auc")


# --------------------------------------------------------------------------- mean_ci


def test_mean_ci_matches_hand_computation():
    x = np.array([0.81, 0.79, 0.84, 0.80, 0.83, 0.78, 0.82, 0.85, 0.80, 0.81])  # n = 10, df = 9
    mean, low, high = results.mean_ci(x)
    n = x.size
    m = sum(x) / n
    s = math.sqrt(sum((v - m) ** 2 for v in x) / (n - 1))
    t = stats.t.ppf(0.975, df=9)
    assert t == pytest.approx(2.2621571627, abs=1e-9)  # tabulated t_{0.975, 9}
    assert mean == pytest.approx(m)
    assert high - mean == pytest.approx(t * s / math.sqrt(n))
    assert mean - low == pytest.approx(t * s / math.sqrt(n))


def test_mean_ci_axis_and_level():
    x = np.arange(12.0).reshape(4, 3)
    mean, low, high = results.mean_ci(x, axis=0, level=0.9)
    assert mean.shape == low.shape == high.shape == (3,)
    half = stats.t.ppf(0.95, df=3) * x.std(axis=0, ddof=1) / 2.0
    np.testing.assert_allclose(high - mean, half)
    row_mean, _, _ = results.mean_ci(x, axis=1)
    np.testing.assert_allclose(row_mean, x.mean(axis=1))
    with pytest.raises(ValueError):
        results.mean_ci(x, level=1.0)


def test_mean_ci_single_and_empty_sample():
    mean, low, high = results.mean_ci(np.array([0.7]))
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)
    mean, low, high = results.mean_ci(np.array([]))
    assert math.isnan(mean) and math.isnan(low) and math.isnan(high)
    mean, low, high = results.mean_ci(np.ones((1, 5)), axis=0)
    assert mean.shape == (5,) and np.isnan(low).all() and np.isnan(high).all()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=30), st.floats(0.5, 0.999))
def test_mean_ci_brackets_mean(values, level):
    mean, low, high = results.mean_ci(np.array(values), level=level)
    assert low <= mean <= high


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12), st.floats(0.5, 0.999))
def test_mean_ci_with_bounds_stays_in_range_and_keeps_the_t_interval_inside(values, level):
    x = np.array(values)
    mean, low, high = results.mean_ci(x, level=level, bounds=(0.0, 1.0))
    _, t_low, t_high = results.mean_ci(x, level=level)
    assert mean == pytest.approx(x.mean())
    if len(values) == 1:
        assert math.isnan(low) and math.isnan(high)
    else:
        assert 0.0 <= low <= mean <= high <= 1.0
        assert (low, high) == (max(t_low, 0.0), min(t_high, 1.0))


def test_mean_ci_with_bounds_on_an_axis():
    x = np.array([[0.03, 0.5, 0.99], [0.8, 0.5, 0.2]])
    mean, low, high = results.mean_ci(x, axis=0, bounds=(0.0, 1.0))
    np.testing.assert_allclose(mean, [0.415, 0.5, 0.595])
    np.testing.assert_array_equal(low, [0.0, 0.5, 0.0])
    np.testing.assert_array_equal(high, [1.0, 0.5, 1.0])


# --------------------------------------------------------------------------- time_to_target


def test_time_to_target():
    curves = SchemeCurves(
        "s",
        steps=np.array([5, 10, 15]),
        sim_time=np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5], [1.1, 2.1, 3.1]]),
        wall_time=np.zeros((3, 3)),
        metric=np.array([[0.9, 0.95, 0.99], [0.1, 0.2, 0.3], [0.5, 0.85, np.nan]]),
        metric_name="auc",
        epoch=np.array([0.5, 1.0, 1.5]),
    )
    steps, epochs, sim_time = results.time_to_target(curves, 0.8)
    np.testing.assert_array_equal(steps, [5.0, np.nan, 10.0])  # first point / never / later
    np.testing.assert_array_equal(epochs, [0.5, np.nan, 1.0])
    np.testing.assert_array_equal(sim_time, [1.0, np.nan, 2.1])
    steps, epochs, sim_time = results.time_to_target(curves, 2.0)
    assert np.isnan(steps).all() and np.isnan(sim_time).all() and np.isnan(epochs).all()


# --------------------------------------------------------------------------- summarize / tables


def test_summarize_columns_and_values():
    a = make_curves("no_attack", trials=4, seed=1)
    b = make_curves("bernoulli_r2", trials=1, seed=2)
    rows = results.summarize([a, b], target=0.7)
    assert [list(r) for r in rows] == [list(results.SUMMARY_COLUMNS)] * 2
    assert list(results.SUMMARY_COLUMNS) == [
        "scheme", "metric", "trials", "final_mean", "final_ci_low", "final_ci_high", "final_std",
        "target", "reached", "steps_to_target_mean", "steps_to_target_ci_low",
        "steps_to_target_ci_high", "epochs_to_target_mean", "epochs_to_target_ci_low",
        "epochs_to_target_ci_high", "simtime_to_target_mean", "simtime_to_target_ci_low",
        "simtime_to_target_ci_high", "final_sim_time_mean", "wall_time_s", "ci_method", "ci_clipped",
    ]  # fmt: skip
    r = rows[0]
    assert (r["scheme"], r["metric"], r["trials"], r["target"]) == ("no_attack", "test_auc", 4, 0.7)
    assert r["final_mean"] == pytest.approx(a.metric[:, -1].mean())
    assert r["final_std"] == pytest.approx(a.metric[:, -1].std(ddof=1))
    steps, _, sim_time = results.time_to_target(a, 0.7)
    reached = ~np.isnan(steps)
    assert r["reached"] == pytest.approx(reached.mean())
    assert r["steps_to_target_mean"] == pytest.approx(steps[reached].mean())
    assert r["simtime_to_target_mean"] == pytest.approx(sim_time[reached].mean())
    assert r["final_sim_time_mean"] == pytest.approx(a.sim_time[:, -1].mean())
    assert r["wall_time_s"] == 3.75
    assert math.isnan(rows[1]["final_ci_low"]) and math.isnan(rows[1]["final_std"])


def test_summary_intervals_stay_in_range_and_say_how():
    """Two trials far apart (a smoke run): the t-interval of the final accuracy, 0.415 ± 4.98, is
    clipped to [0, 1]; the steps to the target, to the run's evaluations."""
    curves = SchemeCurves("s", np.array([0, 1, 2]), np.array([[0.0, 1.0, 2.0], [0.0, 1.5, 3.0]]), np.zeros((2, 3)),
                          np.array([[0.5, 0.6, 0.03], [0.1, 0.2, 0.8]]), "test_accuracy", epoch=np.array([0, 0.5, 1]))
    (row,) = results.summarize([curves], target=0.55)
    assert row["ci_method"] == results.CI_METHOD == "student_t_clipped"
    assert (row["final_mean"], row["final_ci_low"], row["final_ci_high"]) == (pytest.approx(0.415), 0.0, 1.0)
    # Trial 0 reaches 0.55 at step 1, trial 1 at step 2: 1.5 ± 6.35, clipped to the steps [0, 2].
    assert (row["steps_to_target_mean"], row["steps_to_target_ci_low"], row["steps_to_target_ci_high"]) == (1.5, 0, 2)
    assert (row["epochs_to_target_ci_low"], row["epochs_to_target_ci_high"]) == (0, 1)
    assert (row["simtime_to_target_ci_low"], row["simtime_to_target_ci_high"]) == (0, 3)
    assert row["ci_clipped"] == "final steps_to_target epochs_to_target simtime_to_target"
    table = results.format_summary_table([row])
    assert "0.415 [0, 1]*" in table and "1.5 [0, 2]*" in table
    assert table.splitlines()[-1] == ("95% CI (student_t_clipped): the Student-t interval of the mean over the trials, "
                                      "clipped to the possible range (test_accuracy in [0, 1]; times to target within "
                                      "the run); * marks an interval the range clipped.")


def test_summary_of_an_unbounded_metric_keeps_the_t_interval():
    curves = SchemeCurves("s", np.array([0, 1]), np.zeros((3, 2)), np.zeros((3, 2)),
                          np.array([[3.0, -2.0], [1.0, 5.0], [2.0, 0.5]]), "train_loss")
    (row,) = results.summarize([curves], target=None)
    assert (row["final_mean"], row["final_ci_low"], row["final_ci_high"]) == pytest.approx(
        results.mean_ci(np.array([-2.0, 5.0, 0.5])))
    assert row["final_ci_low"] < -2.0 and row["ci_clipped"] == ""
    assert "train_loss unbounded" in results.format_summary_table([row])


def test_summarize_without_or_unreached_target():
    curves = make_curves()
    for target in (None, 5.0):
        (row,) = results.summarize([curves], target=target)
        for key in results.SUMMARY_COLUMNS[9:18]:
            assert math.isnan(row[key]), key
        assert "to_target" not in row["ci_clipped"]
    (row,) = results.summarize([curves], target=None)
    assert math.isnan(row["target"]) and math.isnan(row["reached"])
    (row,) = results.summarize([curves], target=5.0)
    assert row["reached"] == 0.0


def test_summary_csv_and_table(tmp_path):
    rows = results.summarize([make_curves("no_attack"), make_curves("signsgd_mv", trials=1)], 0.7)
    path = tmp_path / "summary.csv"
    results.write_summary_csv(path, rows)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(results.SUMMARY_COLUMNS)
    assert len(lines) == 3 and lines[1].startswith("no_attack,test_auc,3,")
    with pytest.raises(ValueError):
        results.write_summary_csv(path, [{"scheme": "x"}])

    table = results.format_summary_table(rows)
    print(table)
    header, rule, *body = table.splitlines()
    assert "scheme" in header and "final mean [95% CI]" in header and set(rule) <= {"-", " "}
    assert body[0].startswith("no_attack") and body[1].startswith("signsgd_mv")
    assert "[" in body[0] and "%" in body[0]


# --------------------------------------------------------------------------- CSV round trip


def test_metrics_csv_round_trip(tmp_path):
    with_epochs = make_curves("bernoulli_r2", trials=3, seed=4)
    with_epochs = SchemeCurves(with_epochs.scheme, with_epochs.steps, with_epochs.sim_time, with_epochs.wall_time,
                               with_epochs.metric, with_epochs.metric_name, epoch=with_epochs.steps / 7)
    curves_list = [make_curves("no_attack", trials=2, seed=3), with_epochs]
    path = tmp_path / "out" / "metrics.csv"
    results.write_metrics_csv(path, curves_list)
    lines = path.read_text().splitlines()
    assert lines[0] == "scheme,trial,step,epoch,sim_time,wall_time,metric_name,metric"
    assert len(lines) == 1 + (2 + 3) * 4
    loaded = results.read_metrics_csv(path)
    assert [c.scheme for c in loaded] == ["no_attack", "bernoulli_r2"]
    for orig, back in zip(curves_list, loaded):
        assert back.metric_name == orig.metric_name
        np.testing.assert_array_equal(back.steps, orig.steps)
        assert np.issubdtype(back.steps.dtype, np.integer)
        for name in ("sim_time", "wall_time", "metric"):
            np.testing.assert_array_equal(getattr(back, name), getattr(orig, name))  # exact
    assert loaded[0].epoch is None
    np.testing.assert_array_equal(loaded[1].epoch, with_epochs.epoch)


def test_metrics_csv_written_before_the_epoch_column_still_reads(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("scheme,trial,step,sim_time,wall_time,metric_name,metric\n"
                   "s,0,0,0.0,0.0,auc,0.5\ns,0,4,2.0,1.0,auc,0.6\n")
    (curves,) = results.read_metrics_csv(old)
    assert curves.epoch is None and curves.steps.tolist() == [0, 4] and curves.metric.tolist() == [[0.5, 0.6]]


def test_metrics_csv_rejects_bad_input(tmp_path):
    curves = make_curves()
    with pytest.raises(ValueError, match="unique"):
        results.write_metrics_csv(tmp_path / "m.csv", [curves, curves])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        results.read_metrics_csv(bad)
    short = tmp_path / "short.csv"
    short.write_text("scheme,trial,step,sim_time,wall_time,metric_name,metric\ns,0,1,1.0,0.0,auc\n")
    with pytest.raises(ValueError, match=r"short\.csv, line 2: 6 fields; expected 7"):
        results.read_metrics_csv(short)
    text = tmp_path / "text.csv"
    text.write_text("scheme,trial,step,sim_time,wall_time,metric_name,metric\ns,0,one,1.0,0.0,auc,0.5\n")
    with pytest.raises(ValueError, match=r"text\.csv, line 2: invalid literal .*'one'"):
        results.read_metrics_csv(text)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(
        "scheme,trial,step,sim_time,wall_time,metric_name,metric\n"
        "s,0,1,1.0,0.0,auc,0.5\ns,0,2,2.0,0.0,auc,0.6\ns,1,1,1.0,0.0,auc,0.5\n"
    )
    with pytest.raises(ValueError, match="different eval steps"):
        results.read_metrics_csv(ragged)


# --------------------------------------------------------------------------- plots


def test_plot_curves_writes_png(tmp_path):
    path = tmp_path / "curves.png"
    results.plot_curves(path, [make_curves("no_attack"), make_curves("signsgd_mv", trials=1)], title="t")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert os.listdir(tmp_path) == ["curves.png"]
