"""Shared pieces of the step-timing benchmarks (step_ratio, redundancy_sweep, trials_sweep,
vote_kernel, paper_loop): the benchmark models built through the library's own config/task/trainer
path, the "plain" one-gradient step they are compared against, an interleaved timer, the
environment record and the JSON/table output.

Timing convention (every script): each measured function is jitted, called once as a warm-up (its
time, compilation included, is kept as ``first_s``), then called ``repeats`` times, the functions
of one comparison interleaved round by round (A B C, B C A, C A B, …) so that a slow spell of the shared machine
hits all of them alike; every call ends with ``jax.block_until_ready``. Reported: the median and
the minimum over the repeats, per call and per unit (step, trial-step); ratios are taken between
functions timed in the same run.

Models (``build``):

* ``amazon``: the default job (``jax_ec/default.yaml``: the paper's Amazon logistic regression,
  b = 5, directional attack, worker momentum 0.9), ``make_train`` picks the touched-coordinates
  ``SparseLogRegTrainer``;
* ``mlp``: ``configs/digits_byzantine40.yaml`` with ``task.model: mlp`` (8×8 digits, one hidden
  layer of 128 units, b = 6 reverse, master momentum 0.9, weight decay 1e-4, minibatch split);
* ``cnn``: the same config with its CNN;
* ``synthetic``: the same cluster and optimizer on the synthetic Gaussian-mixture task (16
  features, MLP 16-64-4);
* ``logreg``: the same, with no hidden layer: a small (multinomial) logistic regression, 16 → 4
  (d = 68);
* ``resnet18``: ``configs/paper/fig4_n15_b3.yaml`` (ResNet-18, b = 3 reverse, augmentation
  on) on *random* CIFAR-shaped data (uint8 32×32×3, 10 classes): TFDS data are not available
  offline, so the library's own image-task builder (``jax_ec.tasks._images``) is run with its data
  loader swapped for the random arrays (:func:`random_cifar`).

Every model runs one scheme, ``bernoulli`` with redundancy ``r`` over ``n`` workers (k = n
partitions), with the global minibatch ``batch``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_ec._io import git_revision, run_metadata, write_json
from jax_ec.config import ExperimentConfig, config_to_dict, load_config
from jax_ec.core import batch_rows, master_update, partition_grads
from jax_ec.plan import make_schemes
from jax_ec.runtime import choose, make_train
from jax_ec.schedule import lr_at
from jax_ec.tasks import Task, make_task

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = ROOT / "configs"
MODELS = ("amazon", "mlp", "cnn", "synthetic", "logreg", "resnet18")

# ------------------------------------------------------------------------------------------------
# Models


def random_cifar(num_train: int, num_test: int = 256, seed: int = 0):
    """Random uint8 CIFAR-shaped images (32×32×3) and labels (10 classes) as an ``ImageData``."""
    from jax_ec.data.images import CIFAR10_MEAN, CIFAR10_STD, ImageData
    rng = np.random.default_rng(seed)
    return ImageData(
        train_x=rng.integers(0, 256, (num_train, 32, 32, 3), dtype=np.uint8),
        train_y=rng.integers(0, 10, num_train).astype(np.int32),
        test_x=rng.integers(0, 256, (num_test, 32, 32, 3), dtype=np.uint8),
        test_y=rng.integers(0, 10, num_test).astype(np.int32),
        num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD)


@contextlib.contextmanager
def _image_data_replaced(data):
    """Make ``jax_ec.tasks`` build its image task from ``data`` instead of loading TFDS."""
    import jax_ec.tasks as tasks_module
    if not hasattr(tasks_module, "_image_data"):
        raise RuntimeError("jax_ec.tasks._image_data is gone: update benchmarks/_timing.random_cifar's hook")
    original = tasks_module._image_data
    tasks_module._image_data = lambda cfg: data
    try:
        yield
    finally:
        tasks_module._image_data = original


def scheme_override(r: float, nonempty_rows: bool) -> str:
    name = f"bernoulli_r{r:g}"
    return (f"schemes=[{{name: '{name}', code: bernoulli, r: {float(r)}, "
            f"nonempty_rows: {str(nonempty_rows).lower()}}}]")


def build(model: str, *, n: int = 15, r: float = 2.0, batch: int = 240, mlp_width: int | None = None,
          resnet_train: int = 2000, seed: int = 0, extra: tuple[str, ...] = ()) -> tuple[ExperimentConfig, Task]:
    """The config and task of a benchmark model (see the module docstring), through ``load_config``."""
    common = [f"n={n}", f"batch_size={batch}", f"seed={seed}", "trials=1", "epochs=1"]
    if model == "amazon":
        cfg, _ = load_config(None, [*common, scheme_override(r, False), *extra])
        return cfg, make_task(cfg.task, cfg.seed)
    if model in ("mlp", "cnn", "synthetic", "logreg"):
        over = [*common, scheme_override(r, True)]
        if model in ("synthetic", "logreg"):
            over += ["task.name=synthetic", "task.model=null", "task.shuffle=true"]
            if model == "logreg":
                over += ["task.hidden=[]"]
        else:
            over += [f"task.model={model}"]
            if mlp_width is not None:
                over += [f"task.width={mlp_width}"]
        cfg, _ = load_config(CONFIGS / "digits_byzantine40.yaml", [*over, *extra])
        return cfg, make_task(cfg.task, cfg.seed)
    if model == "resnet18":
        cfg, _ = load_config(CONFIGS / "paper" / "fig4_n15_b3.yaml",
                             [*common, scheme_override(r, True), *extra])
        with _image_data_replaced(random_cifar(resnet_train, seed=seed)):
            task = make_task(cfg.task, cfg.seed)
        return cfg, task
    raise ValueError(f"model: unknown {model!r}; allowed: {', '.join(MODELS)}")


@dataclass
class Trainer:
    """One scheme's pure functions (:class:`jax_ec.core.Train`) bound to its parameters, with the
    execution choices :func:`jax_ec.runtime.choose` makes for one trial (``choices`` forced)."""
    cfg: ExperimentConfig
    task: Task
    choices: dict = field(default_factory=dict)

    def __post_init__(self):
        self.scheme = make_schemes(self.cfg, self.task.num_train)[0]
        self.static = self.scheme.static
        self.runtime = self.runtime_for(1)
        self.train = make_train(self.static, self.task, self.runtime)
        self.params = jax.tree.map(jnp.asarray, self.scheme.params)
        self.num_params = self.train.num_params
        self.kind = self.runtime.formulation

    def runtime_for(self, trials: int):
        return choose(jax.default_backend(), self.task, self.static, trials, self.scheme.total_steps,
                      self.cfg.runtime.model_copy(update=self.choices))

    def preferred_batching(self, trials: int) -> str:
        return self.runtime_for(trials).trial_batching

    def init(self, key):
        return self.train.init(key, self.params)

    def step(self, state, data):
        return self.train.step(state, self.params, data)

    def run(self, state, data, num_steps):
        return self.train.run(state, self.params, data, num_steps)

    def model(self, state):
        return self.train.model(state, self.params)

    def batch_rows(self, key, step):
        return batch_rows(self.static, self.task.num_train, key, step)

    def partition_grads(self, params, model_state, xs, ys, key):
        return partition_grads(self.task.loss, params, model_state, xs, ys, key)

    def master(self, step) -> optax.GradientTransformation:
        """The master's optax update at ``step`` (the scheme's step size then), as the trainer's."""
        return master_update(self.static, lr_at(self.params.lr, self.params.lr_boundaries, step))


