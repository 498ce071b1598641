"""The README's Python example runs as written, and its two commands are what CI runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

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
