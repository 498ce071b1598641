"""The driver: a config → groups of schemes → one compiled call per group → the results folder.

:func:`jax_ec.plan.make_schemes` resolves the config's schemes (sweeps expanded) into static shapes
and parameters, and :func:`jax_ec.plan.group_schemes` gathers the schemes of one shape. Each group
runs as one compiled program over its (scheme, trial) pairs: the schemes' parameters are stacked
with the trials' keys and the pairs are ``vmap``-ed or mapped (:mod:`jax_ec.runtime`), advanced
chunk by chunk of evaluation steps so that a progress bar moves and the metric is recorded at every
evaluation. Trial ``t`` uses the key ``fold_in(PRNGKey(seed), t)`` in every scheme (common random
numbers: the same Byzantine draw and data order across schemes), so scheme differences are paired.
Progress, checkpoints and the device mesh wrap that call.

The results folder holds ``metrics.csv`` (tidy: scheme, trial, step, epoch, simulated time, wall
time, metric), ``summary.csv`` (final metric mean with its 95% CI per scheme, steps, epochs and
simulated time to the target), ``config.yaml`` (the resolved config), ``run.json`` (versions,
device, per-trial code redundancy and Byzantine sets, the execution choices, and what is needed to
rerun it) and ``curves.png`` (plus ``sweep_<field>.png`` for one-dimensional sweeps).

While it runs, ``<out_dir>/checkpoints/`` holds one checkpoint per group (:mod:`jax_ec.checkpoint`),
written after an evaluation chunk at most once a minute (``checkpoint_every_s``) and when the group
finishes; ``run_experiment(..., resume=True)`` skips finished groups and continues an interrupted
one from its last chunk, ending with exactly the metrics of an uninterrupted run. The folder is
removed once every result file is written. After each chunk the run stops with a
:class:`DivergenceError` if a trial's parameters, partition gradients or metric stopped being finite.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from jax.sharding import NamedSharding, PartitionSpec as P

from . import interrupt
from ._io import atomic_write_text, git_revision, run_metadata, write_json
from .attacks import ADAPTIVE_PLACEMENTS
from .checkpoint import DEFAULT_EVERY_S, Checkpointer, CheckpointError, config_fingerprint
from .config import ExperimentConfig, config_to_dict
from .folder import ResultsFolder, check_output_dir
from .core import init_key
from .models.layers import conv_rule
from .plan import Group, Scheme, group_schemes, iteration_time, make_schemes, stack_params
from .results import (CI_METHOD, SchemeCurves, ci_method_text, format_summary_table, plot_curves, plot_sweeps, summarize,
                      write_metrics_csv, write_summary_csv)
from .runtime import Runtime, check_memory, choose, lower_bound_bytes, make_train
from .sharding import (TRIALS_AXIS, make_mesh, mesh_shape, named_shardings, pad_trials, padded_size, sharded_trials,
                       state_specs, to_host)
from .tasks import Task, make_task

__all__ = ["trial_keys", "batch_pairs", "prepare_group", "run_group", "run_experiment", "ExperimentResult",
           "DivergenceError", "rerun_info", "GroupCall", "SchemeRun"]


def trial_keys(seed: int, trials: int, first: int = 0) -> jax.Array:
    """One key per trial: ``fold_in(PRNGKey(seed), t)`` for ``t = first … first + trials − 1``.

    The same in every scheme; trial ``t``'s key does not depend on how many trials run, so
    ``trial_keys(seed, 1, first=t)`` is trial ``t``'s key alone.
    """
    return _keys_of(seed, np.arange(first, first + trials))


def _keys_of(seed: int, ids) -> jax.Array:
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda t: jax.random.fold_in(base, t))(jnp.asarray(ids, jnp.int32))


@jax.jit
def _all_finite(tree) -> jax.Array:
    """Per pair (leading axis): every entry of every leaf of ``tree`` is finite, ``(P,)`` bool."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    if not leaves:
        return jnp.ones((jax.tree.leaves(tree)[0].shape[0],), bool)
    return jnp.stack([jnp.isfinite(x).reshape(x.shape[0], -1).all(axis=1) for x in leaves]).all(axis=0)


