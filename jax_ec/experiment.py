"""Experiments: a config → every scheme × T trials → results folder.

For each scheme the T trials run together in one compiled call (``jax.vmap`` over trial keys),
advanced chunk by chunk of ``eval_every`` steps (``lax.scan`` inside a chunk) so that a progress
bar moves and the metric is recorded at every evaluation step. Trial ``t`` uses the key
``fold_in(PRNGKey(seed), t)`` in every scheme (common random numbers: the same Byzantine draw and
data order across schemes), so scheme differences are paired.

The results folder holds ``metrics.csv`` (tidy: scheme, trial, step, simulated time, wall time,
metric), ``summary.csv`` (final metric mean with its 95% CI per scheme, steps and simulated time to
the target), ``config.yaml`` (the resolved config), ``run.json`` (versions, device, per-trial code
redundancy and Byzantine sets, and what is needed to rerun it: command line, versions, XLA flags,
config fingerprint) and ``curves.png``.

While it runs, ``<out_dir>/checkpoints/`` holds one checkpoint per scheme (:mod:`jax_ec.checkpoint`),
written after an evaluation chunk at most once a minute (``checkpoint_every_s``) and when the
scheme finishes; ``run_experiment(..., resume=True)`` skips finished schemes and
continues an interrupted one from its last chunk, ending with exactly the metrics of an
uninterrupted run. The folder is removed once every result file is written. After each chunk the
run stops with a :class:`DivergenceError` if a trial's parameters or metric stopped being finite.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
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

from .checkpoint import DEFAULT_EVERY_S, Checkpointer, config_fingerprint
from .config import ExperimentConfig, config_to_dict
from .memory import check_memory
from .sharding import TRIALS_AXIS, make_mesh, named_shardings, pad_trials, padded_size, sharded_trials, state_specs, to_host
from .results import (SchemeCurves, atomic_write_text, format_summary_table, plot_curves,
                      run_metadata, summarize, write_json, write_metrics_csv, write_summary_csv)
from .tasks import Task, make_task
from .train import Trainer, make_train, resolved_modes

__all__ = ["trial_keys", "batch_trials", "run_scheme", "run_experiment", "ExperimentResult", "DivergenceError",
           "rerun_info"]


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
    """Per trial (leading axis): every entry of every leaf of ``tree`` is finite, ``(T,)`` bool."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    if not leaves:
        return jnp.ones((jax.tree.leaves(tree)[0].shape[0],), bool)
    return jnp.stack([jnp.isfinite(x).reshape(x.shape[0], -1).all(axis=1) for x in leaves]).all(axis=0)


@functools.lru_cache(maxsize=8)
def _compiled_task_functions(task: Task, mode: str = "vmap") -> tuple[Callable, Callable]:
    """Model init and evaluation batched over trials, compiled once per task and shared by its schemes.

    The evaluation batches trials like the training (``mode``: ``vmap`` or ``lax.map``); either
    way a trial's metric does not depend on how many trials run beside it (the Amazon logits are
    summed in a fixed order for that, see :func:`jax_ec.models.logreg.logreg_logits`).
    """
    if mode == "map":
        evaluate = jax.jit(lambda params, state, x, y: jax.lax.map(
            lambda ps: task.evaluate(ps[0], ps[1], x, y), (params, state)))
    else:
        evaluate = jax.jit(jax.vmap(task.evaluate, in_axes=(0, 0, None, None)))
    return jax.jit(jax.vmap(task.init)), evaluate


def batch_trials(run: Callable, mode: str) -> Callable:
    """``run(state, data, num_steps)`` over a leading trials axis: ``jax.vmap`` or ``lax.map``.

    ``map`` runs trials one after another inside one compiled call; it is faster where vmapped
    gathers and scatters are slow (the touched-coordinates trainer on CPU). Both give every trial
    the numbers it gets alone, bit for bit (tested; see docs/reproducibility.md for what it took).
    """
    if mode == "vmap":
        return jax.vmap(run, in_axes=(0, None, None))
    if mode == "map":
        return lambda states, data, num_steps: jax.lax.map(lambda s: run(s, data, num_steps), states)
    raise ValueError(f"trial_batching: unknown mode {mode!r}; allowed: vmap, map")


