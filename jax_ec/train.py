"""Election-coded SignSGD training: one run is a pure function of (config, scheme, key).

Per step ``t`` of a trial (DESIGN.md §1):

1. the minibatch of each of the ``k`` partitions is selected (``shards``: partition ``j`` owns a
   fixed shard of the training set and contributes ``B/k`` samples per step, Amazon style;
   ``split``: a global minibatch of ``B`` samples is cut into ``k`` contiguous partitions, CIFAR
   style);
2. every partition gradient ``g_j`` is computed **once** with ``vmap`` over partitions, however
   many workers hold partition ``j``;
3. workers may keep a momentum per partition, ``m_j ← β m_j + (1 − β) g_j`` (Amazon rule), and the
   election (:mod:`jax_ec.election`) turns the ``k`` signals into the global vote ``v``;
4. the master applies ``v`` with optax: ``u = v + λθ``, heavy-ball ``h ← μh + u``,
   ``θ ← θ − γ_t h`` (CIFAR rule; with λ = μ = 0 this is the Amazon rule ``θ ← θ − γ_t v``).

Steps run under ``lax.scan``; trials run in one call with ``jax.vmap`` over keys. Each trial's key
is split by purpose: code draw, Byzantine set, init, data order, noise, attack.

For the sparse logistic regression (Amazon) a second, exact formulation is used when it applies
(:class:`SparseLogRegTrainer`): its cost grows with the coordinates a step touches, not with
``k·D``. A momentum decay never changes a sign, so a partition's sign, and hence the vote, can only
change at coordinates the partition's samples touch; between touches the parameter moves by the
stored vote times the summed step sizes, applied lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from .attacks import byzantine_mask, uniform_placement
from .aggregators import (BITS_PER_COORDINATE, aggregate, real_attack_messages, repetition_groups,
                          repetition_weights, worker_means)
from .codes import draco, draw_bernoulli, load_code, paper_code_n5, uncoded, validate_allocation
from .config import ConfigError, ExperimentConfig, SchemeConfig
from .election import (election, fused_applies, fused_election, per_copy_election, per_copy_noise_sums,
                       signed_sum_election)
from .permutation import permute
from .tasks import Task

__all__ = ["Plan", "make_plan", "partition_grads", "ToleranceWarning", "TrialState", "Trainer", "SparseLogRegTrainer", "make_train",
           "SPARSE_ATTACKS"]

# Runs at least this long vote in the fused form with convolutional models (Trainer.fused_vote).
FUSED_CONV_MIN_STEPS = 1000
# From this many trials per device ``trial_batching: auto`` vmaps models without convolutions on the CPU too.
CPU_VMAP_MIN_TRIALS = 8
# ... as long as their partition gradients (trials · k · d float32) stay within this many bytes: past it
# the vmapped step leaves the cache and ``map`` is faster (digits MLP, T = 64: 37 MB, vmap +16%;
# T = 256: 148 MB, map +18%).
CPU_VMAP_MAX_BYTES = 64 * 2 ** 20

# Attacks whose message at a coordinate depends only on that coordinate's partition signs.
SPARSE_ATTACKS = ("none", "reverse", "directional", "omniscient")


@dataclass(frozen=True)
class Plan:
    """Everything static about one scheme's runs (shapes, names, schedule), resolved from a config."""
    scheme: str
    code: str
    n: int
    k: int
    b: int
    attack: str
    direction: int
    placement: str
    r: float | None
    nonempty_rows: bool
    matrix: np.ndarray | None
    noise_std: float
    partitioning: str
    batch_size: int        # the scheme's minibatch ρ·B
    per_partition: int     # ρ·B / k samples per partition and step
    steps_per_epoch: int
    total_steps: int
    eval_steps: tuple[int, ...]   # steps at which the metric is recorded (0 … total_steps)
    shuffle: bool
    lr: float
    lr_boundaries: tuple[int, ...]  # in steps
    lr_decay: float
    momentum: float
    weight_decay: float
    worker_momentum: float
    t_partition: float
    bandwidth: float
    aggregator: str = "vote"
    rho: float = 1.0
    groups: tuple[tuple[int, ...], ...] | None = None
    group_weights: tuple[int, ...] | None = None
    noise_model: str = "per_copy"

    @property
    def bits_per_coordinate(self) -> int:
        """Bits a worker sends per coordinate: 1 for sign votes, 32 for real-valued baselines."""
        return BITS_PER_COORDINATE[self.aggregator]

    def lr_at(self, steps: np.ndarray | jax.Array) -> jax.Array:
        """Step size ``γ_t``: ``lr · decay^(number of boundaries ≤ t)``."""
        count = sum((steps >= b).astype(jnp.int32) for b in self.lr_boundaries) if self.lr_boundaries else 0
        return jnp.float32(self.lr) * jnp.float32(self.lr_decay) ** count

    def lr_sum(self, t0: jax.Array, t1: jax.Array) -> jax.Array:
        """``Σ_{t0 ≤ s < t1} γ_s`` computed per piecewise-constant segment (integer counts × step size)."""
        edges = (0, *self.lr_boundaries)
        total = jnp.zeros(jnp.broadcast_shapes(jnp.shape(t0), jnp.shape(t1)), jnp.float32)
        for i, lo in enumerate(edges):
            hi = edges[i + 1] if i + 1 < len(edges) else np.iinfo(np.int32).max
            count = jnp.clip(jnp.minimum(t1, hi) - jnp.maximum(t0, lo), 0, None)
            total = total + jnp.float32(self.lr * self.lr_decay ** i) * count.astype(jnp.float32)
        return total


