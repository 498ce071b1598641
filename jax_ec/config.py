"""Typed, frozen experiment configuration loaded from YAML.

The schema is a set of pydantic models (unknown keys are refused); the values follow YAML with a
few deliberate rules (an integer field takes ``3`` or ``3.0`` or ``"1e3"`` but not ``true``; a
boolean field takes ``true/false/yes/no`` but not ``2``; a float is finite). Every problem,
whether pydantic's or one of the cross-field rules of :meth:`ExperimentConfig.validate`, raises
one :class:`ConfigError` naming the field (dotted path), the value and what is allowed, before
anything compiles.

A config names the task, the simulated cluster (n workers, b Byzantine, attack, placement), the
schemes to compare (codes, optionally swept over a grid), the trials, the training length, the
optimizer and the output folder: the science. How it runs (trial batching, the step loop, the vote
kernel, the convolution rule, the touched-coordinates formulation, memory checks, the device mesh)
lives apart under ``runtime:``; it never changes the numbers. See ``configs/`` for examples and the
README for the reference.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from . import _checks
from .adaptive import EXACT_MAX_B, EXACT_MAX_WORKERS
from .aggregators import AGGREGATORS, ASSUMES_F, REAL_AGGREGATORS
from .attacks import (ADAPTIVE_PLACEMENTS, ATTACKS, IPM_DEFAULT_SCALE, PLACEMENTS, REAL_ONLY_ATTACKS, SIGN_ONLY_ATTACKS,
                      VOTE_ATTACKS)
from .election import MAX_PARTITIONS, NOISE_MODELS

__all__ = ["ConfigError", "TaskConfig", "OptimConfig", "SchemeConfig", "TimeConfig", "MeshConfig", "RuntimeConfig",
           "ExperimentConfig", "load_config", "config_from_dict", "config_to_dict", "apply_overrides",
           "default_config_path", "read_yaml", "smoke_config", "expand_sweeps", "SweptScheme", "TASKS", "CODES",
           "PARTITIONINGS", "SWEEPABLE", "TASK_METRICS", "METRIC_RANGES", "metric_range"]

TASKS = ("amazon", "synthetic", "digits", "cifar10", "mnist", "fashion_mnist")
MODELS = ("mlp", "cnn", "resnet18", "resnet50")
COMPUTE_DTYPES = ("float32", "bfloat16")
CODES = ("uncoded", "bernoulli", "paper_n5", "draco", "matrix")
PARTITIONINGS = ("shards", "split")
TASK_METRICS: dict[str, str] = {task: "test_auc" if task == "amazon" else "test_accuracy" for task in TASKS}
"""The metric each task reports (higher is better): the test AUC of the Amazon logistic regression,
the test accuracy of the classifiers."""
METRIC_RANGES: dict[str, tuple[float, float]] = {"test_auc": (0.0, 1.0), "test_accuracy": (0.0, 1.0)}
"""The values each metric can take; a metric not listed (a loss, say) is unbounded."""
MAX_STEPS = 2 ** 31 - 1      # the device counts steps in int32
MAX_REDRAWS = 1e6            # nonempty_rows: the most expected Bernoulli draws per trial
# Keys that moved under runtime: (a clear error instead of "unknown key").
_MOVED = {"fast_path": "runtime.formulation", "trial_batching": "runtime.trial_batching",
          "step_loop": "runtime.step_loop", "memory_check": "runtime.memory_check", "mesh": "runtime.mesh"}


def metric_range(metric: str) -> tuple[float, float]:
    """``(low, high)``: the values ``metric`` can take (``(-inf, inf)`` for one not in :data:`METRIC_RANGES`)."""
    return METRIC_RANGES.get(metric, (-math.inf, math.inf))


class ConfigError(ValueError):
    """A bad configuration value: the message names the field, the value and what is allowed."""


def _fail(path: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ConfigError(f"{path}: got {value!r}; {allowed}")


# ----------------------------------------------------------------------------------------------
# Reading YAML: one document, every mapping key once


class _RepeatedKey(yaml.YAMLError):
    """A mapping that names one key twice (PyYAML would silently keep the last value)."""

    def __init__(self, loc: tuple, key: Any, lines: tuple[int, int]):
        self.loc, self.key = loc, key
        self.lines = f"line {lines[0]}, twice" if lines[0] == lines[1] else f"lines {lines[0]} and {lines[1]}"
        super().__init__(f"key {key!r} repeated ({self.lines})")


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document in which a mapping repeats a key.

    A repeat is found on the composed node tree, before construction, so that the error carries
    the key's location in the document (the mapping keys and sequence indices down to it) and the
    lines of both occurrences. Keys brought in by a merge (``<<: *anchor``) may be overridden, as
    YAML intends; only keys written twice in one mapping are refused.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self._check_keys(node, (), set())
        return super().construct_document(node)

    def _check_keys(self, node: yaml.Node, loc: tuple, seen: set[int]) -> None:
        if id(node) in seen:      # an alias to a node already checked
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_keys(item, (*loc, i), seen)
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    continue   # a mapping or list as a key: PyYAML's constructor refuses it
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in first_line:
                    raise _RepeatedKey((*loc, key), key, (first_line[key], line))
                first_line[key] = line
                self._check_keys(value_node, (*loc, key), seen)


# ----------------------------------------------------------------------------------------------
# Value types: how a YAML value becomes an int, a float, a bool, a tuple


def _bad(what: str) -> PydanticCustomError:
    return PydanticCustomError("jax_ec", what)


def _to_int(v: Any) -> Any:
    if isinstance(v, bool):
        raise _bad("expected an integer")
    if isinstance(v, str):
        try:
            v = float(v)      # YAML 1.1 reads "1e3" (no dot) as a string
        except ValueError:
            raise _bad("expected an integer") from None
    if isinstance(v, float):
        if not (math.isfinite(v) and v.is_integer()):
            raise _bad("expected an integer")
        return int(v)
    if not isinstance(v, int):
        raise _bad("expected an integer")
    return v


def _to_float(v: Any) -> Any:
    if isinstance(v, str):
        try:
            v = float(v)      # YAML 1.1 reads "1e-4" (no dot) as a string
        except ValueError:
            raise _bad("expected a number") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad("expected a number")
    if not math.isfinite(v):
        raise _bad("expected a finite number")
    return float(v)


def _to_bool(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no", "1", "0"):
        return v.lower() in ("true", "yes", "1")
    raise _bad("expected a boolean (true/false)")


def _to_str(v: Any) -> Any:
    if not isinstance(v, str):
        raise _bad("expected a string")
    return v


def _to_tuple(v: Any) -> Any:
    if isinstance(v, (int, float, str)) and not isinstance(v, bool):
        return [v]       # a single value stands for a one-element list
    if not isinstance(v, (list, tuple)):
        raise _bad("expected a list")
    return v


def _to_mapping_list(v: Any) -> Any:
    if isinstance(v, (dict, str, int, float)) and not isinstance(v, bool):
        return [v]
    return v


Int = Annotated[int, BeforeValidator(_to_int)]
Float = Annotated[float, BeforeValidator(_to_float)]
Bool = Annotated[bool, BeforeValidator(_to_bool)]
Str = Annotated[str, BeforeValidator(_to_str)]
IntTuple = Annotated[tuple[Int, ...], BeforeValidator(_to_tuple)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------------------------
# The schema


IMAGE_TASKS = tuple(t for t in TASKS if t not in ("amazon", "synthetic"))
# Fields only some tasks read: another task refuses a value other than the default.
_TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "data_path": ("amazon",), "n_train": ("amazon",),
    **{name: ("synthetic",) for name in ("num_samples", "num_features", "num_classes", "hidden")},
    **{name: IMAGE_TASKS for name in ("model", "width", "data_dir", "download", "augment", "train_samples",
                                      "test_samples", "compute_dtype")},
}


class TaskConfig(_Section):
    """The learning task.

    ``amazon``: the paper's Amazon Employee Access logistic regression (test AUC); ``data_path``
    overrides the shipped CSV. ``synthetic``: a Gaussian-mixture classification with an MLP (test
    accuracy), a small fully offline task for the minibatch-split ("CIFAR style") mode.
    ``digits`` (shipped 8×8 digits), ``cifar10``, ``mnist``, ``fashion_mnist`` (TFDS, read from
    ``data_dir``; ``download: true`` lets TFDS fetch them): image classification with ``model``
    (``mlp``, ``cnn``, ``resnet18``, ``resnet50``; default cnn, resnet18 for CIFAR) of ``width``;
    ``augment`` (random crop + flip; default on for CIFAR); ``train_samples``/``test_samples``
    keep only the first samples (quick runs); ``compute_dtype`` (``float32`` or ``bfloat16``) the
    model's arithmetic, with float32 parameters, gradients and vote either way. A field another task
    reads is refused unless it keeps its default (``n_train`` on the synthetic task would otherwise
    be silently ignored).
    """
    name: Str = "amazon"
    data_path: Str | None = None
    n_train: Int = 26325
    num_samples: Int = 4096
    num_features: Int = 16
    num_classes: Int = 4
    hidden: IntTuple = (64,)
    shuffle: Bool = False
    model: Str | None = None
    width: Int | None = None
    data_dir: Str | None = None
    download: Bool = False
    augment: Bool | None = None
    train_samples: Int | None = None
    test_samples: Int | None = None
    compute_dtype: Str = "float32"

    def validate(self, path: str) -> None:
        if self.name not in TASKS:
            _fail(f"{path}.name", self.name, f"allowed: {', '.join(TASKS)}")
        for name, tasks in _TASK_FIELDS.items():
            value = getattr(self, name)
            if self.name not in tasks and value != type(self).model_fields[name].default:
                _fail(f"{path}.{name}", value, f"applies to the {', '.join(tasks)} task{'s' if len(tasks) > 1 else ''} "
                      f"only; the {self.name} task would ignore it (leave it out)")
        if self.data_path is not None and (problem := _file_problem(Path(self.data_path))):
            _fail(f"{path}.data_path", self.data_path,
                  f"{problem}; expected the Amazon Employee Access train.csv (plain or .gz)")
        if self.data_dir is not None and Path(self.data_dir).exists() and not Path(self.data_dir).is_dir():
            _fail(f"{path}.data_dir", self.data_dir, "is not a folder; expected the TFDS data folder")
        for name in ("n_train", "num_samples", "num_features"):
            if getattr(self, name) < 1:
                _fail(f"{path}.{name}", getattr(self, name), "expected an integer >= 1")
        if self.num_samples < 4:
            _fail(f"{path}.num_samples", self.num_samples, "the synthetic task tests on num_samples // 4 further "
                  "samples; expected an integer >= 4")
        if self.num_classes < 2:
            _fail(f"{path}.num_classes", self.num_classes, "expected an integer >= 2")
        if any(h < 1 for h in self.hidden):
            _fail(f"{path}.hidden", self.hidden, "expected a list of integers >= 1")
        if self.model is not None and self.model not in MODELS:
            _fail(f"{path}.model", self.model, f"allowed: {', '.join(MODELS)}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            _fail(f"{path}.compute_dtype", self.compute_dtype, f"allowed: {', '.join(COMPUTE_DTYPES)} (the model's "
                  "arithmetic; parameters, gradients and the vote stay float32)")
        for name in ("width", "train_samples", "test_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                _fail(f"{path}.{name}", getattr(self, name), "expected an integer >= 1 (or null)")


class OptimConfig(_Section):
    """Worker and master update rules.

    Workers (Amazon rule): each partition keeps a momentum ``m_j ← β m_j + (1 − β) g_j`` and votes
    with ``sign(m_j)`` (``worker_momentum = β``; 0 votes with the gradient sign).
    Master (CIFAR rule): ``u = v + λ θ`` (``weight_decay = λ``), heavy-ball ``h ← μ h + u``
    (``momentum = μ``; 0 disables it), ``θ ← θ − γ_t h``. The step size is ``lr`` multiplied by
    ``lr_decay`` at every epoch listed in ``lr_boundaries`` (:mod:`jax_ec.schedule`).
    """
    lr: Float = 1e-3
    lr_boundaries: IntTuple = (1,)
    lr_decay: Float = 0.1
    momentum: Float = 0.0
    weight_decay: Float = 0.0
    worker_momentum: Float = 0.9

    def validate(self, path: str) -> None:
        if not self.lr > 0:
            _fail(f"{path}.lr", self.lr, "expected a step size > 0")
        if not 0 < self.lr_decay <= 1:
            _fail(f"{path}.lr_decay", self.lr_decay, "expected a factor in (0, 1]")
        if any(e < 1 for e in self.lr_boundaries) or any(a >= b for a, b in zip(self.lr_boundaries,
                                                                                self.lr_boundaries[1:])):
            _fail(f"{path}.lr_boundaries", self.lr_boundaries, "expected strictly increasing epochs >= 1")
        for name in ("momentum", "worker_momentum"):
            if not 0 <= getattr(self, name) < 1:
                _fail(f"{path}.{name}", getattr(self, name), "expected a value in [0, 1)")
        if self.weight_decay < 0:
            _fail(f"{path}.weight_decay", self.weight_decay, "expected a value >= 0")


Sweep = dict[Str, Annotated[tuple[Any, ...], BeforeValidator(_to_tuple)]]


class SchemeConfig(_Section):
    """One scheme to compare: a code (allocation) plus optional overrides of the attack and b.

    ``code``: ``uncoded`` (SignSGD-MV), ``bernoulli`` (needs ``r``; p = r/n; ``k`` partitions,
    default n; ``nonempty_rows`` redraws until no worker is empty), ``paper_n5`` (n = 5),
    ``draco`` (DRACO groups of ≥ 2b + 1 workers sharing partitions), ``matrix`` (``matrix``: a nested list
    or a CSV/.npy path). ``attack: none`` (or ``b: 0``) gives the no-attack baseline.

    ``aggregator``: ``vote`` (election coding: majority of partition signs), ``signed_sum`` (a worker
    sends the sign of its partitions' summed gradients), or a real-valued baseline sending 32-bit
    gradients: ``median`` (full-gradient coordinate-wise median, FGM), ``mean`` (plain SGD),
    ``repetition`` (median inside groups of identical workers, then the mean of the groups weighted
    by their numbers of partitions), the robust ``trimmed_mean``, ``krum``, ``multi_krum``,
    ``geometric_median``, ``centered_clipping``, and ``nnm+<aggregator>`` (nearest-neighbour mixing
    first; any of these but repetition) (:mod:`jax_ec.aggregators`). Those that assume f Byzantine
    workers (trimmed_mean, krum, multi_krum, nnm+…) take f = b and need 2b < n. The attacks
    ``sign_flip``, ``ipm``, ``alie`` and ``mimic`` read the honest real-valued messages and have no
    vote form: they need a real-valued aggregator. ``attack_scale``: the ipm attack's ε (default
    0.1; a traced number, so a sweep over it shares one compiled program); it applies to ipm only.
    ``rho``: reduced minibatch, as the authors ran it: the scheme's minibatch is ρ·B samples
    (``batch_size`` B), so each partition holds ρ of the samples it would hold at B and the
    per-worker computation per step is r_eff = ρ·r; an epoch then takes round(N / (ρ·B)) steps
    (``split``; ``shards``: ⌊shard / (ρ·B/k)⌋), and the learning-rate milestones, given in epochs,
    fall at correspondingly more steps. ``noise_std``, ``noise_model`` and ``lr`` override the
    experiment's noise before the sign and step size for this scheme (real-valued baselines move by
    gradient magnitudes, sign schemes by ±1, so they usually want different step sizes).

    ``placement`` overrides the experiment's Byzantine placement for this scheme, so that one config
    compares, say, ``uniform`` and ``adaptive`` placement (a static field: each placement compiles
    its own program).

    ``sweep``: a grid over any of these fields, e.g. ``{b: [1, 2, 3], r: [2, 3]}``; the scheme
    stands for one scheme per point, named ``name[b=1,r=2]`` (:func:`expand_sweeps`).
    """
    name: Str
    code: Str = "uncoded"
    r: Float | None = None
    k: Int | None = None
    nonempty_rows: Bool = False
    matrix: Union[Str, list, None] = None
    attack: Str | None = None
    b: Int | None = None
    attack_scale: Float | None = None
    placement: Str | None = None
    aggregator: Str = "vote"
    rho: Float = 1.0
    noise_std: Float | None = None
    noise_model: Str | None = None
    lr: Float | None = None
    sweep: Sweep | None = None


SWEEPABLE: tuple[str, ...] = tuple(f for f in SchemeConfig.model_fields if f not in ("name", "sweep"))


class TimeConfig(_Section):
    """Simulated clock: ``t_iter = max_i load_i · ρ · t_partition + bits_per_coordinate · d / bandwidth``.

    ``bandwidth`` in bits per time unit; 0 means communication is free.
    """
    t_partition: Float = 1.0
    bandwidth: Float = 0.0

    def validate(self, path: str) -> None:
        if not self.t_partition > 0:
            _fail(f"{path}.t_partition", self.t_partition, "expected a value > 0")
        if self.bandwidth < 0:
            _fail(f"{path}.bandwidth", self.bandwidth, "expected a value >= 0 (0: free communication)")


class MeshConfig(_Section):
    """Devices a run spreads over (a ``jax.sharding.Mesh`` with axes ``trials`` × ``partitions``).

    ``trials``: devices the trials are split over (T need not divide: the last trial is repeated to
    fill the last device and the copies are dropped); ``partitions``: devices each trial's k
    partition gradients are split over (must divide k; the sign counts combine with a ``psum``).
    ``trials: auto`` (the default) takes every device the partitions leave free, at most one per
    (scheme, trial) pair (:func:`jax_ec.sharding.mesh_shape`). Results do not depend on the mesh
    (tested), so a run may resume on another mesh. On the CPU, the ``jax-ec`` command gives JAX one
    host device per available core (:func:`jax_ec.runtime.use_host_cores`); elsewhere
    ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` gives N host devices. Across hosts, call
    ``jax.distributed.initialize()`` first (README, "Scaling past one device").
    """
    trials: Union[Literal["auto"], Int] = "auto"
    partitions: Int = 1

    def validate(self, path: str) -> None:
        if self.trials != "auto" and self.trials < 1:
            _fail(f"{path}.trials", self.trials, "expected 'auto' or an integer >= 1 (devices along this axis)")
        if self.partitions < 1:
            _fail(f"{path}.partitions", self.partitions, "expected an integer >= 1 (devices along this axis)")


class RuntimeConfig(_Section):
    """How a run executes; every choice gives the same numbers (tested), only the time differs.

    ``auto`` leaves a choice to :func:`jax_ec.runtime.choose` (by backend, task and scheme).
    ``trial_batching``: ``vmap`` or ``map`` (``lax.map``) over the trials of a compiled call;
    ``step_loop``: ``scan`` (steps inside one compiled call) or ``python`` (one call per step);
    ``vote``: ``matmul`` (``sign(G @ S)``), ``fused`` (bit-packed signs), ``leafwise`` (fused,
    parameter array by parameter array); ``conv_rule``: ``per_partition`` (one ordinary weight
    gradient convolution per partition) or ``standard`` (JAX's batch-grouped convolution);
    ``formulation``: ``dense`` or ``touched_coordinates`` (the exact Amazon formulation,
    :mod:`jax_ec.sparse_logreg`, where it applies); ``memory_check``: refuse, before compiling, a
    run whose certain memory needs exceed the device's; ``mesh``: the devices.
    """
    trial_batching: Literal["auto", "vmap", "map"] = "auto"
    step_loop: Literal["auto", "scan", "python"] = "auto"
    vote: Literal["auto", "matmul", "fused", "leafwise"] = "auto"
    conv_rule: Literal["auto", "per_partition", "standard"] = "auto"
    formulation: Literal["auto", "dense", "touched_coordinates"] = "auto"
    memory_check: Bool = True
    mesh: MeshConfig = MeshConfig()


def _default_schemes() -> tuple[SchemeConfig, ...]:
    return (
        SchemeConfig(name="no_attack", code="uncoded", attack="none"),
        SchemeConfig(name="signsgd_mv", code="uncoded"),
        SchemeConfig(name="bernoulli_r2", code="bernoulli", r=2.0),
    )


class ExperimentConfig(_Section):
    """A whole experiment: schemes × trials on one task and one simulated cluster.

    ``target``: the metric value a trial counts as reaching (the time-to-target statistics), in the
    range of the metric the task reports (:data:`TASK_METRICS`, :data:`METRIC_RANGES`: a fraction,
    not a percentage), or null. ``direction``: the sign the directional attack sends (refused
    when no scheme runs that attack). ``steps`` (or ``epochs`` × steps per epoch) at most
    :data:`MAX_STEPS`.
    """
    name: Str = "amazon_paper"
    seed: Int = 0
    trials: Int = 10
    task: TaskConfig = TaskConfig()
    n: Int = 15
    b: Int = 5
    attack: Str = "directional"
    direction: Int = 1
    placement: Str = "uniform"
    noise_std: Float = 0.0
    noise_model: Str = "per_copy"
    partitioning: Str = "shards"
    batch_size: Int = 225
    epochs: Int = 8
    steps: Int | None = None
    eval_every: Int = 39
    eval_every_epochs: Float | None = None
    optim: OptimConfig = OptimConfig()
    time: TimeConfig = TimeConfig()
    schemes: Annotated[tuple[SchemeConfig, ...], BeforeValidator(_to_mapping_list)] = _default_schemes()
    target: Float | None = 0.8
    out_dir: Str = "results/{name}"
    runtime: RuntimeConfig = RuntimeConfig()

    def validate(self) -> "ExperimentConfig":
        """Check every cross-field rule (and the swept schemes); return self."""
        for name in ("trials", "n", "batch_size", "epochs", "eval_every"):
            if getattr(self, name) < 1:
                _fail(name, getattr(self, name), "expected an integer >= 1")
        try:
            _checks.seed("seed", self.seed)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        try:
            self.out_dir.format(name=self.name)
        except (KeyError, IndexError, ValueError) as exc:
            _fail("out_dir", self.out_dir, f"expected a folder path whose only placeholder is {{name}} ({exc!r})")
        if not self.name.strip():
            _fail("name", self.name, "expected a non-empty name (it names the results folder and the report)")
        if not self.out_dir.format(name=self.name).strip():
            _fail("out_dir", self.out_dir, "expected a folder path")
        if self.steps is not None and not 1 <= self.steps <= MAX_STEPS:
            _fail("steps", self.steps, f"expected an integer in [1, {MAX_STEPS}] (or null to run `epochs` epochs)")
        if self.epochs > MAX_STEPS:
            _fail("epochs", self.epochs, f"expected an integer in [1, {MAX_STEPS}]")
        if not 0 <= self.b < self.n:
            _fail("b", self.b, f"expected 0 <= b < n = {self.n}")
        if self.attack not in ATTACKS:
            _fail("attack", self.attack, f"allowed: {', '.join(ATTACKS)}")
        if self.direction not in (1, -1):
            _fail("direction", self.direction, "allowed: 1, -1")
        if self.placement not in PLACEMENTS:
            _fail("placement", self.placement, f"allowed: {', '.join(PLACEMENTS)}")
        if not self.noise_std >= 0:
            _fail("noise_std", self.noise_std, "expected a value >= 0")
        if self.noise_model not in NOISE_MODELS:
            _fail("noise_model", self.noise_model, f"allowed: {', '.join(NOISE_MODELS)} (per_copy: each worker draws "
                  "its own noise for each partition it holds; per_partition: one draw per partition, shared)")
        if self.eval_every_epochs is not None and not self.eval_every_epochs > 0:
            _fail("eval_every_epochs", self.eval_every_epochs, "expected a number of epochs > 0 (or null to "
                  "evaluate every `eval_every` steps)")
        if self.partitioning not in PARTITIONINGS:
            _fail("partitioning", self.partitioning, f"allowed: {', '.join(PARTITIONINGS)}")
        self.task.validate("task")
        if self.target is not None:
            metric = TASK_METRICS[self.task.name]
            low, high = metric_range(metric)
            if not low <= self.target <= high:
                hint = (f" (a percentage? {self.target:g}% is {self.target / 100:g})"
                        if high == 1 and 1 < self.target <= 100 else "")
                _fail("target", self.target, f"the {self.task.name} task reports {metric}, which lies in "
                      f"[{low:g}, {high:g}]{hint}; expected a target in that range (or null for none)")
        self.optim.validate("optim")
        self.time.validate("time")
        self.runtime.mesh.validate("runtime.mesh")
        if not self.schemes:
            _fail("schemes", [], "expected at least one scheme")
        for i, s in enumerate(self.schemes):
            if s.sweep is not None:
                _validate_sweep(s, f"schemes[{i}]")
        expanded = expand_sweeps(self.schemes)
        names = [x.scheme.name for x in expanded]
        if len(set(names)) != len(names):
            _fail("schemes", names, "scheme names must be unique")
        for x in expanded:
            self._validate_scheme(x.scheme, x.path)
        if self.direction != 1 and not any(self.scheme_attack(x.scheme) == "directional" for x in expanded):
            _fail("direction", self.direction, "applies to the directional attack only, which no scheme runs "
                  "(leave it out)")
        return self

    def _validate_scheme(self, s: SchemeConfig, path: str) -> None:
        from .codes import load_code, validate_allocation
        if not s.name or "/" in s.name:
            _fail(f"{path}.name", s.name, "expected a non-empty name without '/'")
        if s.code not in CODES:
            _fail(f"{path}.code", s.code, f"allowed: {', '.join(CODES)}")
        if s.attack is not None and s.attack not in ATTACKS:
            _fail(f"{path}.attack", s.attack, f"allowed: {', '.join(ATTACKS)}")
        b = self.scheme_b(s)
        if not 0 <= b < self.n:
            _fail(f"{path}.b", b, f"expected 0 <= b < n = {self.n}")
        if s.k is not None and s.k < 1:
            _fail(f"{path}.k", s.k, "expected an integer >= 1")
        fixed_k = {"uncoded": self.n, "draco": self.n, "paper_n5": 5}.get(s.code)
        if s.k is not None and fixed_k is not None and s.k != fixed_k:
            _fail(f"{path}.k", s.k, f"the {s.code} code has k = {fixed_k} partitions "
                  "(k applies to bernoulli codes; leave it out)")
        if s.code == "bernoulli":
            if s.r is None or not 0 < s.r <= self.n:
                _fail(f"{path}.r", s.r, f"a bernoulli code needs a redundancy r in (0, n] = (0, {self.n}]")
            if s.nonempty_rows:
                self._check_redraws(s, path)
        elif s.r is not None:
            _fail(f"{path}.r", s.r, f"r applies to bernoulli codes only (code is {s.code!r})")
        elif s.nonempty_rows:
            _fail(f"{path}.nonempty_rows", s.nonempty_rows, f"applies to bernoulli codes only (code is {s.code!r})")
        if s.code == "paper_n5" and self.n != 5:
            _fail(f"{path}.code", s.code, f"the paper's deterministic example needs n = 5 (n is {self.n})")
        if s.code == "matrix":
            if s.matrix is None:
                _fail(f"{path}.matrix", None, "a matrix code needs `matrix`: a nested 0/1 list or a CSV/.npy path")
            if isinstance(s.matrix, str) and (problem := _file_problem(Path(s.matrix))):
                _fail(f"{path}.matrix", s.matrix, f"{problem}; expected a CSV or .npy 0/1 matrix file (or a nested "
                      "list)")
            try:
                G = (load_code(s.matrix, n=self.n) if isinstance(s.matrix, str)
                     else validate_allocation(s.matrix, n=self.n))
            except (ValueError, FileNotFoundError) as exc:
                raise ConfigError(f"{path}.matrix: {exc}") from None
            if not G.any():
                _fail(f"{path}.matrix", s.matrix, "every entry is 0: no worker holds a partition, so every vote is 0 "
                      "and the model never moves; expected at least one 1")
            if s.k is not None and s.k != G.shape[1]:
                _fail(f"{path}.k", s.k, f"the matrix has {G.shape[1]} columns")
        elif s.matrix is not None:
            _fail(f"{path}.matrix", s.matrix, f"matrix applies to code: matrix only (code is {s.code!r})")
        if s.aggregator not in AGGREGATORS:
            _fail(f"{path}.aggregator", s.aggregator, f"allowed: {', '.join(AGGREGATORS)}")
        if s.aggregator == "repetition" and s.code not in ("draco", "matrix", "paper_n5"):
            _fail(f"{path}.aggregator", s.aggregator,
                  f"the repetition aggregator needs a code whose workers share partitions in groups (draco, "
                  f"matrix, paper_n5), not {s.code!r}" + (" (with G = I every group is one worker: it would be "
                                                          "plain mean SGD; use aggregator: mean)"
                                                          if s.code == "uncoded" else ""))
        attack = self.scheme_attack(s)
        if s.aggregator in REAL_AGGREGATORS and attack in SIGN_ONLY_ATTACKS:
            _fail(f"{path}.attack", attack, f"the {attack} attack sends votes; it has no real-valued form for the "
                  f"{s.aggregator} aggregator (allowed there: "
                  f"{', '.join(a for a in ATTACKS if a not in SIGN_ONLY_ATTACKS)})")
        if s.aggregator not in REAL_AGGREGATORS and attack in REAL_ONLY_ATTACKS:
            _fail(f"{path}.attack", attack, f"the {attack} attack reads the honest workers' real-valued messages; it "
                  f"has no vote form for the {s.aggregator} aggregator (allowed there: {', '.join(VOTE_ATTACKS)})")
        configured = self.attack if s.attack is None else s.attack
        if s.attack_scale is not None and configured != "ipm":
            _fail(f"{path}.attack_scale", s.attack_scale, f"applies to the ipm attack only (this scheme's attack is "
                  f"{configured!r}; leave it out)")
        if s.attack_scale is not None and not s.attack_scale > 0:
            _fail(f"{path}.attack_scale", s.attack_scale, f"expected the ipm factor ε > 0 (or null for "
                  f"{IPM_DEFAULT_SCALE:g})")
        if s.aggregator in ASSUMES_F and 2 * b >= self.n:
            _fail(f"{path}.b", b, f"the {s.aggregator} aggregator assumes f = b Byzantine workers and needs 2b < n = "
                  f"{self.n}; expected b <= {(self.n - 1) // 2}")
        if attack == "alie" and self.n // 2 + 1 - b < 1:
            _fail(f"{path}.b", b, f"the alie attack's s = floor(n/2 + 1) - b must be >= 1 (n = {self.n}); expected "
                  f"b <= {self.n // 2}")
        if s.code == "draco" and 2 * self.scheme_b(s) + 1 > self.n:
            _fail(f"{path}.code", s.code, f"the DRACO layout needs 2b + 1 <= n (b = {self.scheme_b(s)}, n = {self.n})")
        if not 0 < s.rho <= 1:
            _fail(f"{path}.rho", s.rho, "expected a fraction in (0, 1]")
        if s.lr is not None and not s.lr > 0:
            _fail(f"{path}.lr", s.lr, "expected a step size > 0 (or null to use optim.lr)")
        if s.noise_std is not None and s.noise_std < 0:
            _fail(f"{path}.noise_std", s.noise_std, "expected a value >= 0 (or null to use the experiment's)")
        if s.noise_model is not None and s.noise_model not in NOISE_MODELS:
            _fail(f"{path}.noise_model", s.noise_model, f"allowed: {', '.join(NOISE_MODELS)} (or null to use the "
                  "experiment's)")
        k = self.scheme_k(s)
        if k > MAX_PARTITIONS:
            _fail(f"{path}.k", k, f"at most {MAX_PARTITIONS} partitions are supported")
        if s.rho == 1.0:
            if self.batch_size % k:
                _fail("batch_size", self.batch_size,
                      f"the minibatch must split into k = {k} equal partitions (scheme {s.name!r})")
        else:
            batch = s.rho * self.batch_size
            if abs(batch - round(batch)) > 1e-9 or round(batch) < k or round(batch) % k:
                _fail(f"{path}.rho", s.rho, f"the scheme's minibatch rho × batch_size = {s.rho} × {self.batch_size} "
                      f"= {batch:g} must be a whole number of samples that splits into k = {k} equal partitions")
        if k % self.runtime.mesh.partitions:
            _fail("runtime.mesh.partitions", self.runtime.mesh.partitions,
                  f"must divide the k = {k} partitions of scheme {s.name!r} (allowed: "
                  f"{', '.join(str(m) for m in range(1, k + 1) if k % m == 0)})")
        self._validate_placement(s, path)

    def _validate_placement(self, s: SchemeConfig, path: str) -> None:
        """A scheme's placement: a known one; an adaptive one only with the omniscient attack on a
        sign aggregator (and ``adaptive_exact`` only where its enumeration is small)."""
        if s.placement is not None and s.placement not in PLACEMENTS:
            _fail(f"{path}.placement", s.placement, f"allowed: {', '.join(PLACEMENTS)} (or null to use the "
                  "experiment's)")
        placement, attack, b = self.scheme_placement(s), self.scheme_attack(s), self.scheme_b(s)
        if placement not in ADAPTIVE_PLACEMENTS or attack == "none":
            return
        field = f"{path}.placement" if s.placement is not None else "placement"
        fixed = ", ".join(p for p in PLACEMENTS if p not in ADAPTIVE_PLACEMENTS)
        if attack != "omniscient":
            _fail(field, placement, f"the adaptive placements corrupt with the omniscient message and need attack: "
                  f"omniscient (scheme {s.name!r} runs {attack!r}); allowed with {attack!r}: {fixed}")
        if s.aggregator not in ("vote", "signed_sum"):
            _fail(field, placement, f"the adaptive placements choose which votes to corrupt: allowed with the vote and "
                  f"signed_sum aggregators (scheme {s.name!r} uses {s.aggregator!r}); allowed there: {fixed}")
        if placement == "adaptive_exact" and (self.n > EXACT_MAX_WORKERS or b > EXACT_MAX_B):
            _fail(field, placement, f"the exact search enumerates every set of b workers: allowed for n <= "
                  f"{EXACT_MAX_WORKERS} and b <= {EXACT_MAX_B} (scheme {s.name!r}: n = {self.n}, b = {b}); "
                  "placement: adaptive is the greedy search")

    def _check_redraws(self, s: SchemeConfig, path: str) -> None:
        """Refuse ``nonempty_rows`` where redrawing until no worker is empty would take too long.

        Each of the n rows of a Bernoulli(p = r/n) draw over k partitions is non-empty with
        probability ``q = 1 - (1 - p)^k``, so a draw is accepted with probability ``q^n`` and a
        trial takes ``1 / q^n`` draws on average; more than :data:`MAX_REDRAWS` is refused.
        """
        k, p = self.scheme_k(s), s.r / self.n
        q = -math.expm1(k * math.log1p(-p)) if p < 1 else 1.0
        log10_draws = -self.n * math.log10(q) if q > 0 else math.inf
        if log10_draws > math.log10(MAX_REDRAWS):
            _fail(f"{path}.nonempty_rows", s.nonempty_rows,
                  f"with p = r/n = {p:.3g} and k = {k}, a draw has no empty row with probability q^n = "
                  f"10^-{log10_draws:.3g} (q = 1 - (1 - p)^k): about 10^{log10_draws:.3g} draws per trial, more than "
                  f"{MAX_REDRAWS:g}; expected a larger r, or nonempty_rows: false")

    # Derived per-scheme values -------------------------------------------------------------
    def scheme_attack(self, s: SchemeConfig) -> str:
        """The attack a scheme runs under (``none`` when it has no Byzantine worker)."""
        attack = self.attack if s.attack is None else s.attack
        return "none" if self.scheme_b(s) == 0 else attack

    def scheme_placement(self, s: SchemeConfig) -> str:
        """The Byzantine placement of a scheme (its own, else the experiment's)."""
        return self.placement if s.placement is None else s.placement

    def scheme_b(self, s: SchemeConfig) -> int:
        """Number of Byzantine workers of a scheme (0 under ``attack: none``)."""
        if s.attack == "none":
            return 0
        return self.b if s.b is None else s.b

    def scheme_k(self, s: SchemeConfig) -> int:
        """Number of partitions of a scheme."""
        if s.code == "matrix" and s.matrix is not None:
            from .codes import load_code, validate_allocation
            G = load_code(s.matrix) if isinstance(s.matrix, str) else validate_allocation(s.matrix)
            return G.shape[1]
        if s.code == "paper_n5":
            return 5
        return self.n if s.k is None else s.k

    def scheme_batch(self, s: SchemeConfig) -> int:
        """The scheme's minibatch ρ·B (its k partitions hold ρ·B/k samples each)."""
        return int(round(s.rho * self.batch_size))

    def scheme_noise_model(self, s: SchemeConfig) -> str:
        """How a scheme draws its noise before the sign (``per_copy`` or ``per_partition``)."""
        return self.noise_model if s.noise_model is None else s.noise_model

    def expanded_schemes(self) -> list[SchemeConfig]:
        """Every scheme, sweeps expanded (:func:`expand_sweeps`)."""
        return [x.scheme for x in expand_sweeps(self.schemes)]

    def output_dir(self) -> Path:
        return Path(self.out_dir.format(name=self.name))

    def replace(self, **changes: Any) -> "ExperimentConfig":
        """A copy with ``changes`` (validated)."""
        return config_from_dict({**config_to_dict(self), **{k: config_to_dict(v) for k, v in changes.items()}})


# ----------------------------------------------------------------------------------------------
# Sweeps


class SweptScheme(typing.NamedTuple):
    """One scheme of the expanded list: the scheme, its config path, and where it came from."""
    scheme: SchemeConfig
    path: str                       # e.g. "schemes[2][b=3,r=2]"
    parent: str                     # the configured scheme's name
    point: tuple[tuple[str, Any], ...]   # the swept (field, value) pairs; () when not swept


def _value_text(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _validate_sweep(s: SchemeConfig, path: str) -> None:
    if not s.sweep:
        _fail(f"{path}.sweep", s.sweep, "expected a mapping of fields to lists of values, e.g. {b: [1, 2, 3]}")
    for key, values in s.sweep.items():
        if key not in SWEEPABLE:
            close = difflib.get_close_matches(key, SWEEPABLE, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            _fail(f"{path}.sweep.{key}", key, f"{hint}sweepable fields: {', '.join(SWEEPABLE)}")
        if not values:
            _fail(f"{path}.sweep.{key}", list(values), "expected a non-empty list of values")
        if len(set(map(repr, values))) != len(values):
            _fail(f"{path}.sweep.{key}", list(values), "expected distinct values")


def expand_sweeps(schemes: tuple[SchemeConfig, ...]) -> list[SweptScheme]:
    """The schemes with every ``sweep`` expanded into one scheme per grid point.

    A scheme ``{name: bern, code: bernoulli, r: 2, sweep: {b: [1, 2], r: [2, 3]}}`` becomes four
    schemes named ``bern[b=1,r=2]``, ``bern[b=1,r=3]``, ``bern[b=2,r=2]``, ``bern[b=2,r=3]``
    (the grid in the order the fields are listed, the last varying fastest), each the scheme with
    those field values. Each swept value is checked like any configured one.
    """
    out = []
    for i, s in enumerate(schemes):
        if not s.sweep:
            out.append(SweptScheme(s, f"schemes[{i}]", s.name, ()))
            continue
        keys = list(s.sweep)
        for values in itertools.product(*(s.sweep[k] for k in keys)):
            point = tuple(zip(keys, values))
            label = ",".join(f"{k}={_value_text(v)}" for k, v in point)
            data = {**s.model_dump(), **dict(point), "name": f"{s.name}[{label}]", "sweep": None}
            try:
                scheme = SchemeConfig.model_validate(data)
            except ValidationError as exc:
                raise ConfigError(_pydantic_message(exc, prefix=f"schemes[{i}].sweep")) from None
            out.append(SweptScheme(scheme, f"schemes[{i}][{label}]", s.name, point))
    return out


# ----------------------------------------------------------------------------------------------
# Dict ↔ config


def _path_of(loc: tuple, prefix: str = "") -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The section model that owns the key at ``loc`` (for 'did you mean')."""
    model: Any = ExperimentConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        ann = field.annotation
        for candidate in (ann, *typing.get_args(ann)):
            inner = typing.get_args(candidate)
            for c in (candidate, *inner):
                if isinstance(c, type) and issubclass(c, BaseModel):
                    model = c
                    break
            else:
                continue
            break
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _pydantic_message(exc: ValidationError, prefix: str = "") -> str:
    """One line for the first error of a pydantic validation: field, value, what is allowed."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    # Errors of a union member carry the member's type name in the location: drop it.
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("str", "int", "float", "bool",
                                                                                  "list", "function-before"))))
    path = _path_of(loc, prefix)
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        if not prefix and len(loc) == 1 and key in _MOVED:
            return f"{path}: moved to {_MOVED[key]} (the runtime section: how a run executes, not what it computes)"
        model = _model_at(loc)
        names = list(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{path}: unknown key; {hint}allowed keys: {', '.join(names)}"
    if kind == "missing":
        return f"{path}: missing; this key is required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        model = _model_at((*loc, "_"))
        keys = ", ".join(model.model_fields) if model is not None else ""
        return f"{path}: got {value!r}; expected a mapping" + (f" with keys {keys}" if keys else "")
    if kind == "literal_error":
        allowed = str(err.get("ctx", {}).get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{path}: got {value!r}; allowed: {allowed}"
    if kind == "jax_ec":
        return f"{path}: got {value!r}; {err['msg']}"
    return f"{path}: got {value!r}; {err['msg'][0].lower()}{err['msg'][1:]}"


def config_from_dict(data: dict) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a plain dict (e.g. parsed YAML)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: got {type(data).__name__}; expected a mapping of keys to values")
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_pydantic_message(exc)) from None
    return cfg.validate()


def config_to_dict(cfg: Any) -> Any:
    """The plain (YAML-ready) form of a config: models → dicts, tuples → lists."""
    if isinstance(cfg, BaseModel):
        return {name: config_to_dict(getattr(cfg, name)) for name in type(cfg).model_fields}
    if isinstance(cfg, (tuple, list)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a config dict, returning a copy.

    Scheme entries are addressed by index: ``schemes.2.r=3``. A value that is not valid YAML is
    taken as a string; one whose mapping repeats a key is refused. Overrides apply in order (a
    later one of the same key wins, as with any repeated command-line option).
    """
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config: got {type(data).__name__}; expected a mapping of keys to values")
    data = copy.deepcopy(data) if data else {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set: got {item!r}; expected key=value (e.g. trials=20 or optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.load(raw, Loader=_StrictLoader)
        except _RepeatedKey as exc:
            where = ".".join(str(part) for part in (key.strip(), *exc.loc))
            raise ConfigError(f"--set {where}: repeated key {exc.key!r} in the value {raw!r}; each key may appear "
                              "once") from None
        except (yaml.YAMLError, RecursionError):
            value = raw
        parts = key.strip().split(".")
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {key}: {where!r} is not a valid index (0..{len(node) - 1})")
                node = node[int(part)]
            else:
                if part == "schemes" and "schemes" not in node:
                    node["schemes"] = config_to_dict(_default_schemes())
                node = node.setdefault(part, {})
                if not isinstance(node, (dict, list)):
                    raise ConfigError(f"--set {key}: {where!r} is not a section")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {key}: {last!r} is not a valid index (0..{len(node) - 1})")
            node[int(last)] = value
        else:
            node[last] = value
    return data


def default_config_path() -> Path:
    """The default job's config: the paper's Amazon setting (shipped inside the package)."""
    return Path(__file__).parent / "default.yaml"


def _file_problem(p: Path) -> str | None:
    """Why ``p`` cannot be read as a file (``"is a directory"``, …), or None when it can."""
    if p.is_dir():
        return "is a directory"
    if not p.exists():
        return "does not exist"
    if not p.is_file():
        return "is not a regular file"
    if not os.access(p, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def read_yaml(path: str | Path, field: str = "config", expected: str = "a YAML file") -> Any:
    """The YAML document in the file ``path``, every mapping key checked to appear once.

    Raises one :class:`ConfigError`: ``<field>: …`` when the file cannot be read or is not valid
    YAML, ``<dotted.path>: repeated key …`` (with both lines) when a mapping repeats a key.
    """
    p = Path(path)
    problem = _file_problem(p)
    if problem:
        raise ConfigError(f"{field}: {str(p)!r} {problem}; expected {expected}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{field}: {str(p)!r} is not UTF-8 text; expected {expected}") from None
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {str(p)!r} ({exc.strerror or exc}); expected {expected}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except _RepeatedKey as exc:
        raise ConfigError(f"{_path_of(exc.loc)}: repeated key in {str(p)!r} ({exc.lines}); each key "
                          "may appear once") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{field}: {str(p)!r} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{field}: {str(p)!r} nests lists or mappings too deeply; expected {expected}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                trials: int | None = None) -> tuple[ExperimentConfig, dict]:
    """Load a YAML config (default: the paper's Amazon job), apply overrides, validate.

    The file must hold one mapping: an empty file (or one of comments only) is refused rather than
    read as "every default" (``{}`` says that), as is a repeated key (:func:`read_yaml`).
    Returns the config and the raw dict it came from (for recording beside the results).
    """
    p = default_config_path() if path is None else Path(path)
    data = read_yaml(p, expected="a YAML config file (see configs/)")
    if data is None:
        raise ConfigError(f"config: {str(p)!r} is empty (no keys: blank, comments only or null); expected a "
                          "mapping of keys to values (write {} to run every default)")
    if not isinstance(data, dict):
        raise ConfigError(f"config: got a {type(data).__name__} in {str(p)!r}; expected a mapping of keys to values "
                          "(see configs/)")
    data = apply_overrides(data, list(overrides or []))
    if trials is not None:
        data["trials"] = trials
    return config_from_dict(data), data


def smoke_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config's "smoke" form: every scheme, 2 trials, 2 steps, tiny models and data subsets.

    Keeps the task, the cluster, the codes, the attacks and the model architecture; image tasks get
    width-4 models, the smallest minibatch every scheme splits into whole partitions, 2 minibatches
    of training samples and 32 test samples. Sweeps keep their first two values per field.
    """
    task, batch_size = cfg.task, cfg.batch_size
    schemes = expand_sweeps(cfg.schemes)
    if task.name not in ("amazon", "synthetic"):
        # The smallest minibatch B whose ρ·B splits into k whole partitions in every scheme.
        ks = math.lcm(*(cfg.scheme_k(x.scheme) for x in schemes))

        def fits(batch: int) -> bool:
            return all(abs(x.scheme.rho * batch - round(x.scheme.rho * batch)) < 1e-9
                       and round(x.scheme.rho * batch) >= cfg.scheme_k(x.scheme)
                       and round(x.scheme.rho * batch) % cfg.scheme_k(x.scheme) == 0 for x in schemes)
        batch_size = next(ks * m for m in range(1, 1001) if fits(ks * m))
        task = task.model_copy(update=dict(width=4, train_samples=2 * batch_size, test_samples=32))
    smoke_schemes = tuple(s.model_copy(update={"sweep": {k: tuple(v[:2]) for k, v in s.sweep.items()}})
                          if s.sweep else s for s in cfg.schemes)
    return cfg.model_copy(update=dict(trials=2, steps=2, eval_every=1, eval_every_epochs=None,
                                      batch_size=batch_size, task=task, schemes=smoke_schemes)).validate()