class DivergenceError(RuntimeError):
    """A run whose parameters or metric stopped being finite (NaN/Inf), with where it happened.

    Attributes: ``scheme``, ``trials`` (trial indices), ``last_finite_step`` (the last evaluation
    at which every trial was finite), ``step`` (the evaluation at which some were not), ``what``
    (``"parameters"`` and/or ``"metric"``), ``checkpoint`` (the scheme's latest checkpoint, all
    finite, or ``None``) and ``checkpoint_step`` (its step).
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
    trainer: str
    redundancy: np.ndarray      # (T,) realised r of each trial's code
    max_load: np.ndarray        # (T,)
    byzantine: np.ndarray       # (T, n) bool
    resumed_from_step: int | None = None   # the checkpoint step this run continued from (None: from scratch)


def _scheme_run(trainer: Trainer, steps: np.ndarray, metric: np.ndarray, walls: np.ndarray,
                G: np.ndarray, byzantine: np.ndarray, resumed_from: int | None) -> SchemeRun:
    plan = trainer.plan
    it_time = np.array([trainer.iteration_time(g) for g in G])
    curves = SchemeCurves(
        scheme=plan.scheme, steps=steps, sim_time=it_time[:, None] * steps[None, :],
        wall_time=np.broadcast_to(np.asarray(walls, float), metric.shape).copy(),
        metric=metric, metric_name=trainer.task.metric_name, epoch=steps / plan.steps_per_epoch)
    return SchemeRun(curves, type(trainer).__name__, G.sum(axis=(1, 2)) / plan.n,
                     G.sum(axis=2).max(axis=1), np.asarray(byzantine), resumed_from)


def run_scheme(cfg: ExperimentConfig, trainer: Trainer, data: tuple,
               progress: Callable[[int], None] | None = None, *, trial_ids=None,
               checkpointer: Checkpointer | None = None) -> SchemeRun:
    """Run all trials of one scheme; ``progress(steps_done)`` is called after each chunk.

    ``trial_ids``: run only these trials (default ``range(cfg.trials)``), each with its own key
    ``fold_in(PRNGKey(seed), t)``: trial ``t`` alone gives the numbers it gets inside the batch
    (bitwise under ``trial_batching: map``). ``checkpointer``: save the state after evaluation
    chunks (see :class:`~jax_ec.checkpoint.Checkpointer`) and continue from a saved one (finished
    schemes are not rerun).
    Raises :class:`DivergenceError` when a trial's parameters or metric become non-finite.
    """
    plan = trainer.plan
    ids = np.arange(cfg.trials) if trial_ids is None else np.asarray(trial_ids, dtype=np.int64).reshape(-1)
    num_trials = len(ids)
    keys = _keys_of(cfg.seed, ids)
    steps = trainer.eval_steps()
    num_chunks = len(steps) - 1
    mode, step_loop = resolved_modes(cfg, trainer)
    task_init, task_evaluate = _compiled_task_functions(trainer.task, mode)
    init = jax.jit(jax.vmap(trainer.init))

    def initial_state(k):
        return init(k, task_init(jax.vmap(trainer.init_key)(k)))

    saved = (checkpointer.load(plan.scheme, ids, num_chunks, lambda: jax.eval_shape(initial_state, keys))
             if checkpointer is not None else None)
    if saved is not None and saved.finished:
        if progress is not None:
            progress(int(steps[-1]))
        return _scheme_run(trainer, steps, saved.metric, saved.wall, saved.G, saved.byzantine,
                           int(steps[saved.chunks_done]))

    mesh = make_mesh(cfg.mesh)
    # "python": every compiled call advances one step; run() then loops from Python.
    batched_run = batch_trials(trainer.run if step_loop == "scan" else (lambda s, d, n: trainer.step(s, d)), mode)
    model_of = jax.jit(jax.vmap(lambda s: (trainer.params_of(s), trainer.model_state_of(s),
                                           trainer.grads_finite(s))))
    if mesh is None:
        data = tuple(jnp.asarray(a) for a in data)
        run = jax.jit(batched_run, static_argnums=2, donate_argnums=0)
        evaluate_model, first_state = task_evaluate, initial_state
        host = np.asarray

        def restore(saved_state):
            return saved_state
        if step_loop == "python":
            run = _python_loop(jax.jit(lambda s, d: batched_run(s, d, 1), donate_argnums=0))
    else:
        # Each device runs its block of trials (and, under partition sharding, its block of partitions).
        padded = padded_size(num_trials, mesh)
        specs = state_specs(trainer, jax.eval_shape(initial_state, keys))
        shardings = named_shardings(mesh, specs)
        data = jax.device_put(tuple(jnp.asarray(a) for a in data), NamedSharding(mesh, P()))
        data_specs = tuple(P() for _ in data)
        run = jax.jit(lambda s, d, n: sharded_trials(lambda s_, d_: batched_run(s_, d_, n), mesh,
                                                     (specs, data_specs), specs)(s, d),
                      static_argnums=2, donate_argnums=0)
        if step_loop == "python":
            run = _python_loop(jax.jit(sharded_trials(lambda s_, d_: batched_run(s_, d_, 1), mesh,
                                                      (specs, data_specs), specs), donate_argnums=0))
        evaluate_model = jax.jit(sharded_trials(task_evaluate, mesh, (P(TRIALS_AXIS), P(TRIALS_AXIS), P(), P()),
                                                P(TRIALS_AXIS)))
        # The initial or a resumed state, padded to whole blocks of trials and placed on the mesh.
        first_state = jax.jit(lambda k: pad_trials(initial_state(k), padded), out_shardings=shardings)
        restore = jax.jit(lambda s: pad_trials(s, padded), out_shardings=shardings)

        def host(x):
            return to_host(x)[:num_trials]

    def evaluate(state):
        params, model_state, grads_ok = model_of(state)
        metric = evaluate_model(params, model_state, data[2], data[3])
        return host(metric), (host(_all_finite((params, model_state))), host(grads_ok))

    if saved is None:
        start = time.perf_counter()
        state = first_state(keys)
        first, finite = evaluate(state)
        metrics, walls, done = [first], [time.perf_counter() - start], 0
        _check_finite(plan.scheme, ids, first, finite, first, 0, 0, None)
        resumed_from = None
    else:  # continue the wall clock where the checkpoint left it
        start = time.perf_counter() - float(saved.wall[-1])
        state, done = restore(saved.state), saved.chunks_done
        metrics, walls = list(saved.metric.T), list(saved.wall)
        first = metrics[0]
        resumed_from = int(steps[done])
        if progress is not None and steps[done] > 0:
            progress(int(steps[done]))
    if checkpointer is not None:
        checkpointer.start(plan.scheme, time.perf_counter())
    for c in range(done, num_chunks):
        a, b = int(steps[c]), int(steps[c + 1])
        state = run(state, data, b - a)
        metric, finite = evaluate(state)
        saved_step = checkpointer.saved_step(plan.scheme) if checkpointer is not None else None
        _check_finite(plan.scheme, ids, metric, finite, first, a, b,
                      checkpointer.path(plan.scheme) if saved_step is not None else None, saved_step)
        metrics.append(metric)
        walls.append(time.perf_counter() - start)
        now = time.perf_counter()
        if checkpointer is not None and c + 1 < num_chunks and _agreed(checkpointer.due(plan.scheme, now)):
            checkpointer.save_progress(plan.scheme, ids, state if mesh is None else jax.tree.map(host, state),
                                       np.stack(metrics, axis=1), np.array(walls), c + 1, b, now)
        if progress is not None:
            progress(b - a)
    G, byzantine = host(state.G), host(state.byzantine)
    metric = np.stack(metrics, axis=1)
    if checkpointer is not None:
        checkpointer.save_finished(plan.scheme, ids, metric, np.array(walls), G, byzantine, num_chunks,
                                   int(steps[-1]))
    return _scheme_run(trainer, steps, metric, np.array(walls), G, byzantine, resumed_from)


def _python_loop(one_step: Callable) -> Callable:
    """``run(state, data, num_steps)`` as ``num_steps`` calls of a compiled one-step function."""
    def run(state, data, num_steps):
        for _ in range(num_steps):
            state = one_step(state, data)
        return state
    return run


def _agreed(decision: bool) -> bool:
    """Process 0's decision in a multi-process run (every process must take the same collective steps)."""
    if jax.process_count() == 1:
        return decision
    from jax.experimental import multihost_utils
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(decision)))