def trainer_of(cfg: ExperimentConfig, task: Task, **choices) -> Trainer:
    """The config's (single) scheme, bound to its parameters (``choices``: runtime choices forced,
    e.g. ``formulation="dense"``)."""
    return Trainer(cfg, task, choices)


def device_data(task: Task) -> tuple[jax.Array, ...]:
    """The task's arrays on the device (arguments of the compiled functions, not constants)."""
    return tuple(jnp.asarray(a) for a in task.data())


def trial_key(seed: int, trial: int = 0) -> jax.Array:
    """Trial ``trial``'s key, as ``jax_ec.experiment.trial_keys`` draws it."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), trial)


# ------------------------------------------------------------------------------------------------
# The plain one-gradient step and the partition-gradient step (for the breakdown)


class PlainState(NamedTuple):
    params: Any
    model_state: Any
    opt_state: Any
    step: jax.Array
    data_key: jax.Array
    augment_key: jax.Array


class Stepper(NamedTuple):
    """A measured step: ``step(state, data) -> state`` and ``run(state, data, num_steps)``
    (``lax.scan`` of it, as ``Trainer.run``)."""
    step: Callable
    run: Callable


def _scan_run(step: Callable) -> Callable:
    def run(s, data, num_steps):
        return jax.lax.scan(lambda c, _: (step(c, data), None), s, None, length=num_steps)[0]
    return run


def trainer_stepper(trainer: Trainer) -> Stepper:
    """The trainer's own step and run (the election step)."""
    return Stepper(trainer.step, trainer.run)


