"""From a config to schemes: each scheme's static shape and parameters, and the groups of schemes
that share one compiled program.

:func:`make_schemes` expands the config's sweeps and resolves every scheme into a :class:`Scheme`:
its :class:`~jax_ec.core.SchemeStatic` (what shapes the computation) and
:class:`~jax_ec.core.SchemeParams` (its numbers, as arrays), plus what the host needs around the
run (steps, evaluation steps, the simulated clock, the communication cost). :func:`group_schemes`
puts schemes of one static shape and one evaluation schedule together: a group is one compiled
call over its (scheme, trial) pairs. A scheme without Byzantine workers joins the group of an
attacked scheme of the same shape (the attack then touches no worker: the same numbers as
``attack: none``), so that a no-attack baseline costs no compilation of its own.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import numpy as np

from .aggregators import BITS_PER_COORDINATE, repetition_groups, repetition_weights
from .attacks import IPM_DEFAULT_SCALE
from .codes import draco, load_code, paper_code_n5, uncoded, validate_allocation
from .config import MAX_STEPS, ConfigError, ExperimentConfig, SchemeConfig, expand_sweeps
from .core import SchemeParams, SchemeStatic, steps_per_epoch
from .schedule import schedule_arrays

__all__ = ["Scheme", "Group", "make_schemes", "group_schemes", "stack_params", "iteration_time", "eval_schedule",
           "ToleranceWarning", "UnusedDataWarning"]


class ToleranceWarning(UserWarning):
    """A deterministic code is asked to face more Byzantine workers than it perfectly tolerates."""


class UnusedDataWarning(UserWarning):
    """A code leaves data unused: a partition no worker holds, or (a Bernoulli code) a likely
    all-zero draw, under which a trial never moves."""


class Scheme(NamedTuple):
    """One (expanded) scheme of an experiment, resolved."""
    name: str
    parent: str                          # the configured scheme's name (differs for swept points)
    point: tuple[tuple[str, Any], ...]   # the swept (field, value) pairs
    config: SchemeConfig
    static: SchemeStatic
    params: SchemeParams                 # NumPy arrays of one scheme
    total_steps: int
    eval_steps: tuple[int, ...]
    rho: float
    b: int
    attack: str
    code: str
    bits_per_coordinate: int
    t_partition: float
    bandwidth: float


class Group(NamedTuple):
    """Schemes that run as one compiled call: one static shape, one evaluation schedule."""
    static: SchemeStatic
    total_steps: int
    eval_steps: tuple[int, ...]
    schemes: tuple[Scheme, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.schemes)


def eval_schedule(total_steps: int, spe: int, eval_every: int, eval_every_epochs: float | None) -> tuple[int, ...]:
    """Evaluation steps: 0, then every ``eval_every`` steps, or at ``round(m · eval_every_epochs ·
    spe)`` for m = 1, 2, … (every scheme at the same epochs, whatever its steps per epoch), and the
    last step."""
    if eval_every_epochs is None:
        steps = list(range(0, total_steps, eval_every))
    else:
        steps, m = [0], 1
        while (s := int(np.floor(m * eval_every_epochs * spe + 0.5))) < total_steps:
            if s > steps[-1]:
                steps.append(s)
            m += 1
    return (*steps, total_steps)


def _warn_if_not_tolerant(scheme: str, G: np.ndarray, b: int) -> None:
    """Warn, with the exact verifier's counterexample, when a fixed code is not perfectly b-tolerant."""
    from .analysis.verify import verify
    if G.shape[1] > 25:  # exhaustive verification is for k <= 25
        return
    result = verify(G, b)
    if not result.tolerant:
        pattern = "".join("+" if x > 0 else "-" for x in result.pattern)
        byz = np.flatnonzero(result.byzantine).tolist()
        warnings.warn(
            f"schemes[{scheme!r}]: the code is not perfectly b-tolerant for b = {b} (worst-case margin "
            f"{result.margin}); counterexample: partition signs {pattern}, Byzantine workers {byz} sending "
            f"{result.direction:+d} flip the master's vote. The run goes on; see `jax-ec codes verify`.",
            ToleranceWarning, stacklevel=4)


UNUSED_DRAW_WARNING = 0.01   # warn when a Bernoulli trial is all zero with at least this probability