@functools.lru_cache(maxsize=8)
def _compiled_task_functions(task: Task, mode: str = "vmap") -> tuple[Callable, Callable]:
    """Model init and evaluation batched over pairs, compiled once per task and shared by its groups.

    The evaluation batches pairs like the training (``mode``: ``vmap`` or ``lax.map``); either way
    a trial's metric does not depend on how many run beside it (the Amazon logits are summed in a
    fixed order for that, see :func:`jax_ec.models.logreg.logreg_logits`).
    """
    if mode == "map":
        evaluate = jax.jit(lambda params, state, x, y: jax.lax.map(
            lambda ps: task.evaluate(ps[0], ps[1], x, y), (params, state)))
    else:
        evaluate = jax.jit(jax.vmap(task.evaluate, in_axes=(0, 0, None, None)))
    return jax.jit(jax.vmap(task.init)), evaluate


def batch_pairs(run: Callable, mode: str) -> Callable:
    """``run(state, params, data, num_steps, start)`` over a leading (scheme, trial) pairs axis of the
    state and the params: ``jax.vmap`` or ``lax.map`` (``num_steps`` and ``start`` shared).

    ``map`` runs the pairs one after another inside one compiled call; it is faster where vmapped
    gathers and scatters are slow (the touched-coordinates formulation on the CPU). Both give every
    pair the numbers it gets alone, bit for bit (tested; docs/reproducibility.md says what it took).
    """
    if mode == "vmap":
        return lambda states, params, data, num_steps, start=None: jax.vmap(
            lambda s, p: run(s, p, data, num_steps, start))(states, params)
    if mode == "map":
        return lambda states, params, data, num_steps, start=None: jax.lax.map(
            lambda sp: run(sp[0], sp[1], data, num_steps, start), (states, params))
    raise ValueError(f"trial_batching: unknown mode {mode!r}; allowed: vmap, map")


class DivergenceError(RuntimeError):
    """A run whose parameters, partition gradients or metric stopped being finite (NaN/Inf).

    Attributes: ``scheme``, ``trials`` (trial indices), ``last_finite_step`` (the last evaluation
    at which every trial was finite), ``step`` (the evaluation at which some were not), ``what``
    (``"parameters"``, ``"partition gradients"`` and/or ``"metric"``), ``checkpoint`` (the group's
    latest checkpoint, all finite, or ``None``) and ``checkpoint_step`` (its step).
    """

    def __init__(self, scheme: str, trials: list[int], last_finite_step: int, step: int, what: str,
                 checkpoint: Path | None = None, checkpoint_step: int | None = None):
        self.scheme, self.trials, self.what, self.checkpoint = scheme, trials, what, checkpoint
        self.last_finite_step, self.step, self.checkpoint_step = last_finite_step, step, checkpoint_step
        window = (f"steps {last_finite_step + 1}..{step}" if step > last_finite_step else f"step {step}")
        kept = (f"; the checkpoint of step {checkpoint_step} is kept in {str(checkpoint)!r}"
                if checkpoint is not None else "; no checkpoint of this scheme was written before")
        super().__init__(
            f"scheme {scheme!r} diverged in {window}: trial(s) {', '.join(map(str, trials))} have non-finite "
            f"{what} (NaN/Inf) at step {step} (all finite at step {last_finite_step}){kept}; "
            "no result files were written; try a smaller step size (optim.lr or schemes[].lr)")


@dataclass(frozen=True)
class SchemeRun:
    """One scheme's curves plus what was drawn per trial."""
    curves: SchemeCurves
    scheme: Scheme
    runtime: Runtime
    trainer: str
    num_params: int
    redundancy: np.ndarray      # (T,) realised r of each trial's code
    max_load: np.ndarray        # (T,)
    byzantine: np.ndarray       # (T, n) bool
    group: int
    resumed_from_step: int | None = None   # the checkpoint step this run continued from (None: from scratch)


@dataclass(frozen=True)
class GroupCall:
    """A group ready to run: its schemes, execution choices and pure functions."""
    index: int
    group: Group
    runtime: Runtime
    train: Any
    pairs: int          # schemes × trials
    mesh: tuple[int, int] = (1, 1)   # devices along (trials, partitions)