def plain_fns(trainer: Trainer) -> tuple[Callable, Stepper]:
    """``(init, stepper)`` of the plain step: one ``jax.grad`` of the task's mean loss over the whole
    global minibatch (the same rows ``trainer.batch_rows`` gives the k partitions, concatenated),
    then the trainer's own optax update (same step size schedule, momentum, weight decay). No sign,
    no vote, no worker momentum.
    """
    task = trainer.task

    def init(key):
        keys = jax.random.split(key, 7)   # the trainer's split: init key 2, data 3, augmentation 6
        params, model_state = task.init(keys[2])
        return PlainState(params, model_state, trainer.master(0).init(params), jnp.int32(0), keys[3], keys[6])

    def step(s: PlainState, data) -> PlainState:
        rows = trainer.batch_rows(s.data_key, s.step).reshape(-1)
        x, y = data[0][rows], data[1][rows]
        key = jax.random.fold_in(s.augment_key, s.step)
        grads, model_state = jax.grad(lambda p: task.loss(p, s.model_state, x, y, key), has_aux=True)(s.params)
        updates, opt_state = trainer.master(s.step).update(grads, s.opt_state, s.params)
        return s._replace(params=optax.apply_updates(s.params, updates), model_state=model_state,
                          opt_state=opt_state, step=s.step + 1)

    return init, Stepper(step, _scan_run(step))


def partition_mean_stepper(trainer: Trainer) -> Stepper:
    """The direct trainer's step with the sign and the election taken out (state: ``trainer.init``'s):
    the k partition gradients (``trainer.partition_grads``, vmapped, raveled) are averaged and
    unraveled into the same optax update. Its time minus the plain step's is the cost of
    per-partition gradients; the election step's minus its is the cost of sign + election (+ worker
    momentum, if any)."""
    from jax.flatten_util import ravel_pytree

    def step(s, data):
        rows = trainer.batch_rows(s.keys.data, s.step)
        g, model_state = trainer.partition_grads(s.params, s.model_state, data[0][rows], data[1][rows],
                                                 jax.random.fold_in(s.keys.augment, s.step))
        _, unravel = ravel_pytree(s.params)
        # The mean as a matmul with a ones vector: XLA:CPU runs g.mean(axis=0) over (k, d) ~20x slower.
        mean = jnp.ones((g.shape[0],), g.dtype) @ g / g.shape[0]
        updates, opt_state = trainer.master(s.step).update(unravel(mean), s.opt_state, s.params)
        return s._replace(params=optax.apply_updates(s.params, updates), model_state=model_state,
                          opt_state=opt_state, step=s.step + 1)

    return Stepper(step, _scan_run(step))


class RowsState(NamedTuple):
    data_key: jax.Array
    step: jax.Array
    checksum: jax.Array


def rows_fns(trainer: Trainer) -> tuple[Callable, Stepper]:
    """``(init, stepper)`` of the row selection alone (``trainer.batch_rows`` per step, its rows summed
    into a checksum so that XLA keeps it): the part of every step that the plain and the election
    step share and that does not depend on the model (with ``task.shuffle`` it evaluates the epoch's
    keyed permutation of the training set at the step's positions)."""
    def init(key):
        return RowsState(jax.random.split(key, 7)[3], jnp.int32(0), jnp.int32(0))

    def step(c, data):
        rows = trainer.batch_rows(c.data_key, c.step)
        return c._replace(step=c.step + 1, checksum=c.checksum + rows.sum())

    return init, Stepper(step, _scan_run(step))


def compiled_run(run: Callable) -> Callable:
    """``jax.jit(run, static_argnums=2, donate_argnums=0)``: ``run(state, data, num_steps)``."""
    return jax.jit(run, static_argnums=2, donate_argnums=0)


def chained(fn: Callable, state: Any, *args) -> Callable[[], Any]:
    """A thunk calling ``state = fn(state, *args)`` (the state is carried from call to call)."""
    box = [state]

    def call():
        box[0] = fn(box[0], *args)
        return box[0]

    return call


CONV_MODELS = ("cnn", "resnet18")
TIMING_MODES = ("auto", "run", "step")


