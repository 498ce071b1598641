"""Typed, frozen experiment configuration loaded from YAML.

Every field is checked at the boundary, before anything compiles: an unknown key, a value of the
wrong type or out of range raises one :class:`ConfigError` naming the field (dotted path), the
value, and what is allowed (with the closest valid key for a typo).

A config names the task, the simulated cluster (n workers, b Byzantine, attack, placement), the
schemes to compare (codes), the trials, the training length, the optimizer and the output folder.
See ``configs/`` for examples and the README for the reference.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Union

import yaml

from .aggregators import AGGREGATORS, REAL_AGGREGATORS
from .attacks import ATTACKS, PLACEMENTS, SIGN_ONLY_ATTACKS
from .election import MAX_PARTITIONS, NOISE_MODELS

__all__ = ["ConfigError", "TaskConfig", "OptimConfig", "SchemeConfig", "TimeConfig",
           "ExperimentConfig", "MeshConfig", "load_config", "config_from_dict", "config_to_dict",
           "apply_overrides", "default_config_path", "smoke_config", "TASKS", "CODES", "PARTITIONINGS"]

TASKS = ("amazon", "synthetic", "digits", "cifar10", "mnist", "fashion_mnist")
MODELS = ("mlp", "cnn", "resnet18", "resnet50")
TRIAL_BATCHING = ("auto", "vmap", "map")
STEP_LOOPS = ("auto", "scan", "python")
CODES = ("uncoded", "bernoulli", "paper_n5", "draco", "matrix")
PARTITIONINGS = ("shards", "split")


class ConfigError(ValueError):
    """A bad configuration value: the message names the field, the value and what is allowed."""


def _fail(path: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ConfigError(f"{path}: got {value!r}; {allowed}")


@dataclass(frozen=True)
class TaskConfig:
    """The learning task.

    ``amazon``: the paper's Amazon Employee Access logistic regression (test AUC); ``data_path``
    overrides the shipped CSV. ``synthetic``: a Gaussian-mixture classification with an MLP (test
    accuracy), a small fully offline task for the minibatch-split ("CIFAR style") mode.
    ``digits`` (shipped 8×8 digits), ``cifar10``, ``mnist``, ``fashion_mnist`` (TFDS, read from
    ``data_dir``; ``download: true`` lets TFDS fetch them): image classification with ``model``
    (``mlp``, ``cnn``, ``resnet18``, ``resnet50``; default cnn, resnet18 for CIFAR) of ``width``;
    ``augment`` (random crop + flip; default on for CIFAR); ``train_samples``/``test_samples``
    keep only the first samples (quick runs).
    """
    name: str = "amazon"
    data_path: str | None = None
    n_train: int = 26325
    num_samples: int = 4096
    num_features: int = 16
    num_classes: int = 4
    hidden: tuple[int, ...] = (64,)
    shuffle: bool = False
    model: str | None = None
    width: int | None = None
    data_dir: str | None = None
    download: bool = False
    augment: bool | None = None
    train_samples: int | None = None
    test_samples: int | None = None

    def validate(self, path: str) -> None:
        if self.name not in TASKS:
            _fail(f"{path}.name", self.name, f"allowed: {', '.join(TASKS)}")
        if self.data_path is not None and not Path(self.data_path).is_file():
            _fail(f"{path}.data_path", self.data_path,
                  "no such file; expected the Amazon Employee Access train.csv (plain or .gz)")
        for name in ("n_train", "num_samples", "num_features"):
            if getattr(self, name) < 1:
                _fail(f"{path}.{name}", getattr(self, name), "expected an integer >= 1")
        if self.num_classes < 2:
            _fail(f"{path}.num_classes", self.num_classes, "expected an integer >= 2")
        if any(h < 1 for h in self.hidden):
            _fail(f"{path}.hidden", self.hidden, "expected a list of integers >= 1")
        if self.model is not None and self.model not in MODELS:
            _fail(f"{path}.model", self.model, f"allowed: {', '.join(MODELS)}")
        if self.model is not None and self.name in ("amazon", "synthetic"):
            _fail(f"{path}.model", self.model, f"the {self.name} task has a fixed model; model applies to image tasks")
        for name in ("width", "train_samples", "test_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                _fail(f"{path}.{name}", getattr(self, name), "expected an integer >= 1 (or null)")


@dataclass(frozen=True)
class OptimConfig:
    """Worker and master update rules.

    Workers (Amazon rule): each partition keeps a momentum ``m_j ← β m_j + (1 − β) g_j`` and votes
    with ``sign(m_j)`` (``worker_momentum = β``; 0 votes with the gradient sign).
    Master (CIFAR rule): ``u = v + λ θ`` (``weight_decay = λ``), heavy-ball ``h ← μ h + u``
    (``momentum = μ``; 0 disables it), ``θ ← θ − γ_t h``. The step size is ``lr`` multiplied by
    ``lr_decay`` at every epoch listed in ``lr_boundaries`` (Amazon: 1e-3, then 1e-4 after epoch 1).
    """
    lr: float = 1e-3
    lr_boundaries: tuple[int, ...] = (1,)
    lr_decay: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    worker_momentum: float = 0.9

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


@dataclass(frozen=True)
class SchemeConfig:
    """One scheme to compare: a code (allocation) plus optional overrides of the attack and b.

    ``code``: ``uncoded`` (SignSGD-MV), ``bernoulli`` (needs ``r``; p = r/n; ``k`` partitions,
    default n; ``nonempty_rows`` redraws until no worker is empty), ``paper_n5`` (n = 5),
    ``draco`` (DRACO groups of ≥ 2b + 1 workers sharing partitions), ``matrix`` (``matrix``: a nested list
    or a CSV/.npy path). ``attack: none`` (or ``b: 0``) gives the no-attack baseline.

    ``aggregator``: ``vote`` (election coding: majority of partition signs), ``signed_sum`` (a worker
    sends the sign of its partitions' summed gradients), or a real-valued baseline sending 32-bit
    gradients: ``median`` (full-gradient coordinate-wise median, FGM), ``mean`` (plain SGD),
    ``repetition`` (median inside groups of identical workers, then the mean of the groups weighted
    by their numbers of partitions).
    ``rho``: reduced minibatch, as the authors ran it: the scheme's minibatch is ρ·B samples
    (``batch_size`` B), so each partition holds ρ of the samples it would hold at B and the
    per-worker computation per step is r_eff = ρ·r; an epoch then takes round(N / (ρ·B)) steps
    (``split``; ``shards``: ⌊shard / (ρ·B/k)⌋), and the learning-rate milestones, given in epochs,
    fall at correspondingly more steps. ``noise_std``, ``noise_model`` and ``lr`` override the
    experiment's noise before the sign and step size for this scheme (real-valued baselines move by
    gradient magnitudes, sign schemes by ±1, so they usually want different step sizes).
    """
    name: str
    code: str = "uncoded"
    r: float | None = None
    k: int | None = None
    nonempty_rows: bool = False
    matrix: Union[str, list, None] = None
    attack: str | None = None
    b: int | None = None
    aggregator: str = "vote"
    rho: float = 1.0
    noise_std: float | None = None
    noise_model: str | None = None
    lr: float | None = None


@dataclass(frozen=True)
class TimeConfig:
    """Simulated clock: ``t_iter = max_i load_i · t_partition + bits_per_coordinate · d / bandwidth``.

    ``bandwidth`` in bits per time unit; 0 means communication is free.
    """
    t_partition: float = 1.0
    bandwidth: float = 0.0

    def validate(self, path: str) -> None:
        if not self.t_partition > 0:
            _fail(f"{path}.t_partition", self.t_partition, "expected a value > 0")
        if self.bandwidth < 0:
            _fail(f"{path}.bandwidth", self.bandwidth, "expected a value >= 0 (0: free communication)")


@dataclass(frozen=True)
class MeshConfig:
    """Devices a run spreads over (a ``jax.sharding.Mesh`` with axes ``trials`` × ``partitions``).

    ``trials``: devices the trials are split over (T need not divide: the last trial is repeated to
    fill the last device and the copies are dropped); ``partitions``: devices each trial's k
    partition gradients are split over (must divide k; the sign counts combine with a ``psum``).
    Results do not depend on the mesh (tested), so a run may resume on another mesh.
    On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` gives N host devices; across
    hosts, call ``jax.distributed.initialize()`` first (README, "Scaling past one device").
    """
    trials: int = 1
    partitions: int = 1

    def validate(self, path: str) -> None:
        for name in ("trials", "partitions"):
            if getattr(self, name) < 1:
                _fail(f"{path}.{name}", getattr(self, name), "expected an integer >= 1 (devices along this axis)")

    @property
    def size(self) -> int:
        return self.trials * self.partitions


def _default_schemes() -> tuple[SchemeConfig, ...]:
    return (
        SchemeConfig(name="no_attack", code="uncoded", attack="none"),
        SchemeConfig(name="signsgd_mv", code="uncoded"),
        SchemeConfig(name="bernoulli_r2", code="bernoulli", r=2.0),
    )


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: schemes × trials on one task and one simulated cluster."""
    name: str = "amazon_paper"
    seed: int = 0
    trials: int = 10
    task: TaskConfig = field(default_factory=TaskConfig)
    n: int = 15
    b: int = 5
    attack: str = "directional"
    direction: int = 1
    placement: str = "uniform"
    noise_std: float = 0.0
    noise_model: str = "per_copy"
    partitioning: str = "shards"
    batch_size: int = 225
    epochs: int = 8
    steps: int | None = None
    eval_every: int = 39
    eval_every_epochs: float | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    time: TimeConfig = field(default_factory=TimeConfig)
    schemes: tuple[SchemeConfig, ...] = field(default_factory=_default_schemes)
    target: float | None = 0.8
    out_dir: str = "results/{name}"
    fast_path: bool = True
    trial_batching: str = "auto"
    step_loop: str = "auto"
    mesh: MeshConfig = field(default_factory=MeshConfig)
    memory_check: bool = True

    def validate(self) -> "ExperimentConfig":
        """Check every field and cross-field constraint; return self."""
        for name in ("trials", "n", "batch_size", "epochs", "eval_every"):
            if getattr(self, name) < 1:
                _fail(name, getattr(self, name), "expected an integer >= 1")
        if not 0 <= self.seed < 2 ** 32:
            _fail("seed", self.seed, "expected an integer >= 0 and < 2**32 (PRNGKey keeps 32 bits: larger "
                  "seeds would repeat smaller ones)")
        try:
            self.out_dir.format(name=self.name)
        except (KeyError, IndexError, ValueError) as exc:
            _fail("out_dir", self.out_dir, f"expected a folder path whose only placeholder is {{name}} ({exc!r})")
        if self.steps is not None and self.steps < 1:
            _fail("steps", self.steps, "expected an integer >= 1 (or null to run `epochs` epochs)")
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
        if self.trial_batching not in TRIAL_BATCHING:
            _fail("trial_batching", self.trial_batching, f"allowed: {', '.join(TRIAL_BATCHING)}")
        if self.step_loop not in STEP_LOOPS:
            _fail("step_loop", self.step_loop, f"allowed: {', '.join(STEP_LOOPS)}")
        if self.partitioning not in PARTITIONINGS:
            _fail("partitioning", self.partitioning, f"allowed: {', '.join(PARTITIONINGS)}")
        self.task.validate("task")
        self.optim.validate("optim")
        self.time.validate("time")
        self.mesh.validate("mesh")
        if not self.schemes:
            _fail("schemes", [], "expected at least one scheme")
        names = [s.name for s in self.schemes]
        if len(set(names)) != len(names):
            _fail("schemes", names, "scheme names must be unique")
        for i, s in enumerate(self.schemes):
            self._validate_scheme(s, f"schemes[{i}]")
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
        elif s.r is not None:
            _fail(f"{path}.r", s.r, f"r applies to bernoulli codes only (code is {s.code!r})")
        if s.code == "paper_n5" and self.n != 5:
            _fail(f"{path}.code", s.code, f"the paper's deterministic example needs n = 5 (n is {self.n})")
        if s.code == "matrix":
            if s.matrix is None:
                _fail(f"{path}.matrix", None, "a matrix code needs `matrix`: a nested 0/1 list or a CSV/.npy path")
            try:
                G = (load_code(s.matrix, n=self.n) if isinstance(s.matrix, str)
                     else validate_allocation(s.matrix, n=self.n))
            except (ValueError, FileNotFoundError) as exc:
                raise ConfigError(f"{path}.matrix: {exc}") from None
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
        if k % self.mesh.partitions:
            _fail("mesh.partitions", self.mesh.partitions,
                  f"must divide the k = {k} partitions of scheme {s.name!r} (allowed: "
                  f"{', '.join(str(m) for m in range(1, k + 1) if k % m == 0)})")

    # Derived per-scheme values -------------------------------------------------------------
    def scheme_attack(self, s: SchemeConfig) -> str:
        """The attack a scheme runs under (``none`` when it has no Byzantine worker)."""
        attack = self.attack if s.attack is None else s.attack
        return "none" if self.scheme_b(s) == 0 else attack

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

    def output_dir(self) -> Path:
        return Path(self.out_dir.format(name=self.name))


# ----------------------------------------------------------------------------------------------
# Strict dict → dataclass conversion


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError:
                continue  # try the next member of the union
        allowed = " or ".join(_type_name(a) for a in args)
        _fail(path, value, f"expected {allowed}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            _fail(path, value, f"expected a mapping with keys {', '.join(f.name for f in fields(tp))}")
        return _from_dict(tp, value, path)
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            _fail(path, value, f"expected a list of {_type_name(item_tp)}")
        return tuple(_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is list:
        if not isinstance(value, list):
            _fail(path, value, "expected a list")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        _fail(path, value, "expected a boolean (true/false)")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            _fail(path, value, "expected an integer")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                _fail(path, value, "expected a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(path, value, "expected a number")
        if value != value or value in (float("inf"), float("-inf")):
            _fail(path, value, "expected a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(path, value, "expected a string")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")  # a bug in the schema, not user input


def _from_dict(cls: type, data: dict, path: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: unknown key; {hint}allowed keys: {', '.join(names)}")
        kwargs[key] = _convert(value, hints[key], where)
    missing = [f.name for f in fields(cls)
               if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{path + '.' if path else ''}{missing[0]}: missing; this key is required")
    return cls(**kwargs)


def config_from_dict(data: dict) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a plain dict (e.g. parsed YAML)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: got {type(data).__name__}; expected a mapping of keys to values")
    return _from_dict(ExperimentConfig, data).validate()


def config_to_dict(cfg: Any) -> Any:
    """The plain (YAML-ready) form of a config: dataclasses → dicts, tuples → lists."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in fields(cfg)}
    if isinstance(cfg, (tuple, list)):
        return [config_to_dict(v) for v in cfg]
    return cfg


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a config dict, returning a copy.

    Scheme entries are addressed by index: ``schemes.2.r=3``.
    """
    import copy
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config: got {type(data).__name__}; expected a mapping of keys to values")
    data = copy.deepcopy(data) if data else {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set: got {item!r}; expected key=value (e.g. trials=20 or optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                trials: int | None = None) -> tuple[ExperimentConfig, dict]:
    """Load a YAML config (default: the paper's Amazon job), apply overrides, validate.

    Returns the config and the raw dict it came from (for recording beside the results).
    """
    p = default_config_path() if path is None else Path(path)
    if not p.is_file():
        raise ConfigError(f"config: file {str(p)!r} does not exist; expected a YAML config (see configs/)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {str(p)!r} is not valid YAML: {exc}") from None
    data = apply_overrides(data, list(overrides or []))
    if trials is not None:
        data["trials"] = trials
    return config_from_dict(data), data


def smoke_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config's "smoke" form: every scheme, 2 trials, 2 steps, tiny models and data subsets.

    Keeps the task, the cluster, the codes, the attacks and the model architecture; image tasks get
    width-4 models, the smallest minibatch every scheme splits into whole partitions, 2 minibatches
    of training samples and 32 test samples.
    """
    task, batch_size = cfg.task, cfg.batch_size
    if task.name not in ("amazon", "synthetic"):
        # The smallest minibatch B whose ρ·B splits into k whole partitions in every scheme.
        ks = math.lcm(*(cfg.scheme_k(s) for s in cfg.schemes))

        def fits(batch: int) -> bool:
            return all(abs(s.rho * batch - round(s.rho * batch)) < 1e-9 and round(s.rho * batch) >= cfg.scheme_k(s)
                       and round(s.rho * batch) % cfg.scheme_k(s) == 0 for s in cfg.schemes)
        batch_size = next(ks * m for m in range(1, 1001) if fits(ks * m))
        task = replace(task, width=4, train_samples=2 * batch_size, test_samples=32)
    return replace(cfg, trials=2, steps=2, eval_every=1, eval_every_epochs=None, batch_size=batch_size,
                   task=task).validate()