def _check_finite(names: list[str], ids: np.ndarray, metric: np.ndarray, finite: tuple[np.ndarray, np.ndarray],
                  first_metric: np.ndarray, last_step: int, step: int, checkpoint: Path | None = None,
                  checkpoint_step: int | None = None) -> None:
    """Raise :class:`DivergenceError` for pairs with non-finite parameters, a non-finite partition
    gradient at any step so far (an honest gradient is never NaN/Inf on a healthy run; the vote
    would only void the coordinates it touches), or a non-finite metric where the initial metric
    was finite (a metric undefined from the start, e.g. an AUC on a one-class test set, is not a
    divergence). ``names``/``ids``: each pair's scheme and trial; ``finite``: (parameters finite,
    partition gradients finite), per pair. The first scheme with a bad pair is named."""
    bad_params, bad_grads = ~finite[0], ~finite[1]
    bad_metric = ~np.isfinite(metric) & np.isfinite(first_metric)
    bad = bad_params | bad_grads | bad_metric
    if bad.any():
        first = names[int(np.flatnonzero(bad)[0])]
        mine = bad & (np.asarray(names) == first)
        what = " and ".join(w for w, m in (("parameters", bad_params), ("partition gradients", bad_grads),
                                           ("metric", bad_metric)) if (m & mine).any())
        raise DivergenceError(first, [int(t) for t in ids[mine]], last_step, step, what, checkpoint, checkpoint_step)


def _agreed_int(value: int) -> int:
    """Process 0's value in a multi-process run."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils
    return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int64)))


def _agreed(decision: bool) -> bool:
    """Process 0's decision in a multi-process run (every process must take the same collective steps)."""
    if jax.process_count() == 1:
        return decision
    from jax.experimental import multihost_utils
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(decision)))


def _barrier(name: str) -> None:
    """In a multi-process run, every process waits here until all arrive."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


# Seconds of computation between two safe points of the training loop: a stop request (Ctrl-C,
# SIGTERM) waits about this long at most. A bound on the user's wait, not a tuned speed: its cost
# (one dispatch and one host sync per call) is what benchmarks/safe_points.py measures against one
# call per evaluation chunk; the default job's metrics are bitwise the same either way.
SAFE_POINT_S = 2.0


class _Pacer:
    """Steps per call: as many as take about :data:`SAFE_POINT_S`, from the last call's rate (the
    first call, which compiles, runs one step). ``fixed``: always that many. In a multi-process run
    process 0's choice is used by all."""

    def __init__(self, fixed: int | None = None):
        self.fixed, self.rate, self.calls = fixed, None, 0

    def next(self, remaining: int) -> int:
        if self.fixed is not None:
            return min(self.fixed, remaining)
        m = 1 if self.rate is None else max(1, int(SAFE_POINT_S / max(self.rate, 1e-9)))
        return int(_agreed_int(min(m, remaining)))

    def record(self, steps: int, seconds: float) -> None:
        self.calls += 1
        if self.calls > 1:          # the first call's time is mostly compilation
            self.rate = seconds / steps


def prepare_group(cfg: ExperimentConfig, index: int, group: Group, task: Task, num_trials: int | None = None
                  ) -> GroupCall:
    """Execution choices and pure functions of one group (``num_trials`` trials of each scheme)."""
    trials = cfg.trials if num_trials is None else num_trials
    pairs = len(group.schemes) * trials
    # `trials: auto` on the CPU spreads the pairs over the per-core devices only for the Amazon
    # logistic regression (1.69x faster, the same bits: benchmarks/results/host_devices.json). The
    # image models stay on one device: the digits CNN ran slower split, and the digits MLP's
    # batched products round differently with fewer pairs per device, so its ρ = 0.5 scheme gave
    # other numbers on 2 devices (host_devices_choices_by_pairs.json; docs/reproducibility.md §1).
    spread = jax.default_backend() != "cpu" or task.sparse_logreg
    mesh = mesh_shape(cfg.runtime.mesh, pairs if spread else 1)
    # The choices depend on the call's pairs, not on how many devices share them: `vmap` and `map`
    # round differently on the CPU (docs/reproducibility.md), so a choice that followed the device
    # count would make the numbers depend on the machine's cores.
    runtime = choose(jax.default_backend(), task, group.static, pairs, group.total_steps, cfg.runtime)
    return GroupCall(index, group, runtime, make_train(group.static, task, runtime), pairs, mesh)


