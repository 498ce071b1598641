"""The README's Python example runs as written, and its two commands are what CI runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    block = block.replace('"configs/amazon_paper.yaml"', repr(str(ROOT / "configs" / "amazon_paper.yaml")))
    block = block.replace('overrides=["trials=3", "epochs=1"]',
                          'overrides=["trials=2", "steps=6", "eval_every=3", "task.n_train=1500"]')
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "results" / "quick" / "summary.csv").is_file()


def test_ci_runs_the_readme_test_command():
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    test_command = [c for c in commands if "pytest" in c][0]
    assert test_command in (ROOT / ".ci" / "run").read_text()
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    assert any(c.endswith("jax-ec run") for c in commands)


def test_shipped_default_config_is_the_configs_copy():
    assert (ROOT / "jax_ec" / "default.yaml").read_text() == (ROOT / "configs" / "amazon_paper.yaml").read_text()


@pytest.mark.slow   # a whole run; the default set keeps a shorter one of its kind
def test_architecture_example_runs(monkeypatch):
    """docs/architecture.md's dozen lines: a config flowing to each scheme's vote of step 0."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    block = block.replace('"configs/amazon_paper.yaml"', repr(str(ROOT / "configs" / "amazon_paper.yaml")))
    scope: dict = {}
    exec(compile(block, "architecture.md", "exec"), scope)
    import numpy as np
    votes = np.asarray(scope["votes"])
    assert votes.shape == (3, 263_500) and set(np.unique(votes)) <= {-1.0, 0.0, 1.0}
    assert scope["rt"].formulation == "touched_coordinates"
    assert not np.array_equal(votes[0], votes[1])       # no attack against b = 5 directional