def _warn_if_data_unused(cfg: ExperimentConfig, s: SchemeConfig, G: np.ndarray | None, k: int) -> None:
    """Warn when a scheme leaves data unused (an all-zero fixed matrix is refused by the config).

    A fixed matrix with a zero column j: partition j's samples are drawn at every step and never
    reach the vote, so the scheme trains on the other partitions only. It is a warning, not an
    error, since a Bernoulli code does the same at random (a partition is held by no worker with
    probability ``(1 - r/n)^n ≈ e^{-r}``). A Bernoulli code without ``nonempty_rows``: the whole
    draw is zero, and the trial never moves, with probability ``(1 - r/n)^{n k}``; warned from
    :data:`UNUSED_DRAW_WARNING` up.
    """
    if G is not None:
        unheld = np.flatnonzero(G.sum(axis=0) == 0)
        if unheld.size:
            warnings.warn(
                f"schemes[{s.name!r}]: no worker holds partitions {unheld.tolist()} (of k = {k}): their samples, "
                f"{unheld.size} of every {k} in a minibatch, never reach the vote. The run goes on.",
                UnusedDataWarning, stacklevel=4)
    elif s.code == "bernoulli" and not s.nonempty_rows:
        zero = (1.0 - s.r / cfg.n) ** (cfg.n * k)
        if zero >= UNUSED_DRAW_WARNING:
            warnings.warn(
                f"schemes[{s.name!r}]: with p = r/n = {s.r / cfg.n:.3g}, a trial's n × k = {cfg.n} × {k} allocation is "
                f"all zero with probability (1 - p)^(n k) = {zero:.2g}; such a trial elects nothing and never moves "
                "(nonempty_rows: true redraws empty workers). The run goes on.", UnusedDataWarning, stacklevel=4)


def _fixed_matrix(cfg: ExperimentConfig, s: SchemeConfig) -> np.ndarray | None:
    if s.code == "matrix":
        return (load_code(s.matrix, n=cfg.n) if isinstance(s.matrix, str) else validate_allocation(s.matrix, n=cfg.n))
    if s.code == "paper_n5":
        return paper_code_n5()
    if s.code == "draco":
        return draco(cfg.n, cfg.scheme_b(s))
    if s.code == "uncoded":
        return uncoded(cfg.n)
    return None


def _resolve(cfg: ExperimentConfig, s: SchemeConfig, parent: str, point: tuple, num_train: int) -> Scheme:
    k = cfg.scheme_k(s)
    batch = cfg.scheme_batch(s)   # reduced minibatch: the scheme's minibatch is ρ·B
    per = batch // k
    what = f"batch_size: got {cfg.batch_size}" + (f" (scheme {s.name!r}: rho × batch_size = {batch})"
                                                 if s.rho != 1 else "")
    if cfg.partitioning == "shards" and num_train // k < per:
        raise ConfigError(f"{what}; each of the k = {k} shards holds {num_train // k} samples, fewer than the "
                          f"{per} it must contribute per step")
    if cfg.partitioning == "split" and batch > num_train:
        raise ConfigError(f"{what}; larger than the {num_train} training samples")
    spe = max(1, steps_per_epoch(cfg.partitioning, num_train, batch, k))
    total = cfg.steps if cfg.steps is not None else cfg.epochs * spe
    if total > MAX_STEPS:
        raise ConfigError(f"epochs: got {cfg.epochs}; {cfg.epochs} epochs of {spe} steps (scheme {s.name!r}) are "
                          f"{total} steps, more than the {MAX_STEPS} a run can count")
    if cfg.eval_every_epochs is not None and cfg.eval_every_epochs * spe < 1:
        raise ConfigError(f"eval_every_epochs: got {cfg.eval_every_epochs!r}; shorter than one step of scheme "
                          f"{s.name!r} ({spe} steps per epoch); expected at least 1/{spe} = {1 / spe:.3g} epochs")
    b, attack = cfg.scheme_b(s), cfg.scheme_attack(s)
    matrix = _fixed_matrix(cfg, s)
    _warn_if_data_unused(cfg, s, matrix, k)
    if matrix is not None and s.code != "uncoded" and b > 0 and s.aggregator == "vote":
        _warn_if_not_tolerant(s.name, matrix, b)
    noise_std = cfg.noise_std if s.noise_std is None else s.noise_std
    repetition = s.aggregator == "repetition"
    static = SchemeStatic(
        n=cfg.n, k=k, aggregator=s.aggregator, attack=attack, placement=cfg.scheme_placement(s),
        noise="none" if noise_std == 0 else cfg.scheme_noise_model(s),
        worker_momentum=cfg.optim.worker_momentum, momentum=cfg.optim.momentum,
        weight_decay=cfg.optim.weight_decay, partitioning=cfg.partitioning, batch=batch, steps_per_epoch=spe,
        shuffle=cfg.task.shuffle,
        groups=repetition_groups(matrix) if repetition else None,
        group_weights=repetition_weights(matrix) if repetition else None)
    lr, bounds = schedule_arrays(cfg.optim.lr if s.lr is None else s.lr, cfg.optim.lr_decay,
                                 tuple(e * spe for e in cfg.optim.lr_boundaries))
    bernoulli = s.code == "bernoulli"
    params = SchemeParams(
        G=np.zeros((cfg.n, k), np.float32) if matrix is None else matrix.astype(np.float32),
        p=np.float32(s.r / cfg.n if bernoulli else 0.0), bernoulli=np.bool_(bernoulli),
        nonempty_rows=np.bool_(bernoulli and s.nonempty_rows), b=np.int32(b),
        attack_sign=np.float32(cfg.direction), lr=lr, lr_boundaries=bounds, noise_std=np.float32(noise_std),
        attack_scale=np.float32(IPM_DEFAULT_SCALE if s.attack_scale is None else s.attack_scale))
    return Scheme(name=s.name, parent=parent, point=point, config=s, static=static, params=params,
                  total_steps=total, eval_steps=eval_schedule(total, spe, cfg.eval_every, cfg.eval_every_epochs),
                  rho=s.rho, b=b, attack=attack, code=s.code, bits_per_coordinate=BITS_PER_COORDINATE[s.aggregator],
                  t_partition=cfg.time.t_partition, bandwidth=cfg.time.bandwidth)