def check_group_memory(cfg: ExperimentConfig, call: GroupCall, data: tuple) -> None:
    """Refuse, before compiling, a group that certainly cannot fit on one device."""
    one = jax.eval_shape(call.train.init, jax.random.PRNGKey(0), call.group.schemes[0].params)
    per_device = -(-call.pairs // call.mesh[0])
    need = lower_bound_bytes(call.train, call.runtime, call.group.static, one, per_device, data)
    s = call.group.static
    check_memory(need, f"{cfg.trials} trials × {len(call.group.schemes)} scheme(s) ({', '.join(call.group.names[:3])}"
                 f"{', …' if len(call.group.schemes) > 3 else ''}; d = {call.train.num_params} parameters, n = {s.n}, "
                 f"k = {s.k})", call.runtime)


def run_group(cfg: ExperimentConfig, call: GroupCall, data: tuple, progress: Callable[[int], None] | None = None, *,
              trial_ids=None, checkpointer: Checkpointer | None = None) -> list[SchemeRun]:
    """Run every (scheme, trial) pair of a group in one compiled call per evaluation chunk.

    ``progress(scheme_steps_done)`` is called after each chunk. ``trial_ids``: run only these
    trials (default ``range(cfg.trials)``), each with its own key ``fold_in(PRNGKey(seed), t)``: a
    pair gives the numbers it gets alone (bitwise under ``trial_batching: map``). ``checkpointer``:
    save the state after evaluation chunks and continue from a saved one (finished groups are not
    rerun). Raises :class:`DivergenceError` when a pair's parameters, partition gradients or metric
    become non-finite.
    """
    group, runtime, train = call.group, call.runtime, call.train
    ids = np.arange(cfg.trials) if trial_ids is None else np.asarray(trial_ids, dtype=np.int64).reshape(-1)
    num_schemes, num_trials = len(group.schemes), len(ids)
    pair_ids = np.tile(ids, num_schemes)
    pair_names = [s.name for s in group.schemes for _ in ids]
    keys = jnp.tile(_keys_of(cfg.seed, ids), (num_schemes, 1))
    params = jax.tree.map(lambda x: jnp.asarray(np.repeat(x, num_trials, axis=0)), stack_params(group.schemes))
    steps = np.asarray(group.eval_steps, dtype=np.int64)
    num_chunks = len(steps) - 1
    name = f"group{call.index}"
    mode, step_loop = runtime.trial_batching, runtime.step_loop
    task_init, task_evaluate = _compiled_task_functions(train.task, mode)
    init = jax.jit(jax.vmap(train.init))

    def initial_state(k, p):
        return init(k, p, task_init(jax.vmap(init_key)(k)))

    saved = (checkpointer.load(name, group.names, ids, steps, lambda: jax.eval_shape(initial_state, keys, params))
             if checkpointer is not None else None)
    if jax.process_count() > 1:   # every process continues from process 0's checkpoint, or none does
        seen = -1 if saved is None else 2 * saved.steps_done + int(saved.finished)
        agreed = _agreed_int(seen)
        if agreed != seen:
            def what(code: int) -> str:
                return ("no checkpoint" if code < 0 else
                        f"the {'finished' if code % 2 else 'step ' + str(code // 2)} checkpoint")
            raise CheckpointError(f"checkpoints: process {jax.process_index()} reads {what(seen)} of {name} in "
                                  f"{str(checkpointer.path(name))!r} but process 0 reads {what(agreed)}; every "
                                  "process must see the results folder (--out) on a filesystem they share")
    if saved is not None and saved.finished:
        if progress is not None:
            progress(int(steps[-1]) * num_schemes)
        return _scheme_runs(call, steps, saved.metric, saved.wall, saved.G, saved.byzantine, num_trials,
                            int(steps[saved.chunks_done]))

    mesh = make_mesh(call.mesh)
    batched_run = batch_pairs(train.run, mode)
    model_of = jax.jit(jax.vmap(lambda s, p: (*train.model(s, p), train.grads_finite(s))))
    # One compiled program advances any number of steps (a traced count); the python step loop
    # compiles one step without a loop around it (XLA:CPU runs convolution gradients slowly in loops).
    one_call = step_loop == "python"
    with conv_rule(runtime.conv_rule):
        if mesh is None:
            data = tuple(jnp.asarray(a) for a in data)
            if one_call:
                run = jax.jit(lambda s, p, d, n, t: batched_run(s, p, d, 1, t), donate_argnums=0)
            else:
                run = jax.jit(batched_run, donate_argnums=0)
            evaluate_model, first_state = task_evaluate, initial_state
            host = np.asarray

            def restore(saved_state):
                return saved_state
        else:
            # Each device runs its block of pairs (and, under partition sharding, its block of partitions).
            padded = padded_size(call.pairs, mesh)
            specs = state_specs(jax.eval_shape(initial_state, keys, params), train.partition_fields,
                                runtime.partition_axis is not None)
            shardings = named_shardings(mesh, specs)
            unpadded = params
            params = jax.device_put(pad_trials(params, padded), NamedSharding(mesh, P(TRIALS_AXIS)))
            data = jax.device_put(tuple(jnp.asarray(a) for a in data), NamedSharding(mesh, P()))
            data_specs = tuple(P() for _ in data)
            param_specs = jax.tree.map(lambda _: P(TRIALS_AXIS), params)
            if one_call:
                body = sharded_trials(lambda s_, p_, d_, t_: batched_run(s_, p_, d_, 1, t_), mesh,
                                      (specs, param_specs, data_specs, P()), specs)
                run = jax.jit(lambda s, p, d, n, t: body(s, p, d, t), donate_argnums=0)
            else:
                run = jax.jit(sharded_trials(batched_run, mesh, (specs, param_specs, data_specs, P(), P()), specs),
                              donate_argnums=0)
            evaluate_model = jax.jit(sharded_trials(task_evaluate, mesh,
                                                    (P(TRIALS_AXIS), P(TRIALS_AXIS), P(), P()), P(TRIALS_AXIS)))
            model_of = jax.jit(sharded_trials(jax.vmap(lambda s, p: (*train.model(s, p), train.grads_finite(s))),
                                              mesh, (specs, param_specs), P(TRIALS_AXIS)))
            # The initial or a resumed state, padded to whole blocks of pairs and placed on the mesh.
            first_state = jax.jit(lambda k, _: pad_trials(initial_state(k, unpadded), padded), out_shardings=shardings)
            restore = jax.jit(lambda s: pad_trials(s, padded), out_shardings=shardings)

            def host(x):
                return to_host(x)[:call.pairs]

        def evaluate(state):
            model_params, model_state, grads_ok = model_of(state, params)
            metric = evaluate_model(model_params, model_state, data[2], data[3])
            return host(metric), (host(_all_finite((model_params, model_state))), host(grads_ok))

        def save(state, at: int, chunks_done: int) -> None:
            checkpointer.save_progress(name, group.names, ids, state if mesh is None else jax.tree.map(host, state),
                                       np.stack(metrics, axis=1), np.array(walls), chunks_done, at,
                                       time.perf_counter())

        def stop_message(at: int | None) -> str:
            where = (f"group {call.index} ({', '.join(group.names[:3])}{', …' if num_schemes > 3 else ''}) saved at "
                     f"step {at} of {int(steps[-1])}" if at is not None else "no progress of the running group saved")
            return where

        interrupt.check(stop_message(None))   # a request that came during the set-up: nothing to save yet
        if saved is None:
            start = time.perf_counter()
            state = first_state(keys, params)
            first, finite = evaluate(state)
            metrics, walls, done, at = [first], [time.perf_counter() - start], 0, 0
            _check_finite(pair_names, pair_ids, first, finite, first, 0, 0, None)
            resumed_from = None
        else:  # continue the wall clock where the checkpoint left it
            start = time.perf_counter() - float(saved.wall[-1])
            state, done, at = restore(saved.state), saved.chunks_done, saved.steps_done
            metrics, walls = list(saved.metric.T), list(saved.wall)
            first = metrics[0]
            resumed_from = at
            if progress is not None and at > 0:
                progress(at * num_schemes)
        if checkpointer is not None:
            checkpointer.start(name, time.perf_counter())
        pace = _Pacer(1 if one_call else None)
        for c in range(done, num_chunks):
            a, b = int(steps[c]), int(steps[c + 1])
            while at < b:
                # A call of m steps; between two calls the state is consistent: a safe point.
                m = pace.next(b - at)
                tick = time.perf_counter()
                state = run(state, params, data, np.int32(m), np.int32(at))
                jax.block_until_ready(state)
                pace.record(m, time.perf_counter() - tick)
                at += m
                if progress is not None:
                    progress(m * num_schemes)
                if at < b and _agreed(interrupt.requested() is not None):
                    if checkpointer is not None:
                        save(state, at, c)
                    interrupt.check(stop_message(at if checkpointer is not None else None))
            metric, finite = evaluate(state)
            saved_step = checkpointer.saved_step(name) if checkpointer is not None else None
            _check_finite(pair_names, pair_ids, metric, finite, first, a, b,
                          checkpointer.path(name) if saved_step is not None else None, saved_step)
            metrics.append(metric)
            walls.append(time.perf_counter() - start)
            now = time.perf_counter()
            stopping = _agreed(interrupt.requested() is not None)
            if checkpointer is not None and c + 1 < num_chunks and (stopping or _agreed(checkpointer.due(name, now))):
                save(state, b, c + 1)
            if stopping and c + 1 < num_chunks:
                interrupt.check(stop_message(b if checkpointer is not None else None))
        G, byzantine = host(state.G), host(state.byzantine)
    metric = np.stack(metrics, axis=1)
    if checkpointer is not None:
        checkpointer.save_finished(name, group.names, ids, metric, np.array(walls), G, byzantine, num_chunks,
                                   int(steps[-1]))
    return _scheme_runs(call, steps, metric, np.array(walls), G, byzantine, num_trials, resumed_from)


def _scheme_runs(call: GroupCall, steps: np.ndarray, metric: np.ndarray, walls: np.ndarray, G: np.ndarray,
                 byzantine: np.ndarray, num_trials: int, resumed_from: int | None) -> list[SchemeRun]:
    """The group's (pairs, E) results cut into one :class:`SchemeRun` per scheme."""
    runs = []
    task = call.train.task
    for i, scheme in enumerate(call.group.schemes):
        rows = slice(i * num_trials, (i + 1) * num_trials)
        Gs = np.asarray(G[rows])
        it_time = np.array([iteration_time(scheme, g, call.train.num_params) for g in Gs])
        m = np.asarray(metric[rows])
        curves = SchemeCurves(
            scheme=scheme.name, steps=steps, sim_time=it_time[:, None] * steps[None, :],
            wall_time=np.broadcast_to(np.asarray(walls, float), m.shape).copy(), metric=m,
            metric_name=task.metric_name, epoch=steps / scheme.static.steps_per_epoch)
        runs.append(SchemeRun(curves, scheme, call.runtime,
                              "touched_coordinates" if call.runtime.formulation == "touched_coordinates" else "dense",
                              call.train.num_params, Gs.sum(axis=(1, 2)) / scheme.static.n, Gs.sum(axis=2).max(axis=1),
                              np.asarray(byzantine[rows]), call.index, resumed_from))
    return runs


@dataclass(frozen=True)
class ExperimentResult:
    out_dir: Path
    summary: list[dict[str, Any]]
    runs: list[SchemeRun]

    def table(self) -> str:
        return format_summary_table(self.summary)


def rerun_info(cfg: ExperimentConfig, out: Path, command: str | None = None) -> dict[str, Any]:
    """What ``run.json`` records to rerun a results folder, beyond :func:`jax_ec._io.run_metadata`."""
    from . import __version__
    flags = {name: os.environ.get(name) for name in
             ("XLA_FLAGS", "JAX_PLATFORMS", "JAX_ENABLE_X64", "JAX_DEFAULT_MATMUL_PRECISION",
              "JAX_THREEFRY_PARTITIONABLE", "CUDA_VISIBLE_DEVICES") if os.environ.get(name) is not None}
    jax_config = {}
    for name in ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable",
                 "jax_default_matmul_precision"):
        try:
            value = getattr(jax.config, name)
        except AttributeError:
            continue
        jax_config[name] = value if isinstance(value, (bool, int, float, str, type(None))) else str(value)
    return {
        "jax_ec_version": __version__,
        "git": git_revision(),
        "command": command if command is not None else (shlex.join(sys.argv) if sys.argv and sys.argv[0] else None),
        "rerun": f"jax-ec run {shlex.quote(str(out / 'config.yaml'))} --out RERUN_DIR --fresh",
        "config_fingerprint": config_fingerprint(cfg),
        "environment": flags,
        "jax_config": jax_config,
        "trial_keys": f"trial t uses jax.random.fold_in(jax.random.PRNGKey({cfg.seed}), t), t = 0..{cfg.trials - 1}",
    }


