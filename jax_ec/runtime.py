"""Every execution choice of a run, in one place: how the science of :mod:`jax_ec.core` runs.

None of these choices changes a number (each is tested against the others, bit for bit where the
arithmetic is the same); they change the time. :func:`choose` makes them all from the backend, the
task, the scheme shape, the number of trials a device runs at once and the run's length; the
config's ``runtime:`` section may force any of them. The thresholds below are measured; each
names the result that justifies it.

* ``formulation``: ``touched_coordinates`` (:mod:`jax_ec.sparse_logreg`) wherever it applies (the
  Amazon task: 1.9 vs 4.7 ms per step, ``benchmarks/results/step_ratio_small_models.json``), else
  ``dense`` (:mod:`jax_ec.core`).
* ``trial_batching``: ``vmap`` or ``map`` (``lax.map``) over the (scheme, trial) pairs of a call.
* ``step_loop``: ``scan`` (the steps of a chunk inside one compiled call) or ``python`` (one call
  per step).
* ``vote``: ``matmul`` (``sign(G @ S)``), ``fused`` (bit-packed signs, one elementwise pass) or
  ``leafwise`` (fused, parameter array by parameter array, without the (k, d) concatenation).
* ``conv_rule``: ``per_partition`` (:mod:`jax_ec.models.layers`: one ordinary weight-gradient
  convolution per partition) or ``standard`` (JAX's batch-grouped convolution).
* ``memory_check``: :func:`check_memory` refuses, before compiling, a run that certainly cannot fit.

Every choice can be forced on every backend. ``auto`` takes the paths written for XLA:CPU
(:data:`CPU_PATHS`) on the CPU only; forced on another backend they run, with a
:class:`CpuPathWarning` saying so.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from typing import Any

import jax
import numpy as np

from .attacks import ADAPTIVE_PLACEMENTS
from .config import ConfigError, RuntimeConfig
from .core import SchemeStatic, Train
from .core import make_train as make_dense_train
from .election import fused_applies
from .sparse_logreg import applies as touched_applies
from .sparse_logreg import make_train as make_touched_train
from .tasks import Task

__all__ = ["Runtime", "choose", "use_host_cores", "make_train", "check_memory", "lower_bound_bytes", "available_bytes",
           "CPU_VMAP_MIN_TRIALS", "CPU_VMAP_MAX_BYTES", "GIB", "CPU_PATHS", "CpuPathWarning"]

# From this many (scheme, trial) pairs per device `vmap` beats `map` for models without
# convolutions on the CPU (benchmarks/results/trials_sweep.json: digits MLP T = 8: 3,858 vs 3,357
# trial-steps/s; at T = 1 `map` leads 1.1-1.7x).
CPU_VMAP_MIN_TRIALS = 8
# ... as long as their partition gradients (pairs · k · d float32) stay within this many bytes
# (benchmarks/results/trials_sweep.json: digits MLP T = 256, 148 MB: `map` 3,673 vs `vmap` 3,122).
CPU_VMAP_MAX_BYTES = 64 * 2 ** 20
# Convolutional models vote in the flat fused form in runs of any length: on ResNet-18 (CPU) it
# compiles fastest and steps as fast as the leafwise form (election step / plain step, first call
# with compilation: fused 0.76, 28.1 s; leafwise 0.75, 46.2 s; matmul 0.82, 30.1 s;
# benchmarks/results/step_ratio_resnet18_{fused,leafwise,matmul}.json).
GIB = 2.0 ** 30
# The paths written for XLA:CPU, which ``auto`` takes on the CPU backend only: (choice, value) -> why.
CPU_PATHS: dict[tuple[str, str], str] = {
    ("trial_batching", "map"): "one (scheme, trial) pair's step at a time (lax.map), the CPU rule for few trials "
                               "of small models; an accelerator runs the pairs together under vmap",
    ("step_loop", "python"): "one compiled call per step, the CPU rule for convolutional models (XLA:CPU runs "
                             "convolution gradients slowly inside loops, jax-ml/jax#12868); elsewhere scan",
    ("conv_rule", "per_partition"): "one weight-gradient convolution per partition, the CPU rule (XLA:CPU runs "
                                    "batch-grouped convolutions slowly); elsewhere JAX's standard convolution",
}


class CpuPathWarning(UserWarning):
    """A run on an accelerator takes an execution path written for the CPU (forced by its config)."""


def use_host_cores() -> int | None:
    """Give JAX's CPU backend one device per core this process may use, so that
    ``runtime.mesh.trials: auto`` spreads the (scheme, trial) pairs over the cores
    (``benchmarks/results/host_devices.json``). Call before JAX starts its backends; it does
    nothing (returns None) once they started or when the user chose the count
    (``JAX_NUM_CPU_DEVICES`` or ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``).
    Returns the device count it set. Other backends (GPU, TPU) are unaffected.
    """
    if os.environ.get("JAX_NUM_CPU_DEVICES") or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    from jax._src import xla_bridge
    if xla_bridge.backends_are_initialized():
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jax.config.update("jax_num_cpu_devices", cores)
    return cores


@dataclass(frozen=True)
class Runtime:
    """The execution choices of one compiled call (see the module docstring)."""
    formulation: str = "dense"
    trial_batching: str = "vmap"
    step_loop: str = "scan"
    vote: str = "matmul"
    conv_rule: str = "standard"
    partition_axis: str | None = None
    partition_shards: int = 1
    memory_check: bool = True

    def record(self) -> dict[str, Any]:
        """What ``run.json`` records of it."""
        return {"formulation": self.formulation, "trial_batching": self.trial_batching,
                "step_loop": self.step_loop, "vote": self.vote, "conv_rule": self.conv_rule,
                "partition_shards": self.partition_shards}


def choose(backend: str, task: Task, static: SchemeStatic, trials: int, total_steps: int,
           config: RuntimeConfig | None = None, num_params: int | None = None) -> Runtime:
    """The execution choices for ``trials`` (scheme, trial) pairs of one scheme shape (all the
    pairs of the call, however many devices share them).

    ``config`` forces choices (its ``auto`` values are left to the rules here). On the CPU:
    ``map`` for models without convolutions below :data:`CPU_VMAP_MIN_TRIALS` pairs or past
    :data:`CPU_VMAP_MAX_BYTES` of partition gradients, and always for the touched-coordinates
    formulation (its gathers and scatters run slower vmapped); convolutional models always
    ``vmap`` (XLA:CPU runs convolutions inside a loop, such as ``lax.map``'s, many times slower,
    jax-ml/jax#12868) and step from Python for the same reason; the per-partition convolution
    rule. Elsewhere (GPU, TPU): ``vmap``, ``scan``, JAX's standard convolution; a CPU path forced
    there (:data:`CPU_PATHS`) runs with a :class:`CpuPathWarning`. The fused vote
    wherever it applies: leafwise where nothing needs the flat (k, d) gradients (the adaptive placements
    do: they count flipped coordinates over all of them), except for
    convolutional models, which vote in the flat form (it compiles faster for them).
    """
    config = config if config is not None else RuntimeConfig()
    cpu = backend == "cpu"
    shards = config.mesh.partitions
    touched = touched_applies(static, task, total_steps) and shards == 1
    if config.formulation == "touched_coordinates" and not touched:
        raise ConfigError("runtime.formulation: got 'touched_coordinates'; it applies to the Amazon task with worker "
                          "momentum, no master momentum, weight decay or noise, a fixed Byzantine set, an attack of "
                          "the fused form and one partition shard only")
    formulation = ("touched_coordinates" if touched and config.formulation != "dense" else "dense")
    if num_params is None:
        num_params = int(sum(np.prod(x.shape) for x in jax.tree.leaves(jax.eval_shape(task.init,
                                                                                       jax.random.PRNGKey(0))[0])))
    if config.trial_batching != "auto":
        batching = config.trial_batching
    elif formulation == "touched_coordinates" and cpu:
        batching = "map"
    elif cpu and not task.convolutional and (trials < CPU_VMAP_MIN_TRIALS
                                             or 4 * trials * static.k * num_params > CPU_VMAP_MAX_BYTES):
        batching = "map"
    else:
        batching = "vmap"
    if config.step_loop != "auto":
        loop = config.step_loop
    else:
        loop = "python" if cpu and task.convolutional and formulation == "dense" else "scan"
    if formulation == "touched_coordinates":
        vote = "matmul"   # its own election, on the gathered columns of the touched coordinates
    elif config.vote != "auto":
        vote = config.vote
    elif fused_applies(static.n, static.k, static.attack) and shards == 1:
        leafwise = (not task.convolutional and static.aggregator == "vote" and static.worker_momentum == 0
                    and static.noise == "none" and static.placement not in ADAPTIVE_PLACEMENTS)
        vote = "leafwise" if leafwise else "fused"
    else:
        vote = "matmul"
    conv_rule = config.conv_rule if config.conv_rule != "auto" else ("per_partition" if cpu else "standard")
    if not cpu:
        chosen = {"trial_batching": batching, "step_loop": loop,
                  "conv_rule": conv_rule if task.convolutional else "standard"}
        for name, value in chosen.items():
            if (name, value) in CPU_PATHS:
                warnings.warn(f"runtime.{name}: {value} on the {backend} backend: {CPU_PATHS[name, value]}; it "
                              "runs as the config asks (same numbers), set auto for this backend's choice",
                              CpuPathWarning, stacklevel=2)
    from .sharding import PARTITIONS_AXIS
    return Runtime(formulation=formulation, trial_batching=batching, step_loop=loop, vote=vote, conv_rule=conv_rule,
                   partition_axis=PARTITIONS_AXIS if shards > 1 else None, partition_shards=shards,
                   memory_check=config.memory_check)


def make_train(static: SchemeStatic, task: Task, runtime: Runtime) -> Train:
    """The scheme shape's pure functions in the chosen formulation."""
    if runtime.formulation == "touched_coordinates":
        return make_touched_train(static, task, runtime)
    return make_dense_train(static, task, runtime)


# ------------------------------------------------------------------------------------------------
# Memory: a lower bound of what one device must hold, checked before anything compiles


def available_bytes(device: Any | None = None) -> int | None:
    """Memory the device can still allocate: the accelerator's free memory, or the host's
    ``MemAvailable`` for the CPU backend (None where it cannot be told)."""
    device = device if device is not None else jax.devices()[0]
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


def lower_bound_bytes(train: Train, runtime: Runtime, static: SchemeStatic, one_state: Any, trials: int,
                      data: tuple) -> dict[str, int]:
    """A lower bound of one device's memory for ``trials`` (scheme, trial) pairs, by part (bytes):
    the data arrays (held by every device), the pairs' states (exact: ``eval_shape`` of one trial,
    the worker momentum split under partition sharding), and, per pair stepping at the same time
    (all of them under ``vmap``, one under ``map``), the dense step's arrays: the k/shards
    partition gradients and their signs ``2 · k · d`` and the n local votes ``n · d`` (float32). The
    touched-coordinates formulation's step is O(touched coordinates): 0 here. Activations and XLA's
    temporaries come on top, so a run that passes can still need more."""
    state = _tree_bytes(one_state)
    if runtime.partition_shards > 1:
        mom = _tree_bytes(getattr(one_state, "worker_mom", ()))
        state -= mom - mom // runtime.partition_shards
    concurrent = trials if runtime.trial_batching == "vmap" else 1
    working = 0 if runtime.formulation == "touched_coordinates" else (
        4 * train.num_params * (2 * static.k // runtime.partition_shards + static.n))
    return {"data": int(sum(np.asarray(a).nbytes for a in data)), "states": trials * state,
            "step": concurrent * working}


def check_memory(need: dict[str, int], what: str, runtime: Runtime, device: Any | None = None) -> None:
    """Raise :class:`ConfigError` when a lower bound (:func:`lower_bound_bytes`) exceeds the device's
    available memory; ``what`` names the call (schemes, trials, sizes) in the message."""
    have = available_bytes(device)
    if have is None:
        return
    total = sum(need.values())
    if total > have:
        parts = ", ".join(f"{name} {value / GIB:.2f} GiB" for name, value in need.items())
        ways = ["fewer trials", "runtime.mesh.trials > 1 (more devices)"]
        if runtime.trial_batching == "vmap":
            ways.insert(1, "runtime.trial_batching: map (one trial's step at a time)")
        raise ConfigError(f"trials: {what} need at least {total / GIB:.2f} GiB on one device ({parts}) but "
                          f"{have / GIB:.2f} GiB are available on {jax.default_backend()}; try {', '.join(ways)}, "
                          "or set runtime.memory_check: false to run anyway")


def with_choices(runtime: Runtime, **changes: Any) -> Runtime:
    """A copy with some choices forced (tests and benchmarks)."""
    return replace(runtime, **changes)