def _check_finite(scheme: str, ids: np.ndarray, metric: np.ndarray, finite: tuple[np.ndarray, np.ndarray],
                  first_metric: np.ndarray, last_step: int, step: int, checkpoint: Path | None = None,
                  checkpoint_step: int | None = None) -> None:
    """Raise :class:`DivergenceError` for trials with non-finite parameters, a non-finite partition
    gradient at any step so far (an honest gradient is never NaN/Inf on a healthy run; the vote
    would only void the coordinates it touches), or a non-finite metric where the initial metric
    was finite (a metric undefined from the start, e.g. an AUC on a one-class test set, is not a
    divergence). ``finite``: (parameters finite, partition gradients finite), per trial."""
    bad_params, bad_grads = ~finite[0], ~finite[1]
    bad_metric = ~np.isfinite(metric) & np.isfinite(first_metric)
    bad = bad_params | bad_grads | bad_metric
    if bad.any():
        what = " and ".join(w for w, m in (("parameters", bad_params), ("partition gradients", bad_grads),
                                           ("metric", bad_metric)) if m.any())
        raise DivergenceError(scheme, [int(t) for t in ids[bad]], last_step, step, what, checkpoint, checkpoint_step)


@dataclass(frozen=True)
class ExperimentResult:
    out_dir: Path
    summary: list[dict[str, Any]]
    runs: list[SchemeRun]

    def table(self) -> str:
        return format_summary_table(self.summary)