class ToleranceWarning(UserWarning):
    """A deterministic code is asked to face more Byzantine workers than it perfectly tolerates."""


def _warn_if_not_tolerant(scheme: str, G: np.ndarray, b: int) -> None:
    """Warn, with the exact verifier's counterexample, when a fixed code is not perfectly b-tolerant."""
    import warnings

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
            ToleranceWarning, stacklevel=3)


def steps_per_epoch(partitioning: str, num_train: int, batch: int, k: int) -> int:
    """Steps of one epoch for a minibatch of ``batch`` samples in ``k`` partitions.

    ``split``: ``round(N / batch)`` (the official CIFAR loader's last, partial minibatch counts as a
    step when it holds at least half a minibatch; the positions past N wrap to the start of the
    epoch's order). ``shards``: ``⌊(N / k) / (batch / k)⌋``, whole per-partition chunks of each shard
    (the official Amazon script)."""
    if partitioning == "shards":
        return (num_train // k) // (batch // k)
    return int(np.floor(num_train / batch + 0.5))


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


def make_plan(cfg: ExperimentConfig, scheme: SchemeConfig, num_train: int) -> Plan:
    """Resolve a scheme of a validated config into a :class:`Plan`; data-size errors raise here."""
    k = cfg.scheme_k(scheme)
    batch = cfg.scheme_batch(scheme)   # reduced minibatch: the scheme's minibatch is ρ·B
    per = batch // k
    what = f"batch_size: got {cfg.batch_size}" + (f" (scheme {scheme.name!r}: rho × batch_size = {batch})"
                                                 if scheme.rho != 1 else "")
    if cfg.partitioning == "shards" and num_train // k < per:
        raise ConfigError(f"{what}; each of the k = {k} shards holds {num_train // k} samples, fewer than the "
                          f"{per} it must contribute per step")
    if cfg.partitioning == "split" and batch > num_train:
        raise ConfigError(f"{what}; larger than the {num_train} training samples")
    spe = max(1, steps_per_epoch(cfg.partitioning, num_train, batch, k))
    total = cfg.steps if cfg.steps is not None else cfg.epochs * spe
    matrix = None
    if scheme.code == "matrix":
        matrix = (load_code(scheme.matrix, n=cfg.n) if isinstance(scheme.matrix, str)
                  else validate_allocation(scheme.matrix, n=cfg.n))
    elif scheme.code == "paper_n5":
        matrix = paper_code_n5()
    elif scheme.code == "draco":
        matrix = draco(cfg.n, cfg.scheme_b(scheme))
    elif scheme.code == "uncoded":
        matrix = uncoded(cfg.n)
    noise_std = cfg.noise_std if scheme.noise_std is None else scheme.noise_std
    b = cfg.scheme_b(scheme)
    if matrix is not None and scheme.code != "uncoded" and b > 0 and scheme.aggregator == "vote":
        _warn_if_not_tolerant(scheme.name, matrix, b)
    return Plan(
        scheme=scheme.name, code=scheme.code, n=cfg.n, k=k, b=cfg.scheme_b(scheme),
        attack=cfg.scheme_attack(scheme), direction=cfg.direction, placement=cfg.placement,
        r=scheme.r, nonempty_rows=scheme.nonempty_rows, matrix=matrix, noise_std=noise_std,
        partitioning=cfg.partitioning, batch_size=batch, per_partition=per,
        steps_per_epoch=spe, total_steps=total,
        eval_steps=eval_schedule(total, spe, cfg.eval_every, cfg.eval_every_epochs),
        shuffle=cfg.task.shuffle, lr=cfg.optim.lr if scheme.lr is None else scheme.lr,
        lr_boundaries=tuple(e * spe for e in cfg.optim.lr_boundaries), lr_decay=cfg.optim.lr_decay,
        momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay,
        worker_momentum=cfg.optim.worker_momentum, t_partition=cfg.time.t_partition,
        bandwidth=cfg.time.bandwidth, aggregator=scheme.aggregator, rho=scheme.rho,
        groups=repetition_groups(matrix) if scheme.aggregator == "repetition" else None,
        group_weights=repetition_weights(matrix) if scheme.aggregator == "repetition" else None,
        noise_model=cfg.scheme_noise_model(scheme),
    )


def partition_grads(loss: Callable, params: Any, model_state: Any, xs: jax.Array, ys: jax.Array,
                    key: jax.Array, keys: jax.Array | None = None) -> tuple[jax.Array, Any]:
    """``(k, d)`` flat gradients, one per partition, each computed once (``vmap`` over partitions).

    ``loss(params, model_state, x, y, key) -> (loss, new_model_state)``; ``xs``, ``ys`` hold the k
    partitions' samples ``(k, m, ...)``; partition j's augmentation key is ``split(key, k)[j]``
    (``keys``: the partitions' keys given directly, for a subset of the partitions).
    Inside the vmap a partition's forward pass sees only its own m samples, so BatchNorm normalizes
    with the partition's statistics ``μ_j, σ²_j``, as the worker computing it would. Each worker
    would update its copy of the running statistics, ``r ← β r + (1 − β) μ_j``; the master keeps
    the mean of the k copies, ``r' = β r + (1 − β) (1/k) Σ_j μ_j`` (likewise the variance).
    """
    grads, states = _per_partition_grads(loss, params, model_state, xs, ys,
                                         jax.random.split(key, xs.shape[0]) if keys is None else keys)
    return grads, jax.tree.map(lambda s: s.mean(axis=0), states)


def _partition_grad_tree(loss: Callable, params: Any, model_state: Any, xs: jax.Array, ys: jax.Array,
                         keys: jax.Array) -> tuple[Any, Any]:
    """Gradients (a parameter pytree, each leaf with a leading axis k') and new model states of the
    given partitions."""
    def one(x, y, k):
        return jax.grad(lambda p: loss(p, model_state, x, y, k), has_aux=True)(params)

    return jax.vmap(one)(xs, ys, keys)


def _per_partition_grads(loss: Callable, params: Any, model_state: Any, xs: jax.Array, ys: jax.Array,
                         keys: jax.Array) -> tuple[jax.Array, Any]:
    """Flat gradients ``(k', d)`` and new model states (leading axis k') of the given partitions."""
    grads, states = _partition_grad_tree(loss, params, model_state, xs, ys, keys)
    return jax.vmap(lambda g: ravel_pytree(g)[0])(grads), states


class TrialKeys(NamedTuple):
    data: jax.Array
    noise: jax.Array
    attack: jax.Array
    placement: jax.Array
    augment: jax.Array


class TrialState(NamedTuple):
    """State of one trial of the direct formulation."""
    params: Any
    model_state: Any       # non-trainable model state (BatchNorm running statistics), {} if none
    opt_state: Any
    worker_mom: jax.Array  # (k, d) per-partition momentum (zeros, unused when β = 0)
    G: jax.Array           # (n, k) allocation, float32 0/1
    byzantine: jax.Array   # (n,) bool, the fixed Byzantine set
    step: jax.Array        # int32
    keys: TrialKeys
    grads_finite: jax.Array   # bool: every partition gradient so far was finite (False: diverged)


class Trainer:
    """The direct formulation: dense partition gradients ``(k, d)`` and a dense election per step.

    ``init(key)`` draws the code, the Byzantine set and the initial parameters of one trial;
    ``run(state, data, num_steps)`` advances it under ``lax.scan``; ``evaluate(state, data)`` returns
    the task metric; ``train(key, data)`` is the whole run as one pure function of the key.
    All are safe under ``jax.vmap`` over trials (``data`` is shared: ``in_axes=None``).
    """

    def preferred_batching(self, trials: int = 1) -> str:
        """How ``trial_batching: auto`` batches ``trials`` trials (per device).

        ``vmap``, except on the CPU for models without convolutions when there are fewer than
        :data:`CPU_VMAP_MIN_TRIALS` trials, or when the T trials' partition gradients
        (T · k · d floats) exceed :data:`CPU_VMAP_MAX_BYTES`; there ``map`` runs faster.
        Measured by benchmarks/trials_sweep:

        * at T = 1, ``map`` gives 1.1–1.7× the per-trial throughput of ``vmap``;
        * from T = 8 ``vmap`` leads for the MLPs by 4–40%; the logistic regression is within 13%
          either way up to T = 64, and faster under ``vmap`` beyond;
        * the digits MLP at T = 256 (148 MB of partition gradients) runs 15% slower under
          ``vmap``.

        Convolutional models always ``vmap``: XLA:CPU runs convolutions inside a loop, such as
        ``lax.map``'s, many times slower (jax#12868). Both modes give the same numbers."""
        if jax.default_backend() == "cpu" and not self.task.convolutional:
            working_set = 4 * trials * self.plan.k * self.num_params
            if trials < CPU_VMAP_MIN_TRIALS or working_set > CPU_VMAP_MAX_BYTES:
                return "map"
        return "vmap"

    @property
    def fused_vote(self) -> bool:
        """Whether the vote runs in the fused form (``election(..., fused=True)``: the same votes, see
        :func:`jax_ec.election.fused_election`; with :attr:`leafwise_vote`, parameter array by
        parameter array). For models without convolutions always (digits MLP on the CPU: step
        −15% fused, −7% more leafwise); for convolutional models in runs of at least
        :data:`FUSED_CONV_MIN_STEPS` steps, which repay its compile time (ResNet-18 width 64 on the
        CPU: step 9.56 → 8.09 s, compile 17 → 41 s; a 2-step ResNet-50 smoke run took 3× longer);
        only where the fused form applies (:func:`jax_ec.election.fused_applies`: an attack acting
        coordinate by coordinate, not too many workers).
        """
        p = self.plan
        return ((not self.task.convolutional or p.total_steps >= FUSED_CONV_MIN_STEPS)
                and fused_applies(p.n, p.k, p.attack))

    @property
    def leafwise_vote(self) -> bool:
        """Whether :meth:`direction` votes parameter array by parameter array: the fused election on
        the raw partition gradients (``vote`` aggregator, no worker momentum, no noise, unsharded,
        an attack the fused form covers). Same votes as the flat form, without the (k, d)
        concatenation of the partition gradients: on the CPU the digits MLP step 7% faster, the
        ResNet-18 step 9% (than the flat fused form)."""
        p = self.plan
        return (self.fused_vote and p.aggregator == "vote" and p.worker_momentum == 0 and p.noise_std == 0
                and self.partition_axis is None)

    @property
    def step_loop(self) -> str:
        """How ``step_loop: auto`` advances steps: ``lax.scan`` inside one compiled call, except for
        convolutional models on the CPU, whose weight gradients XLA:CPU computes 55–70× slower inside
        a loop (jax#12868, measured here): there each step is one compiled call from Python."""
        return "python" if jax.default_backend() == "cpu" and self.task.convolutional else "scan"

    def __init__(self, plan: Plan, task: Task, partition_axis: str | None = None, partition_shards: int = 1):
        if partition_shards < 1 or plan.k % partition_shards:
            raise ConfigError(f"mesh.partitions: got {partition_shards}; must divide the number of partitions "
                              f"k = {plan.k} of scheme {plan.scheme!r} (allowed: "
                              f"{', '.join(str(m) for m in range(1, plan.k + 1) if plan.k % m == 0)})")
        self.plan = plan
        self.task = task
        # Partition sharding: under ``shard_map`` over the mesh axis ``partition_axis`` of
        # ``partition_shards`` devices, each device computes k / partition_shards partition gradients.
        self.partition_axis = partition_axis if partition_shards > 1 else None
        self.partition_shards = partition_shards if partition_axis is not None else 1
        master = [optax.add_decayed_weights(plan.weight_decay)] if plan.weight_decay > 0 else []
        schedule = (optax.piecewise_constant_schedule(plan.lr, {b: plan.lr_decay for b in plan.lr_boundaries})
                    if plan.lr_boundaries else plan.lr)
        master.append(optax.sgd(schedule, momentum=plan.momentum if plan.momentum > 0 else None))
        self.optimizer = optax.chain(*master)
        shapes = jax.eval_shape(task.init, jax.random.PRNGKey(0))[0]
        self.num_params = int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(shapes)))

    # ---------------------------------------------------------------- per-trial randomness
    def draw_code(self, key: jax.Array) -> jax.Array:
        """The trial's allocation matrix ``G`` (n, k) as float32."""
        p = self.plan
        if p.code == "bernoulli":
            return draw_bernoulli(key, p.n, p.k, p.r / p.n, p.nonempty_rows)
        return jnp.asarray(p.matrix, jnp.float32)

    @staticmethod
    def init_key(key: jax.Array) -> jax.Array:
        """The part of a trial key that draws the model's initial parameters (the same in every scheme)."""
        return jax.random.split(key, 7)[2]

    def _setup(self, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, TrialKeys]:
        k_code, k_byz, k_init, k_data, k_noise, k_attack, k_augment = jax.random.split(key, 7)
        G = self.draw_code(k_code)
        byz = byzantine_mask(self.plan.placement, k_byz, G, self.plan.b)
        return G, byz, k_init, TrialKeys(k_data, k_noise, k_attack, k_byz, k_augment)

    def init(self, key: jax.Array, initial: tuple[Any, Any] | None = None) -> TrialState:
        """A trial's initial state; ``initial = task.init(init_key(key))`` may be passed in precomputed."""
        G, byz, k_init, keys = self._setup(key)
        params, model_state = self.task.init(k_init) if initial is None else initial
        mom_dim = self.num_params if self.plan.worker_momentum > 0 else 0
        return TrialState(params, model_state, self.optimizer.init(params),
                          jnp.zeros((self.plan.k, mom_dim), jnp.float32), G, byz, jnp.int32(0), keys,
                          jnp.bool_(True))

    # ---------------------------------------------------------------- one step
    def batch_rows(self, key: jax.Array, step: jax.Array) -> jax.Array:
        """Training-set rows of each partition at ``step``: int32 ``(k, ρB/k)``.

        Step ``t`` is position ``t mod S`` of epoch ``e = t // S`` (``S`` steps per epoch). With
        ``shuffle``, epoch ``e`` visits the rows in the order of the keyed permutation
        ``π_{fold_in(key, e)}`` (:func:`jax_ec.permutation.permute`, evaluated at this step's
        positions only: O(B) per step), so no row repeats within an epoch; without, in file order.
        ``split``: step ``t`` takes positions ``p·ρB … (p + 1)·ρB − 1`` of the epoch's order
        (modulo N: the last step of an epoch that rounds up wraps to its start) and cuts them into
        k contiguous partitions; ``shards``: partition j reads ``ρB/k`` consecutive positions of
        its own shard's order.
        """
        p = self.plan
        epoch, pos = step // p.steps_per_epoch, step % p.steps_per_epoch
        epoch_key = jax.random.fold_in(key, epoch)
        n_train = self.task.num_train
        if p.partitioning == "shards":
            shard = n_train // p.k
            offsets = pos * p.per_partition + jnp.arange(p.per_partition)
            if p.shuffle:  # partition j's own order of its shard, evaluated at this step's positions
                local = jax.vmap(lambda j: permute(jax.random.fold_in(epoch_key, j), shard, offsets))(
                    jnp.arange(p.k))
            else:
                local = jnp.broadcast_to(offsets, (p.k, p.per_partition))
            return (jnp.arange(p.k)[:, None] * shard + local).astype(jnp.int32)
        offsets = (pos * p.batch_size + jnp.arange(p.batch_size)) % n_train
        rows = permute(epoch_key, n_train, offsets) if p.shuffle else offsets
        return rows.reshape(p.k, p.per_partition).astype(jnp.int32)

    # State fields whose axis after the trials axis runs over the k partitions (split under partition sharding).
    partition_fields: tuple[str, ...] = ("worker_mom",)

    def local_partitions(self) -> jax.Array:
        """Indices of the partitions this device computes: all k, or its block under partition sharding."""
        k = self.plan.k
        if self.partition_axis is None:
            return jnp.arange(k)
        size = k // self.partition_shards
        return jax.lax.axis_index(self.partition_axis) * size + jnp.arange(size)

    def _psum(self, x: jax.Array) -> jax.Array:
        return jax.lax.psum(x, self.partition_axis)

    def _gather(self, tree: Any) -> Any:
        """This device's partition block (leading axis) → all k partitions, in order (exact: a copy)."""
        if self.partition_axis is None:
            return tree
        return jax.tree.map(lambda x: jax.lax.all_gather(x, self.partition_axis, axis=0, tiled=True), tree)

    def partition_grads(self, params: Any, model_state: Any, xs: jax.Array, ys: jax.Array,
                        key: jax.Array) -> tuple[jax.Array, Any]:
        """See :func:`partition_grads`."""
        return partition_grads(self.task.loss, params, model_state, xs, ys, key)

    def step_byzantine(self, state: TrialState) -> jax.Array:
        """The Byzantine set in force at this step (redrawn per step under ``per_step`` placement)."""
        if self.plan.placement == "per_step":
            return uniform_placement(jax.random.fold_in(state.keys.placement, state.step), self.plan.n, self.plan.b)
        return state.byzantine

    def direction(self, state: TrialState, data: tuple) -> tuple[jax.Array, jax.Array, Any, jax.Array]:
        """The master's update direction of this step, the new worker momentum, the new model state,
        and whether every partition gradient of the step was finite.

        Sign schemes return the global vote in {−1, 0, +1}^d (``vote``: majority of partition signs;
        ``signed_sum``: local votes are the signs of the partitions' summed gradients); real-valued
        baselines return the aggregate of the workers' mean gradients (median, mean, repetition).

        Noise before the sign (``noise_std`` σ > 0), with ``noise_key_t = fold_in(noise_key, t)``:
        ``per_copy`` (default): worker i adds ``σ · normal(fold_in(fold_in(noise_key_t, i), j))`` to
        each partition j it holds (:func:`jax_ec.election.per_copy_election`; for ``signed_sum`` and
        the real-valued baselines, whose messages are sums, the summed noise of worker i is drawn at
        once as ``σ √L_i · normal(fold_in(noise_key_t, i))``, the same distribution);
        ``per_partition``: partition j gets ``σ · normal(fold_in(noise_key_t, j), (d,))``, shared by
        its holders. With worker momentum the noise is added to the momentum, right before the sign.

        Under partition sharding (``shard_map``), this device computes the gradients, momentum and
        noise of its block of partitions only; the vote combines the partial sign counts
        ``G[:, block] @ S_block`` with a ``psum`` (exact: small integers), the other aggregators,
        per-copy noise, the ``random_per_partition`` attack and the BatchNorm statistics gather the
        k partitions' values first, so every number equals the unsharded step's.
        """
        p = self.plan
        train_x, train_y = data[0], data[1]
        local = self.local_partitions()
        rows = self.batch_rows(state.keys.data, state.step)[local]
        keys = jax.random.split(jax.random.fold_in(state.keys.augment, state.step), p.k)[local]
        byzantine = self.step_byzantine(state)
        if self.leafwise_vote:
            # The vote of each parameter array straight from its k partition gradients (identical
            # votes: the fused election works coordinate by coordinate); the (k, d) concatenation
            # of the flat form is never built. It reads only the signs of its input, so it gets the
            # gradients themselves (no materialized sign pass).
            grads, states = _partition_grad_tree(self.task.loss, state.params, state.model_state,
                                                 train_x[rows], train_y[rows], keys)
            model_state = jax.tree.map(lambda s: s.mean(axis=0), states)
            votes = jax.tree.map(lambda g: fused_election(state.G, g.reshape(p.k, -1), byzantine,
                                                          p.attack, p.direction), grads)
            finite = jnp.stack([jnp.isfinite(g).all() for g in jax.tree.leaves(grads)]).all()
            return ravel_pytree(votes)[0], state.worker_mom, model_state, finite
        g, states = _per_partition_grads(self.task.loss, state.params, state.model_state, train_x[rows],
                                         train_y[rows], keys)
        model_state = jax.tree.map(lambda s: s.mean(axis=0), self._gather(states))
        finite = jnp.isfinite(g).all()
        if self.partition_axis is not None:
            finite = self._psum((~finite).astype(jnp.int32)) == 0
        mom = state.worker_mom
        if p.worker_momentum > 0:
            mom = p.worker_momentum * mom + (1.0 - p.worker_momentum) * g
            g = mom
        noise_key = jax.random.fold_in(state.keys.noise, state.step)
        per_copy = p.noise_std > 0 and p.noise_model == "per_copy"
        if p.noise_std > 0 and not per_copy:
            g = g + p.noise_std * jax.vmap(
                lambda j: jax.random.normal(jax.random.fold_in(noise_key, j), g.shape[1:], g.dtype))(local)
        attack_key = jax.random.fold_in(state.keys.attack, state.step)
        if p.aggregator == "vote":
            if per_copy:
                v = per_copy_election(state.G, self._gather(g), byzantine, p.attack, noise_key, p.noise_std,
                                      attack_key, p.direction)
            elif self.partition_axis is None or p.attack == "random_per_partition":
                # The fused form reads only the signs of its input: it gets g itself (no sign pass).
                fused = self.fused_vote
                g = self._gather(g)
                v = election(state.G, g if fused else jnp.sign(g), byzantine, p.attack, attack_key, p.direction,
                             fused=fused)
            else:
                v = election(jnp.take(state.G, local, axis=1), jnp.sign(g), byzantine, p.attack, attack_key,
                             p.direction, reduce=self._psum)
            return v, mom, model_state, finite
        g = self._gather(g)
        noise = per_copy_noise_sums(state.G, noise_key, p.noise_std, g.shape[1], g.dtype) if per_copy else None
        if p.aggregator == "signed_sum":
            v = signed_sum_election(state.G, g, byzantine, p.attack, attack_key, p.direction, count_noise=noise)
            return v, mom, model_state, finite
        M = worker_means(state.G, g)
        if noise is not None:   # worker i's mean of L_i noisy copies: σ/√L_i · ξ_i
            M = M + noise / jnp.maximum(state.G.sum(axis=1), 1.0)[:, None]
        if p.attack != "none":
            M = jnp.where(byzantine[:, None], real_attack_messages(p.attack, worker_means(state.G, g), g,
                                                                   attack_key, p.direction), M)
        return aggregate(p.aggregator, M, p.groups, p.group_weights), mom, model_state, finite

    def step(self, state: TrialState, data: tuple) -> TrialState:
        v, mom, model_state, finite = self.direction(state, data)
        _, unravel = ravel_pytree(state.params)
        updates, opt_state = self.optimizer.update(unravel(v), state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state._replace(params=params, model_state=model_state, opt_state=opt_state, worker_mom=mom,
                              step=state.step + 1, grads_finite=state.grads_finite & finite)

    def grads_finite(self, state) -> jax.Array:
        """Whether every partition gradient of the trial so far was finite (NaN/Inf: a divergence)."""
        return state.grads_finite

    # ---------------------------------------------------------------- loops and metrics
    def run(self, state, data: tuple, num_steps: int):
        """Advance ``num_steps`` steps under ``lax.scan``."""
        return jax.lax.scan(lambda s, _: (self.step(s, data), None), state, None, length=num_steps)[0]

    def params_of(self, state) -> Any:
        return state.params

    def model_state_of(self, state) -> Any:
        return state.model_state

    def evaluate(self, state, data: tuple) -> jax.Array:
        return self.task.evaluate(self.params_of(state), self.model_state_of(state), data[2], data[3])

    def eval_steps(self, eval_every: int | None = None) -> np.ndarray:
        """Steps at which the metric is recorded: the plan's (``eval_every`` steps or
        ``eval_every_epochs`` epochs apart, see :func:`eval_schedule`), or 0, eval_every,
        2·eval_every, … and the last step when ``eval_every`` is given."""
        if eval_every is None:
            return np.array(self.plan.eval_steps, dtype=np.int64)
        return np.array(eval_schedule(self.plan.total_steps, self.plan.steps_per_epoch, eval_every, None),
                        dtype=np.int64)

    def train(self, key: jax.Array, data: tuple, eval_every: int | None = None) -> jax.Array:
        """The whole run as one pure function of the key: the metric at every eval step ``(E,)``
        (:meth:`eval_steps`)."""
        state = self.init(key)
        steps = self.eval_steps(eval_every)
        lengths = np.diff(steps)
        out = [self.evaluate(state, data)[None]]
        i = 0
        while i < len(lengths):   # runs of equal chunk lengths under one lax.scan each
            j = i
            while j < len(lengths) and lengths[j] == lengths[i]:
                j += 1

            def chunk(s, _, length=int(lengths[i])):
                s = self.run(s, data, length)
                return s, self.evaluate(s, data)

            state, metrics = jax.lax.scan(chunk, state, None, length=j - i)
            out.append(metrics)
            i = j
        out = jnp.concatenate(out)
        assert out.shape[0] == steps.shape[0]
        return out

    def iteration_time(self, G: np.ndarray) -> float:
        """Simulated time per iteration: ``max_i load_i · ρ · t_partition + bits · d / bandwidth``
        (a partition of the scheme's ρ·B minibatch costs ρ of an uncoded one; a ρ scheme takes 1/ρ as
        many steps per epoch, so its time per epoch is ``max_i load_i · t_partition`` again)."""
        p = self.plan
        busiest = float(np.max(np.asarray(G).sum(axis=-1)))
        comm = p.bits_per_coordinate * self.num_params / p.bandwidth if p.bandwidth > 0 else 0.0
        return busiest * p.rho * p.t_partition + comm


class SparseState(NamedTuple):
    """State of one trial of the touched-coordinates formulation (sparse logistic regression).

    ``table[c] = (θ_{a_c}, v_{a_c}, a_c)``: the parameter and the vote of the step ``a_c`` at which
    coordinate ``c`` was last touched (``a_c`` stored as an exact float32 integer, below 2^24), so
    that at the start of step t ``θ_t[c] = θ_{a_c} − v_{a_c} · Σ_{a_c ≤ s < t} γ_s``. One row per
    coordinate: a step reads and writes a touched coordinate's three values with one random access
    each way (the step is memory-latency bound). The partition momenta are stored rescaled,
    ``m_j[c] = mom[c, j] · β^(t − ref)`` after step t (one positive factor for all coordinates, so
    ``sign(mom) = sign(m)``): a step adds ``(1 − β) g_j β^−(t − ref)`` at the touched coordinates
    only, and :meth:`SparseLogRegTrainer.run` folds the factor back in every few steps.
    """
    table: jax.Array    # (D, 3) float32: θ, vote, anchor step
    mom: jax.Array      # (D, k), coordinate-major
    signs: jax.Array    # (D, k4) int8: sign(mom), k padded to k4 = 4⌈k/4⌉ (zeros) so that a
                        # coordinate's signs are k4/4 int32 words: the election gathers words, not floats
    ref: jax.Array      # int32: the step whose momentum equals mom
    G: jax.Array
    byzantine: jax.Array
    step: jax.Array
    keys: TrialKeys

    @property
    def theta(self) -> jax.Array:
        return self.table[..., 0]

    @property
    def vote(self) -> jax.Array:
        return self.table[..., 1]

    @property
    def anchor(self) -> jax.Array:
        return self.table[..., 2].astype(jnp.int32)


class SparseLogRegTrainer(Trainer):
    """Exact touched-coordinates formulation for the sparse logistic regression with worker momentum.

    Applies with ``worker_momentum > 0``, plain sign steps at the master (no master momentum or
    weight decay), no noise, a fixed Byzantine set and an attack whose message at a coordinate depends
    only on that coordinate's partition signs (none, reverse, directional, omniscient). Gives the same
    votes as :class:`Trainer` (tested); costs O(k · B · F) per step instead of O(n · k · D).
    A coordinate no partition has touched yet has all partition signs 0, so its vote is the constant
    election outcome on an all-zero column (e.g. +1 under a directional +1 attack with b > 0).
    """

    def preferred_batching(self, trials: int = 1) -> str:
        """``map`` always: vmapped gathers and scatters run slower on XLA:CPU than one trial after another."""
        return "map"

    step_loop = "scan"
    partition_fields = ()

    # Largest number of steps between two rescalings of the momentum: β^−R stays below 1e30.
    @property
    def rescale_every(self) -> int:
        return max(1, int(30 * np.log(10) / -np.log(self.plan.worker_momentum)))

    @staticmethod
    def applies(plan: Plan, task: Task) -> bool:
        return (task.sparse_logreg and plan.aggregator == "vote" and plan.worker_momentum > 0 and plan.momentum == 0
                and plan.weight_decay == 0 and plan.noise_std == 0 and plan.attack in SPARSE_ATTACKS
                and plan.placement != "per_step" and plan.total_steps < 2 ** 24)

    def init(self, key: jax.Array, initial: tuple[Any, Any] | None = None) -> SparseState:
        G, byz, k_init, keys = self._setup(key)
        theta = (self.task.init(k_init) if initial is None else initial)[0]["w"]
        dim = theta.shape[0]
        zero_column = jnp.zeros((self.plan.k, 1), jnp.float32)
        v0 = election(G, zero_column, byz, self.plan.attack, None, self.plan.direction)[0]
        table = jnp.stack([theta, jnp.full((dim,), v0), jnp.zeros((dim,), jnp.float32)], axis=-1)
        return SparseState(table, jnp.zeros((dim, self.plan.k), jnp.float32),
                           jnp.zeros((dim, -(-self.plan.k // 4) * 4), jnp.int8), jnp.int32(-1), G, byz,
                           jnp.int32(0), keys)

    def step(self, state: SparseState, data: tuple) -> SparseState:
        p, t = self.plan, state.step
        beta = jnp.float32(p.worker_momentum)
        get = dict(mode="promise_in_bounds")
        rows = self.batch_rows(state.keys.data, t)
        idx = data[0].at[rows].get(**get)                     # (k, B/k, F) touched coordinates
        y = data[1].at[rows].get(**get)                       # (k, B/k)
        # θ_t at the touched coordinates (lazy: stored value minus the stored vote times Σγ).
        # The optimization barriers keep a product from being fused (contracted into an FMA) with
        # the sum that consumes it: XLA:CPU fuses the batched (vmap) program differently from a
        # trial alone, which changed the last bits (measured); a trial's numbers must not depend
        # on the trial batching.
        rows_before = state.table.at[idx].get(**get)         # (k, B/k, F, 3)
        shift = jax.lax.optimization_barrier(
            rows_before[..., 1] * p.lr_sum(rows_before[..., 2].astype(jnp.int32), t))
        theta_t = rows_before[..., 0] - shift
        z = theta_t[..., 0]
        for f in range(1, theta_t.shape[-1]):   # the logits in the fixed order of logreg_logits
            z = z + theta_t[..., f]
        residual = jax.lax.optimization_barrier((jax.nn.sigmoid(z) - y) / p.per_partition)
        # m_j ← β m_j + (1 − β) g_j, in the rescaled form: add (1 − β) g_j β^−(t − ref) where touched.
        scale = (1.0 - beta) * beta ** (-(t - state.ref).astype(jnp.float32))
        part = jnp.broadcast_to(jnp.arange(p.k)[:, None, None], idx.shape)
        mom = state.mom.at[idx, part].add(jnp.broadcast_to(scale * residual[..., None], idx.shape), **get)
        # Only the touched (coordinate, partition) pairs can change sign: refresh those in the int8
        # copy (duplicates write the same value), then read every touched coordinate's k signs as
        # k4/4 int32 words (XLA:CPU gathers per element: 4× fewer elements than int8, and floats).
        signs = state.signs.at[idx, part].set(jnp.sign(mom.at[idx, part].get(**get)).astype(jnp.int8), **get)
        coords = idx.reshape(-1)
        dim, k4 = signs.shape
        words = jax.lax.bitcast_convert_type(signs.reshape(dim, k4 // 4, 4), jnp.int32)
        touched = jax.lax.bitcast_convert_type(words.at[coords].get(**get), jnp.int8).reshape(-1, k4)
        S = touched[:, :p.k].astype(jnp.float32).T            # (k, touched): the k partition signs
        # The matmul form (the default): on these gathered, transposed columns it beats the fused
        # form (1.9 vs 2.3 ms/step).
        v = election(state.G, S, state.byzantine, p.attack, None, p.direction)
        # Duplicated coordinates write identical rows (the same θ_t and the same vote).
        rows_after = jnp.stack([theta_t.reshape(-1), v, jnp.broadcast_to(t.astype(jnp.float32), v.shape)], axis=-1)
        table = state.table.at[coords].set(rows_after, **get)
        return state._replace(table=table, mom=mom, signs=signs, step=t + 1)

    def rescale(self, state: SparseState) -> SparseState:
        """Fold the pending factor β^(t − 1 − ref) into the stored momentum (ref ← t − 1)."""
        factor = jnp.float32(self.plan.worker_momentum) ** (state.step - 1 - state.ref).astype(jnp.float32)
        return state._replace(mom=state.mom * factor, ref=state.step - 1)

    def run(self, state: SparseState, data: tuple, num_steps: int) -> SparseState:
        done = 0
        while done < num_steps:
            length = min(self.rescale_every, num_steps - done)
            state = super().run(self.rescale(state), data, length)
            done += length
        return state

    def model_state_of(self, state: SparseState) -> dict:
        return {}

    def grads_finite(self, state: SparseState) -> jax.Array:
        """Always true: a partition's gradient here is finite whenever θ is (its residual
        ``σ(z) − y`` lies in [−1, 1] and the features are 0/1), and θ is checked separately."""
        return jnp.bool_(True)

    def params_of(self, state: SparseState) -> dict:
        """Materialize θ after the last completed step (applies every pending lazy update)."""
        return {"w": state.theta - state.vote * self.plan.lr_sum(state.anchor, state.step)}


def trials_per_device(cfg: ExperimentConfig) -> int:
    """The most trials one device runs: ``⌈trials / mesh.trials⌉``."""
    return -(-cfg.trials // cfg.mesh.trials)


def resolved_modes(cfg: ExperimentConfig, trainer: Trainer) -> tuple[str, str]:
    """The run's ``(trial_batching, step_loop)``: the config's, or the trainer's choice for ``auto``."""
    batching = (trainer.preferred_batching(trials_per_device(cfg)) if cfg.trial_batching == "auto"
                else cfg.trial_batching)
    loop = trainer.step_loop if cfg.step_loop == "auto" else cfg.step_loop
    return batching, loop


def make_train(cfg: ExperimentConfig, scheme: SchemeConfig | str, task: Task,
               fast_path: bool | None = None) -> Trainer:
    """The trainer of one scheme: the touched-coordinates formulation where it applies, else direct.

    With ``cfg.mesh.partitions > 1`` the direct trainer is built for partition sharding (its step
    then runs under ``shard_map``, see :mod:`jax_ec.sharding`); the touched-coordinates trainer
    has no partition axis to shard and is not used then.
    """
    if isinstance(scheme, str):
        matches = [s for s in cfg.schemes if s.name == scheme]
        if not matches:
            raise ConfigError(f"scheme: unknown scheme {scheme!r}; allowed: {', '.join(s.name for s in cfg.schemes)}")
        scheme = matches[0]
    plan = make_plan(cfg, scheme, task.num_train)
    use_fast = cfg.fast_path if fast_path is None else fast_path
    if cfg.mesh.partitions > 1:
        from .sharding import PARTITIONS_AXIS
        return Trainer(plan, task, PARTITIONS_AXIS, cfg.mesh.partitions)
    if use_fast and SparseLogRegTrainer.applies(plan, task):
        return SparseLogRegTrainer(plan, task)
    return Trainer(plan, task)
