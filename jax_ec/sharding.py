"""Spreading a scheme's trials and partitions over devices with ``jax.sharding.Mesh`` and ``shard_map``.

A run's mesh (config ``runtime.mesh: {trials: M_T, partitions: M_P}``) has two axes:

* ``trials`` — the T trials are split into M_T blocks, one per device row; each device runs its
  block exactly as one device runs all trials (``vmap`` or ``lax.map``, see
  :func:`jax_ec.experiment.batch_trials`). T need not divide: the last trial is repeated to fill
  the last block (:func:`pad_trials`) and the copies are dropped from every result.
* ``partitions`` — inside a trial, each of the M_P devices computes k / M_P of the k partition
  gradients (and holds their worker momentum); the sign counts ``G[:, block] @ S_block`` combine
  with a ``psum`` over the axis (exact: small integers), the real-valued aggregators and the
  BatchNorm statistics ``all_gather`` the k partitions' values first
  (:func:`jax_ec.core.make_train`, ``update``).

Every number equals the single-device run's (tested on 8 forced host devices). Parameters,
optimizer state, the code G and the Byzantine set are replicated along ``partitions``.

Across hosts: every process joins the run first (``jax-ec run --coordinator/--num-processes/
--process-id`` or ``--distributed``, :mod:`jax_ec.distributed`; from Python,
``jax.distributed.initialize(...)`` before anything else);
``jax.devices()`` then lists every host's devices and the mesh spans them (the first
``M_T × M_P`` devices, process by process). Every process runs the same program on the same
config; the trials' results are gathered to every process before they are written.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from .config import ConfigError, MeshConfig

__all__ = ["TRIALS_AXIS", "PARTITIONS_AXIS", "mesh_shape", "make_mesh", "padded_size", "pad_trials", "state_specs",
           "named_shardings", "sharded_trials", "to_host"]

TRIALS_AXIS = "trials"
PARTITIONS_AXIS = "partitions"


def mesh_shape(cfg: MeshConfig, pairs: int | None = None) -> tuple[int, int]:
    """The mesh ``(trials, partitions)`` a call of ``pairs`` (scheme, trial) pairs runs on.

    ``trials: auto`` takes ``⌊devices / partitions⌋`` devices, at most ``pairs`` (no device idles
    on padding alone), at least one. Raises :class:`ConfigError` when the mesh needs more devices
    than this process sees.
    """
    devices = jax.device_count()
    if cfg.trials == "auto":
        trials = max(1, devices // cfg.partitions)
        if pairs is not None:
            trials = min(trials, max(1, pairs))
    else:
        trials = cfg.trials
    size = trials * cfg.partitions
    if size > devices:
        hint = (f"; on the CPU, start with XLA_FLAGS=--xla_force_host_platform_device_count={size}"
                if jax.default_backend() == "cpu" else "")
        raise ConfigError(f"runtime.mesh: asks for {size} devices (trials {trials} × partitions "
                          f"{cfg.partitions}); this process sees {devices} {jax.default_backend()} "
                          f"device(s){hint}")
    return trials, cfg.partitions


def make_mesh(shape: tuple[int, int]) -> Mesh | None:
    """A mesh ``trials × partitions`` (:func:`mesh_shape`) over the first devices (None for one device)."""
    trials, partitions = shape
    if trials * partitions == 1:
        return None
    grid = np.asarray(jax.devices()[:trials * partitions], dtype=object).reshape(trials, partitions)
    return Mesh(grid, (TRIALS_AXIS, PARTITIONS_AXIS))


def padded_size(num_trials: int, mesh: Mesh | None) -> int:
    """T rounded up to a multiple of the mesh's trials axis."""
    if mesh is None:
        return num_trials
    m = mesh.shape[TRIALS_AXIS]
    return -(-num_trials // m) * m


def pad_trials(tree: Any, size: int) -> Any:
    """Repeat the last trial (leading axis) until there are ``size`` trials."""
    def pad(x):
        extra = size - x.shape[0]
        if extra <= 0:
            return x
        return jax.numpy.concatenate([x, jax.numpy.repeat(x[-1:], extra, axis=0)])
    return jax.tree.map(pad, tree)


def state_specs(state: Any, partition_fields: tuple[str, ...] = (), split_partitions: bool = False) -> Any:
    """Partition specs of a pair-batched state: pairs on axis 0; with ``split_partitions`` the
    ``partition_fields`` (e.g. the worker momentum ``(P, k, d)``) also split over ``partitions``."""
    def specs_of(name: str | None, sub: Any) -> Any:
        split = split_partitions and name in partition_fields
        spec = P(TRIALS_AXIS, PARTITIONS_AXIS) if split else P(TRIALS_AXIS)
        return jax.tree.map(lambda _: spec, sub)

    if hasattr(state, "_fields"):
        return type(state)(*(specs_of(name, getattr(state, name)) for name in state._fields))
    return specs_of(None, state)


def named_shardings(mesh: Mesh, specs: Any) -> Any:
    """The ``NamedSharding`` of every leaf of a batched state (``specs`` from :func:`state_specs`)."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def sharded_trials(fn: Callable, mesh: Mesh, in_specs: tuple, out_specs: Any) -> Callable:
    """``shard_map`` of a function over a trials-batched state: each device runs ``fn`` on its block."""
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def to_host(x: jax.Array) -> np.ndarray:
    """A (possibly sharded, possibly multi-process) array as one NumPy array on this process."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