def _git_revision() -> dict[str, Any] | None:
    """The source checkout's commit and whether it has uncommitted changes (None outside git)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def rerun_info(cfg: ExperimentConfig, out: Path, command: str | None = None) -> dict[str, Any]:
    """What ``run.json`` records to rerun a results folder, beyond :func:`run_metadata`."""
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
        "git": _git_revision(),
        "command": command if command is not None else (shlex.join(sys.argv) if sys.argv and sys.argv[0] else None),
        "rerun": f"jax-ec run {shlex.quote(str(out / 'config.yaml'))} --out RERUN_DIR --fresh",
        "config_fingerprint": config_fingerprint(cfg),
        "environment": flags,
        "jax_config": jax_config,
        "trial_keys": f"trial t uses jax.random.fold_in(jax.random.PRNGKey({cfg.seed}), t), t = 0..{cfg.trials - 1}",
    }


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path | None = None, progress_bar: bool = True,
                   task: Task | None = None, *, resume: bool = False,
                   checkpoint_every_s: float | None = DEFAULT_EVERY_S, command: str | None = None) -> ExperimentResult:
    """Run every scheme of ``cfg`` and write the results folder; returns the summary rows.

    ``resume``: continue from the checkpoints in ``<out>/checkpoints/`` (finished schemes are not
    rerun; an interrupted one continues from its last chunk); a checkpoint of another config raises
    :class:`jax_ec.checkpoint.CheckpointError` before anything compiles. Without checkpoints it
    starts from scratch. ``resume=False`` discards existing checkpoints. ``checkpoint_every_s``:
    a running scheme's state is written after an evaluation chunk once this many seconds passed
    since its start or its last checkpoint (0: after every chunk; ``None``: no checkpoints); every
    finished scheme's curves are written. The checkpoints are removed once every result file is written. ``command``:
    the command line recorded in ``run.json`` (default: this process's ``sys.argv``).
    """
    out = Path(out_dir) if out_dir is not None else cfg.output_dir()
    checkpointer = Checkpointer(out, cfg, checkpoint_every_s) if checkpoint_every_s is not None else None
    if checkpointer is not None and resume:
        checkpointer.check_config()   # before anything is written or compiled
    make_mesh(cfg.mesh)   # enough devices for the mesh? (one clear error before anything compiles)
    writer = jax.process_index() == 0   # in a multi-process run only process 0 writes files
    if writer:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    task = task if task is not None else make_task(cfg.task, cfg.seed)
    trainers = [make_train(cfg, s, task) for s in cfg.schemes]  # validates data sizes before compiling
    if cfg.memory_check:
        check_memory(cfg, trainers, task.data())   # a run far too large for the device: one clear error
    if checkpointer is not None and not resume:
        checkpointer.clear()
    total = sum(t.plan.total_steps for t in trainers)
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, unit="step", desc=cfg.name, dynamic_ncols=True)
    runs = []
    try:
        for trainer in trainers:
            if bar is not None:
                bar.set_postfix_str(trainer.plan.scheme)
            runs.append(run_scheme(cfg, trainer, task.data(), bar.update if bar is not None else None,
                                   checkpointer=checkpointer))
    finally:
        if bar is not None:
            bar.close()
    curves = [r.curves for r in runs]
    summary = summarize(curves, cfg.target)
    if not writer:
        return ExperimentResult(out, summary, runs)
    write_metrics_csv(out / "metrics.csv", curves)
    write_summary_csv(out / "summary.csv", summary)
    atomic_write_text(out / "summary.txt", format_summary_table(summary) + "\n")
    plot_curves(out / "curves.png", curves,
                title=f"{cfg.name}: n={cfg.n}, b={cfg.b}, attack={cfg.attack}, {cfg.trials} trials")
    write_json(out / "run.json", {
        "name": cfg.name, "seed": cfg.seed, "trials": cfg.trials, "metadata": run_metadata(),
        "reproducibility": rerun_info(cfg, out, command),
        "schemes": {r.curves.scheme: {
            "trainer": r.trainer, "steps": int(r.curves.steps[-1]),
            "steps_per_epoch": t.plan.steps_per_epoch, "epochs": float(r.curves.steps[-1] / t.plan.steps_per_epoch),
            "batch_size": t.plan.batch_size, "samples_per_partition": t.plan.per_partition,
            "redundancy": r.redundancy, "redundancy_mean": float(r.redundancy.mean()),
            "max_load": r.max_load, "b": t.plan.b, "placement": t.plan.placement,
            # per_step placement redraws the set every step: no fixed set to report.
            "byzantine_workers": (None if t.plan.placement == "per_step"
                                  else [np.flatnonzero(b).tolist() for b in r.byzantine]),
            "wall_time_s": float(r.curves.wall_time[0, -1]),
            "resumed_from_step": r.resumed_from_step,
            "trial_batching": resolved_modes(cfg, t)[0], "step_loop": resolved_modes(cfg, t)[1],
            "aggregator": t.plan.aggregator, "rho": t.plan.rho, "num_params": t.num_params,
            "noise_std": t.plan.noise_std, "noise_model": t.plan.noise_model if t.plan.noise_std > 0 else None,
            "bits_per_coordinate": t.plan.bits_per_coordinate,
            "bits_per_worker_step": t.plan.bits_per_coordinate * t.num_params,
            "bits_per_worker_epoch": t.plan.bits_per_coordinate * t.num_params * t.plan.steps_per_epoch,
        } for r, t in zip(runs, trainers)},
    })
    if checkpointer is not None:
        checkpointer.clear()
    return ExperimentResult(out, summary, runs)
