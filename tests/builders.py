"""Test helpers: one scheme of a config, built into its pure functions; the one-line error check of
the command line (tests import this module)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_ec.config import ExperimentConfig
from jax_ec.plan import Scheme, make_schemes
from jax_ec.runtime import choose, make_train
from jax_ec.tasks import Task


def scheme_of(cfg: ExperimentConfig, name: str, task: Task) -> Scheme:
    schemes = {s.name: s for s in make_schemes(cfg, task.num_train)}
    return schemes[name]


def build(cfg: ExperimentConfig, name: str, task: Task, trials: int = 1, **choices: Any):
    """``(train, params, scheme, runtime)`` of scheme ``name``: the runtime's choices for ``trials``
    pairs on this backend, with ``choices`` forced (e.g. ``formulation="dense"``, ``vote="fused"``)."""
    scheme = scheme_of(cfg, name, task)
    runtime = choose(jax.default_backend(), task, scheme.static, trials, scheme.total_steps,
                     cfg.runtime.model_copy(update=choices))
    train = make_train(scheme.static, task, runtime)
    params = jax.tree.map(jnp.asarray, scheme.params)
    return train, params, scheme, runtime


def device_data(task: Task) -> tuple:
    return tuple(jnp.asarray(a) for a in task.data())


def stacked(params, times: int):
    """``params`` repeated along a new leading axis (a batch of pairs of one scheme)."""
    return jax.tree.map(lambda x: jnp.repeat(jnp.asarray(x)[None], times, axis=0), params)


def as_numpy(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def one_error_line(capsys) -> str:
    """The single ``jax-ec: error: ...`` line a refused command printed (no traceback, nothing else)."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("jax-ec: error: "), lines[0]
    return lines[0]