def timing_mode(model: str, requested: str = "auto") -> str:
    """How a step is timed: ``run`` (``run(state, data, S)`` under one jit: ``lax.scan`` over S steps)
    or ``step`` (``jax.jit(step)`` called S times from Python, dispatched asynchronously, then one
    ``block_until_ready``). ``auto``: ``step`` for convolutional models on CPU, where XLA:CPU runs a
    convolution's weight gradient 50-70x slower inside a loop body (jax-ml/jax#12868; see
    step_ratio's ``--timing``), else ``run``."""
    if requested != "auto":
        return requested
    return "step" if model in CONV_MODELS and jax.default_backend() == "cpu" else "run"


def describe_mode(mode: str, steps: int) -> str:
    if mode == "run":
        return f"run(state, data, {steps}) under jit (lax.scan over {steps} steps), call time / {steps}"
    return f"jax.jit(step) called {steps} time(s) from Python (async dispatch), then block_until_ready; / {steps}"


def step_call(stepper: Stepper, state: Any, data: tuple, steps: int, mode: str) -> Callable[[], Any]:
    """A thunk advancing ``state`` (carried from call to call, donated) by ``steps`` steps."""
    if mode == "run":
        return chained(compiled_run(stepper.run), state, data, steps)
    step = jax.jit(stepper.step, donate_argnums=0)
    box = [state]

    def call():
        for _ in range(steps):
            box[0] = step(box[0], data)
        return box[0]

    return call


def shared_step_call(trainer: Trainer, state: Any, data: tuple, steps: int, mode: str,
                     cache: dict) -> Callable[[], Any]:
    """:func:`step_call` of ``trainer``'s election step with the scheme's parameters (code, b, step
    sizes) an argument of the compiled function, not a constant: trainers of one scheme shape
    (``trainer.static``), e.g. the redundancies of a sweep, share one compilation, kept in
    ``cache`` (one dict per shape)."""
    if cache.setdefault("static", trainer.static) != trainer.static:
        raise ValueError("shared_step_call: the trainers of one cache must share their SchemeStatic")
    if "fn" not in cache:
        train = trainer.train
        cache["fn"] = (jax.jit(lambda s, p, d: train.run(s, p, d, steps), donate_argnums=0) if mode == "run"
                       else jax.jit(train.step, donate_argnums=0))
    fn, params, box = cache["fn"], trainer.params, [state]

    def call():
        for _ in range(1 if mode == "run" else steps):
            box[0] = fn(box[0], params, data)
        return box[0]

    return call


# ------------------------------------------------------------------------------------------------
# Timing


@dataclass
class Timing:
    """Seconds of one measured function: the warm-up call and the timed calls; ``units`` per call."""
    first_s: float
    times_s: list[float] = field(default_factory=list)
    units: int = 1

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def median_ms_per_unit(self) -> float:
        return 1e3 * self.median_s / self.units

    @property
    def min_ms_per_unit(self) -> float:
        return 1e3 * self.min_s / self.units

    def to_dict(self) -> dict:
        return {"warmup_s_incl_compile": self.first_s, "units_per_call": self.units, "repeats": len(self.times_s),
                "times_s": self.times_s, "median_s": self.median_s, "min_s": self.min_s,
                "median_ms_per_unit": self.median_ms_per_unit, "min_ms_per_unit": self.min_ms_per_unit}


def time_many(calls: dict[str, Callable[[], Any]], repeats: int, units: dict[str, int] | int = 1,
              budget_s: float | None = None, min_repeats: int = 2, log: Callable[[str], None] | None = print
              ) -> dict[str, Timing]:
    """Warm up every thunk once, then time ``repeats`` interleaved rounds, each round starting one
    function later than the previous (fewer rounds, but at least ``min_repeats``, once ``budget_s``
    seconds of timed rounds have passed)."""
    out = {}
    for name, call in calls.items():
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        out[name] = Timing(time.perf_counter() - t0, [], units if isinstance(units, int) else units[name])
        if log:
            log(f"  warm-up {name}: {out[name].first_s:.2f} s (incl. compile)")
    start = time.perf_counter()
    names = list(calls)
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:   # rotate the order every round
            call = calls[name]
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            out[name].times_s.append(time.perf_counter() - t0)
        if budget_s is not None and i + 1 >= min_repeats and time.perf_counter() - start > budget_s:
            break
    return out


def ratio(a: Timing, b: Timing) -> dict:
    """``a / b`` per unit, of medians and of minima."""
    return {"median": a.median_ms_per_unit / b.median_ms_per_unit, "min": a.min_ms_per_unit / b.min_ms_per_unit}