def _scheme_record(r: SchemeRun) -> dict[str, Any]:
    s = r.scheme
    return {
        "trainer": r.trainer, "group": r.group, "steps": int(r.curves.steps[-1]),
        "swept_from": s.parent if s.point else None, "sweep_point": dict(s.point) if s.point else None,
        "steps_per_epoch": s.static.steps_per_epoch, "epochs": float(r.curves.steps[-1] / s.static.steps_per_epoch),
        "batch_size": s.static.batch, "samples_per_partition": s.static.per_partition,
        "redundancy": r.redundancy, "redundancy_mean": float(r.redundancy.mean()),
        "max_load": r.max_load, "b": s.b, "attack": s.attack, "placement": s.static.placement,
        "attack_scale": float(s.params.attack_scale) if s.attack == "ipm" else None,
        # per_step and the adaptive placements choose the set every step: no fixed set to report.
        "byzantine_workers": (None if s.static.placement in ("per_step", *ADAPTIVE_PLACEMENTS)
                              else [np.flatnonzero(b).tolist() for b in r.byzantine]),
        "wall_time_s": float(r.curves.wall_time[0, -1]),
        "resumed_from_step": r.resumed_from_step,
        "runtime": r.runtime.record(), "trial_batching": r.runtime.trial_batching, "step_loop": r.runtime.step_loop,
        "aggregator": s.static.aggregator, "rho": s.rho, "num_params": r.num_params,
        "noise_std": float(s.params.noise_std), "noise_model": s.static.noise if s.static.noise != "none" else None,
        "bits_per_coordinate": s.bits_per_coordinate,
        "bits_per_worker_step": s.bits_per_coordinate * r.num_params,
        "bits_per_worker_epoch": s.bits_per_coordinate * r.num_params * s.static.steps_per_epoch,
    }


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path | None = None, progress_bar: bool = True,
                   task: Task | None = None, *, resume: bool = False, fresh: bool = False, wait: bool = False,
                   checkpoint_every_s: float | None = DEFAULT_EVERY_S, command: str | None = None,
                   handle_signals: bool = True) -> ExperimentResult:
    """Run every scheme of ``cfg`` (one compiled call per group) and publish the results folder.

    The folder is a transaction (:mod:`jax_ec.folder`): nothing in it changes until every result
    file is written, then they appear together; a folder in use by another run raises
    :class:`jax_ec.folder.FolderBusyError` (``wait=True``: wait for it); a folder holding another
    config's results raises :class:`jax_ec.folder.FolderError` naming the fields that differ,
    unless ``fresh=True`` (start from step 0 and replace them once this run publishes).

    ``resume``: continue from the checkpoints in ``<out>/.jax_ec/checkpoints/`` (finished groups
    are not rerun; an interrupted one continues from the step it was saved at); a checkpoint of
    another config raises :class:`jax_ec.checkpoint.CheckpointError` before anything compiles.
    ``resume=False`` discards existing checkpoints. ``checkpoint_every_s``: a running group's state
    is written after an evaluation once this many seconds passed since its start or its last
    checkpoint (0: after every evaluation; ``None``: no checkpoints); every finished group's curves
    are written. ``command``: the command line recorded in ``run.json`` (default: ``sys.argv``).
    ``handle_signals``: from the main thread, Ctrl-C and ``SIGTERM`` stop the run at the next safe
    point, save the running group's state and raise :class:`jax_ec.interrupt.Interrupted`
    (:mod:`jax_ec.interrupt`).
    """
    out = Path(out_dir) if out_dir is not None else cfg.output_dir()
    writer = jax.process_index() == 0   # in a multi-process run only process 0 writes files
    if writer:
        check_output_dir(out)           # before anything is read, compiled or locked
    mesh_shape(cfg.runtime.mesh)        # enough devices for the mesh? (one clear error before anything compiles)
    signals = interrupt.stop_requests() if handle_signals else contextlib.nullcontext()
    with ResultsFolder(out, wait=wait, writer=writer) as folder, signals:
        fingerprint = config_fingerprint(cfg)
        if writer and not fresh:
            folder.refuse_other_config(config_to_dict(cfg), fingerprint)
        checkpointer = (Checkpointer(folder.checkpoints, cfg, checkpoint_every_s)
                        if checkpoint_every_s is not None else None)
        if checkpointer is not None and resume and not fresh:
            checkpointer.check_config(config_to_dict(cfg))   # before anything is compiled
        task = task if task is not None else make_task(cfg.task, cfg.seed)
        groups = group_schemes(make_schemes(cfg, task.num_train))   # data-size errors before compiling
        calls = [prepare_group(cfg, i, g, task) for i, g in enumerate(groups)]
        for call in calls:
            if call.runtime.memory_check:
                check_group_memory(cfg, call, task.data())   # a run far too large for the device: one clear error
        if checkpointer is not None and (fresh or not resume):
            checkpointer.clear()
        if checkpointer is not None:
            checkpointer.note_config(config_to_dict(cfg))
        _barrier("jax_ec checkpoints")   # the other processes read checkpoints once process 0 cleared or kept them
        total = sum(g.total_steps * len(g.schemes) for g in groups)
        bar = None
        if progress_bar:
            from tqdm.auto import tqdm
            bar = tqdm(total=total, unit="step", desc=cfg.name, dynamic_ncols=True)
        runs: list[SchemeRun] = []
        try:
            for call in calls:
                interrupt.check(_stopped(runs, cfg, "the next group had not started"))
                if bar is not None:
                    bar.set_postfix_str(", ".join(call.group.names[:2]) + (", …" if len(call.group.schemes) > 2 else ""))
                try:
                    runs.extend(run_group(cfg, call, task.data(), bar.update if bar is not None else None,
                                          checkpointer=checkpointer))
                except interrupt.Interrupted as stop:
                    raise interrupt.Interrupted(stop.signum, _stopped(runs, cfg, stop.message)) from None
        finally:
            if bar is not None:
                bar.close()
        order = {s.name: i for i, s in enumerate(cfg.expanded_schemes())}
        runs.sort(key=lambda r: order[r.curves.scheme])
        curves = [r.curves for r in runs]
        summary = summarize(curves, cfg.target)
        if not writer:
            return ExperimentResult(out, summary, runs)
        stage = folder.stage()
        atomic_write_text(stage / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        write_metrics_csv(stage / "metrics.csv", curves)
        write_summary_csv(stage / "summary.csv", summary)
        atomic_write_text(stage / "summary.txt", format_summary_table(summary) + "\n")
        plot_curves(stage / "curves.png", curves,
                    title=f"{cfg.name}: n={cfg.n}, b={cfg.b}, attack={cfg.attack}, {cfg.trials} trials")
        plot_sweeps(stage, summary, {r.curves.scheme: (r.scheme.parent, r.scheme.point) for r in runs}, title=cfg.name)
        write_json(stage / "run.json", {
            "name": cfg.name, "seed": cfg.seed, "trials": cfg.trials, "metadata": run_metadata(),
            "ci_method": CI_METHOD, "ci_note": ci_method_text([task.metric_name]),
            "reproducibility": rerun_info(cfg, out, command),
            "groups": [{"schemes": list(c.group.names), "runtime": c.runtime.record(), "pairs": c.pairs,
                        "mesh": {"trials": c.mesh[0], "partitions": c.mesh[1]}} for c in calls],
            "schemes": {r.curves.scheme: _scheme_record(r) for r in runs},
        })
        folder.publish()
        if checkpointer is not None:
            checkpointer.clear()
    return ExperimentResult(out, summary, runs)


def _stopped(runs: list[SchemeRun], cfg: ExperimentConfig, where: str) -> str:
    """The one line a stopped run reports: what finished, what was saved, how to resume."""
    total = len(cfg.expanded_schemes())
    return (f"interrupted; {len(runs)} of {total} schemes done ({where}); "
            "resume with the same command (finished schemes are not rerun)")
