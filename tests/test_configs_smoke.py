"""Every shipped config runs end to end in its smoke form (CIFAR through TFDS mock data, offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jax_ec.config import load_config, smoke_config
from jax_ec.experiment import run_experiment
from jax_ec.results import read_metrics_csv

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))


def test_every_config_is_covered():
    assert len(CONFIGS) >= 15 and len(list((CONFIG_DIR / "paper").glob("*.yaml"))) == 13


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIGS])
def test_config_runs_in_smoke_form(path, tmp_path):
    cfg = smoke_config(load_config(path)[0])
    assert (cfg.trials, cfg.steps) == (2, 2)
    # Under TFDS's mock the "download" is a no-op that serves random records.
    cfg = cfg.model_copy(update=dict(task=cfg.task.model_copy(update=dict(download=True))))
    with tfds.testing.mock_data(num_examples=max(2 * cfg.batch_size, 32)):  # no network, no TensorFlow
        result = run_experiment(cfg, tmp_path, progress_bar=False)
    curves = read_metrics_csv(tmp_path / "metrics.csv")
    assert [c.scheme for c in curves] == [s.name for s in cfg.expanded_schemes()]
    for c in curves:
        assert c.metric.shape == (2, 3) and np.isfinite(c.metric).all()
    assert len(result.summary) == len(cfg.expanded_schemes())


# End-to-end and subprocess tests: `python -m pytest -m slow` (CI runs them after the default set).
pytestmark = pytest.mark.slow