def make_schemes(cfg: ExperimentConfig, num_train: int) -> list[Scheme]:
    """Every scheme of a validated config (sweeps expanded), resolved; data-size errors raise here."""
    return [_resolve(cfg, x.scheme, x.parent, x.point, num_train) for x in expand_sweeps(cfg.schemes)]


def group_schemes(schemes: list[Scheme]) -> list[Group]:
    """Schemes of one static shape and evaluation schedule, together, in the order of their first
    scheme. A scheme without Byzantine workers (static attack ``none``) joins the first group of
    attacked schemes whose shape is otherwise its own (it then runs that attack's program with
    b = 0: no worker is Byzantine, the same numbers)."""
    keyed: dict[tuple, list[Scheme]] = {}
    for s in schemes:
        keyed.setdefault((s.static, s.total_steps, s.eval_steps), []).append(s)
    merged: dict[tuple, list[Scheme]] = {}
    for (static, total, evals), members in keyed.items():
        if static.attack == "none":
            host = next((key for key in keyed if key[0].attack != "none" and key[1:] == (total, evals)
                         and key[0]._replace(attack="none") == static), None)
            if host is not None:
                merged.setdefault(host, []).extend(m._replace(static=host[0]) for m in members)
                continue
        merged.setdefault((static, total, evals), []).extend(members)
    order = {s.name: i for i, s in enumerate(schemes)}
    groups = [Group(key[0], key[1], key[2], tuple(sorted(members, key=lambda m: order[m.name])))
              for key, members in merged.items()]
    return sorted(groups, key=lambda g: order[g.schemes[0].name])


def stack_params(schemes: tuple[Scheme, ...] | list[Scheme]) -> SchemeParams:
    """The schemes' parameters stacked along a leading axis (one row per scheme)."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *(s.params for s in schemes))


def iteration_time(scheme: Scheme, G: np.ndarray, num_params: int) -> float:
    """Simulated time per iteration: ``max_i load_i · ρ · t_partition + bits · d / bandwidth`` (a
    partition of the scheme's ρ·B minibatch costs ρ of an uncoded one; a ρ scheme takes 1/ρ as many
    steps per epoch, so its time per epoch is ``max_i load_i · t_partition`` again)."""
    busiest = float(np.max(np.asarray(G).sum(axis=-1)))
    comm = scheme.bits_per_coordinate * num_params / scheme.bandwidth if scheme.bandwidth > 0 else 0.0
    return busiest * scheme.rho * scheme.t_partition + comm