# ------------------------------------------------------------------------------------------------
# Environment, arguments, output


def environment() -> dict:
    """Device, versions, CPU count, XLA flags, load average (the machine may be shared)."""
    import jaxlib
    dev = jax.devices()[0]
    return {
        "device_kind": dev.device_kind, "platform": dev.platform, "device_count": jax.device_count(),
        "jax_version": jax.__version__, "jaxlib_version": jaxlib.__version__, "cpu_count": os.cpu_count(),
        "xla_flags": os.environ.get("XLA_FLAGS"), "load_average_start": list(os.getloadavg()),
        "git": git_revision(ROOT), "metadata": run_metadata(),
    }


def common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--quick", action="store_true", help="tiny smoke version (well under a minute)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<name>.json; "
                        "with --quick, a file in the system temp folder so committed results stay)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override applied to every model (e.g. task.shuffle=false); repeatable")
    return parser


def model_args(parser: argparse.ArgumentParser, *, r: bool = True, mlp_width: bool = True) -> argparse.ArgumentParser:
    """The arguments of :func:`build` (cluster size, redundancy, global batch, model sizes)."""
    parser.add_argument("--n", type=int, default=15, help="workers = partitions")
    if r:
        parser.add_argument("--r", type=float, default=2.0, help="Bernoulli redundancy")
    parser.add_argument("--batch", type=int, default=240, help="global minibatch")
    if mlp_width:
        parser.add_argument("--mlp-width", type=int, default=None, help="hidden units of the MLP (default 128)")
    parser.add_argument("--resnet-train", type=int, default=2000, help="random CIFAR training samples")
    return parser


def build_from_args(model: str, args: argparse.Namespace, **override) -> tuple[ExperimentConfig, Task]:
    """:func:`build` with the values of :func:`model_args` and :func:`common_args` (``override``
    wins, e.g. ``r=`` in a sweep)."""
    kwargs = dict(n=args.n, r=getattr(args, "r", 2.0), batch=args.batch, mlp_width=getattr(args, "mlp_width", None),
                  resnet_train=args.resnet_train, seed=args.seed, extra=tuple(args.set))
    return build(model, **{**kwargs, **override})


def models_arg(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown model(s) {bad}; allowed: {', '.join(MODELS)}")
    return models


def out_path(args: argparse.Namespace, name: str) -> Path:
    if args.out:
        return Path(args.out)
    if args.quick:
        return Path(tempfile.gettempdir()) / "jax_ec_benchmarks" / f"{name}.json"
    return RESULTS / f"{name}.json"


def write_result(path: Path, benchmark: str, env: dict, args: argparse.Namespace, body: dict) -> None:
    env = dict(env, load_average_end=list(os.getloadavg()))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"benchmark": benchmark, "environment": env,
                      "args": {k: v for k, v in vars(args).items()}, **body})
    print(f"wrote {path}")


def config_record(cfg: ExperimentConfig, trainer: Trainer | None = None) -> dict:
    out = {"config": config_to_dict(cfg)}
    if trainer is not None:
        out.update(trainer=trainer.kind, runtime=trainer.runtime.record(), num_params=trainer.num_params,
                   k=trainer.static.k, per_partition=trainer.static.per_partition, batch_size=trainer.static.batch)
    return out


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table: ``columns`` are ``(key, header, format)``; missing values print as '-'."""
    def cell(row, key, fmt):
        v = row.get(key)
        if v is None:
            return "-"
        return format(v, fmt) if fmt else str(v)
    body = [[cell(r, k, f) for k, _, f in columns] for r in rows]
    heads = [h for _, h, _ in columns]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def time_cli_run(prefix: list[str], config: Path | str, out: Path, overrides: list[str] = (),
                 env: dict | None = None) -> float:
    """Wall seconds of ``prefix + [config, --out, out, --no-progress, --fresh, --set ...]`` (a
    ``jax-ec run`` command line) in a fresh process, from start to exit, compilation included."""
    import subprocess
    cmd = [*prefix, str(config), "--out", str(out), "--no-progress", "--fresh"]
    for o in overrides:
        cmd += ["--set", o]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"jax-ec run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


def metrics_without_wall_time(out: Path) -> list[dict]:
    """The rows of ``out/metrics.csv`` without the wall-clock column (what must match across runs)."""
    import csv
    with open(Path(out) / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in csv.DictReader(f)]
