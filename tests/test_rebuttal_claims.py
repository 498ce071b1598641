"""The rebuttal table in the README is what the committed result folders say: benchmarks.rebuttal
recomputes every paired difference from benchmarks/results/rebuttal/*/metrics.csv and gets the
committed claims.json; verdicts follow the interval's position; a missing folder is reported as
not run, never left out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from benchmarks import rebuttal

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "rebuttal"


def test_the_committed_claims_are_recomputed_from_the_committed_folders():
    committed = json.loads((RESULTS / "claims.json").read_text())["claims"]
    rows = rebuttal.evaluate(RESULTS)
    assert [(r["claim"], r["setting"], r["verdict"]) for r in rows] == \
        [(r["claim"], r["setting"], r["verdict"]) for r in committed]
    for r, c in zip(rows, committed):
        np.testing.assert_allclose([r["difference"], r["ci_low"], r["ci_high"]],
                                   [c["difference"], c["ci_low"], c["ci_high"]], rtol=1e-12)
        assert r["verdict"] == ("holds" if r["ci_low"] > 0 else "does not hold" if r["ci_high"] < 0
                                else "inconclusive")
    readme = (RESULTS.parents[2] / "README.md").read_text()
    for r in rows:
        assert f"{r['difference']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | **{r['verdict']}**" in readme


def test_a_missing_folder_is_reported_as_not_run(tmp_path):
    shutil.copytree(RESULTS / "amazon_b", tmp_path / "amazon_b")
    rows = rebuttal.evaluate(tmp_path)
    assert len(rows) == len(rebuttal._claims())
    assert {r["verdict"] for r in rows if r["folder"] != "amazon_b"} == {f"not run: no results in {f}/" for f in
                                                                         {r["folder"] for r in rows} - {"amazon_b"}}
    assert "not run" in rebuttal.markdown(rows)
