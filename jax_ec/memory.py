"""A run's memory needs, checked against the device before anything compiles.

A config can be valid and still far too large for the machine (a huge n, a large model times many
vmapped trials). Instead of an out-of-memory crash deep inside XLA, :func:`check_memory` compares
a *lower bound* of what one device must hold with what it has, and raises one
:class:`~jax_ec.config.ConfigError` naming the sizes and the ways out. The bound counts only what
certainly exists at once (so it never refuses a run that fits):

* the data arrays (train and test), held on every device;
* the trials' states (parameters, optimizer and worker-momentum state, exact via ``eval_shape``)
  of this device's block of trials;
* per trial running at the same time on the device (all of the block under ``vmap``, one under
  ``lax.map``), the direct step's dense arrays: the k_dev partition gradients and their signs
  ``2 · k_dev · d`` and the n local votes ``n · d`` (float32), with k_dev = k / mesh.partitions.

Activations and XLA's temporaries come on top, so a run that passes can still need more.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from .config import ConfigError, ExperimentConfig
from .train import resolved_modes, trials_per_device

__all__ = ["available_bytes", "lower_bound_bytes", "check_memory"]

GIB = 2.0 ** 30


def available_bytes(device: Any | None = None) -> int | None:
    """Memory the device can still allocate: the accelerator's free memory, or the host's
    ``MemAvailable`` for the CPU backend (None where it cannot be told)."""
    device = device if device is not None else jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # some backends do not implement it
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    if device.platform == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def _tree_bytes(tree: Any) -> int:
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def lower_bound_bytes(cfg: ExperimentConfig, trainer, data: tuple) -> dict[str, int]:
    """Lower bound of one device's memory for one scheme, by part (bytes)."""
    trials_here = trials_per_device(cfg)
    one_state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    state = _tree_bytes(one_state)
    if getattr(trainer, "partition_axis", None) is not None:   # the worker momentum is split too
        mom = _tree_bytes(getattr(one_state, "worker_mom", ()))
        state -= mom - mom // cfg.mesh.partitions
    mode = resolved_modes(cfg, trainer)[0]
    concurrent = trials_here if mode == "vmap" else 1
    plan = trainer.plan
    if type(trainer).__name__ == "SparseLogRegTrainer":
        working = 0   # O(touched coordinates), small
    else:
        working = 4 * trainer.num_params * (2 * plan.k // cfg.mesh.partitions + plan.n)
    return {"data": int(sum(np.asarray(a).nbytes for a in data)), "states": trials_here * state,
            "step": concurrent * working}


def check_memory(cfg: ExperimentConfig, trainers: list, data: tuple, device: Any | None = None) -> None:
    """Raise :class:`ConfigError` when a scheme's lower bound exceeds the device's available memory."""
    have = available_bytes(device)
    if have is None:
        return
    for trainer in trainers:
        need = lower_bound_bytes(cfg, trainer, data)
        total = sum(need.values())
        if total > have:
            parts = ", ".join(f"{name} {value / GIB:.2f} GiB" for name, value in need.items())
            mode = resolved_modes(cfg, trainer)[0]
            ways = ["fewer trials", "mesh.trials > 1 (more devices)"]
            if mode == "vmap":
                ways.insert(1, "trial_batching: map (one trial's step at a time)")
            raise ConfigError(
                f"trials: {cfg.trials} trials of scheme {trainer.plan.scheme!r} need at least {total / GIB:.2f} GiB "
                f"on one device ({parts}; d = {trainer.num_params} parameters, n = {trainer.plan.n}, "
                f"k = {trainer.plan.k}) but {have / GIB:.2f} GiB are available on {jax.default_backend()}; "
                f"try {', '.join(ways)}, or set memory_check: false to run anyway")
