"""Election-coded SignSGD, one trial as a pure function of (key, scheme parameters).

A scheme is split in two, in the style of gymnax's static/params split:

* :class:`SchemeStatic` — everything that shapes the computation (hashable): n workers, k
  partitions, the aggregator, the attack's kind, the placement, the kind of noise, the momenta, the
  minibatch and its epoch;
* :class:`SchemeParams` — everything else, as arrays: the code (a fixed allocation matrix or a
  Bernoulli probability), the number b of Byzantine workers, the attack's sign, the step-size
  schedule, the noise's σ, the attack's scale.

``make_train(static, task)`` returns pure functions (:class:`Train`) that take the params as an
argument, so every scheme of one static shape (a sweep over b × r × lr, uncoded against coded,
with and without attack) runs through one compiled program, ``vmap``-ed or mapped over
(scheme, trial) pairs.

Per step ``t`` of a trial:

1. the minibatch of each of the ``k`` partitions is selected (``shards``: partition ``j`` owns a
   fixed shard of the training set and contributes ``ρB/k`` samples per step, Amazon style;
   ``split``: a minibatch of ``ρB`` samples is cut into ``k`` contiguous partitions, CIFAR style);
2. every partition gradient ``g_j`` is computed **once** with ``vmap`` over partitions, however
   many workers hold partition ``j``;
3. workers may keep a momentum per partition, ``m_j ← β m_j + (1 − β) g_j`` (Amazon rule), and add
   noise before the sign; the election (:mod:`jax_ec.election`) turns the ``k`` signals into the
   global vote ``v``;
4. the master applies ``v`` with optax: ``u = v + λθ``, heavy-ball ``h ← μh + u``, ``θ ← θ − γ_t h``
   (CIFAR rule; with λ = μ = 0 this is the Amazon rule ``θ ← θ − γ_t v``).

Each trial's key is split by purpose: code draw, Byzantine set, init, data order, noise, attack,
augmentation. How the step runs (the vote kernel, partition sharding) comes from
:class:`jax_ec.runtime.Runtime`; it never changes the numbers.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from .adaptive import adaptive_placement, omniscient_inputs, signed_sum_inputs
from .aggregators import CENTERED, aggregate, worker_means
from .attacks import ADAPTIVE_PLACEMENTS, byzantine_mask, real_attack_messages, uniform_placement
from .codes import draw_code
from .election import (election, fused_election, per_copy_election, per_copy_noise_sums,
                       signed_sum_election)
from .permutation import permute
from .schedule import lr_at
from .tasks import Task

__all__ = ["SchemeStatic", "SchemeParams", "TrialKeys", "TrialState", "Train", "make_train", "init_key",
           "partition_grads", "batch_rows", "steps_per_epoch"]


class SchemeStatic(NamedTuple):
    """The shape of a scheme's computation (hashable; one compiled program per value).

    ``noise``: ``none``, ``per_copy`` or ``per_partition``; ``worker_momentum`` β, ``momentum`` μ and
    ``weight_decay`` λ (the update's structure follows from them being 0 or not); ``batch`` the
    minibatch ρ·B of ``k`` partitions; ``groups``/``group_weights`` the repetition aggregator's
    groups of identical workers and their numbers of partitions.
    """
    n: int
    k: int
    aggregator: str = "vote"
    attack: str = "none"
    placement: str = "uniform"
    noise: str = "none"
    worker_momentum: float = 0.0
    momentum: float = 0.0
    weight_decay: float = 0.0
    partitioning: str = "split"
    batch: int = 0
    steps_per_epoch: int = 1
    shuffle: bool = False
    groups: tuple[tuple[int, ...], ...] | None = None
    group_weights: tuple[int, ...] | None = None

    @property
    def per_partition(self) -> int:
        """Samples per partition and step: ρ·B / k."""
        return self.batch // self.k


class SchemeParams(NamedTuple):
    """A scheme's numbers, as arrays (a pytree: stacked along a leading axis for a group of schemes).

    ``G`` the fixed allocation matrix (n, k) (ignored when ``bernoulli``); ``p`` the Bernoulli
    probability and ``nonempty_rows`` whether to redraw until no worker is empty; ``b`` the number
    of Byzantine workers (also the f the robust aggregators assume); ``attack_sign`` the directional
    attack's ±1; ``lr``/``lr_boundaries`` the step-size schedule (:mod:`jax_ec.schedule`);
    ``noise_std`` σ; ``attack_scale`` the IPM attack's ε.
    """
    G: Any
    p: Any
    bernoulli: Any
    nonempty_rows: Any
    b: Any
    attack_sign: Any
    lr: Any
    lr_boundaries: Any
    noise_std: Any
    attack_scale: Any


class TrialKeys(NamedTuple):
    data: jax.Array
    noise: jax.Array
    attack: jax.Array
    placement: jax.Array
    augment: jax.Array


class TrialState(NamedTuple):
    """State of one trial of the dense formulation."""
    params: Any
    model_state: Any       # non-trainable model state (BatchNorm running statistics), {} if none
    opt_state: Any
    worker_mom: jax.Array  # (k, d) per-partition momentum ((k, 0) when β = 0)
    G: jax.Array           # (n, k) allocation, float32 0/1
    byzantine: jax.Array   # (n,) bool, the fixed Byzantine set
    step: jax.Array        # int32
    keys: TrialKeys
    grads_finite: jax.Array   # bool: every partition gradient so far was finite (False: diverged)
    center: Any = None        # (d,) centered clipping's center, the previous step's aggregate; None otherwise


class Train(NamedTuple):
    """The pure functions of one scheme shape (all safe under ``jax.vmap`` over (key, params)).

    ``init(key, params, initial=None) -> state``; ``step(state, params, data) -> state``;
    ``run(state, params, data, num_steps, start=None) -> state`` (``num_steps`` steps in one loop;
    a Python int or a traced integer, so that one compiled program advances any number of steps;
    ``start``: the step the state is at, when every trial of a batch shares it: the loop then keys
    its step-dependent work on an unbatched counter; the numbers do not depend on how a run is cut
    into calls);
    ``update(state, params, data) -> (u, worker_mom, model_state, finite)`` (the master's update
    direction before the optimizer); ``evaluate(state, params, data) -> metric``;
    ``model(state, params) -> (model parameters, model state)``; ``grads_finite(state) -> bool``. ``data`` is the task's
    ``(train_x, train_y, test_x, test_y)``, passed as an argument (never baked in as constants).
    """
    init: Callable
    step: Callable
    run: Callable
    update: Callable
    evaluate: Callable
    model: Callable
    grads_finite: Callable
    num_params: int
    partition_fields: tuple[str, ...]
    task: Task


def init_key(key: jax.Array) -> jax.Array:
    """The part of a trial key that draws the model's initial parameters (the same in every scheme)."""
    return jax.random.split(key, 7)[2]


def steps_per_epoch(partitioning: str, num_train: int, batch: int, k: int) -> int:
    """Steps of one epoch for a minibatch of ``batch`` samples in ``k`` partitions.

    ``split``: ``round(N / batch)`` (the official CIFAR loader's last, partial minibatch counts as a
    step when it holds at least half a minibatch; the positions past N wrap to the start of the
    epoch's order). ``shards``: ``⌊(N / k) / (batch / k)⌋``, whole per-partition chunks of each shard
    (the official Amazon script)."""
    if partitioning == "shards":
        return (num_train // k) // (batch // k)
    return int(np.floor(num_train / batch + 0.5))


def batch_rows(static: SchemeStatic, num_train: int, key: jax.Array, step: jax.Array) -> jax.Array:
    """Training-set rows of each partition at ``step``: int32 ``(k, ρB/k)``.

    Step ``t`` is position ``t mod S`` of epoch ``e = t // S`` (``S`` steps per epoch). With
    ``shuffle``, epoch ``e`` visits the rows in the order of the keyed permutation
    ``π_{fold_in(key, e)}`` (:func:`jax_ec.permutation.permute`, evaluated at this step's
    positions only: O(B) per step), so no row repeats within an epoch; without, in file order.
    ``split``: step ``t`` takes positions ``p·ρB … (p + 1)·ρB − 1`` of the epoch's order (modulo N:
    the last step of an epoch that rounds up wraps to its start) and cuts them into k contiguous
    partitions; ``shards``: partition j reads ``ρB/k`` consecutive positions of its own shard's order.
    """
    s = static
    per = s.per_partition
    epoch, pos = step // s.steps_per_epoch, step % s.steps_per_epoch
    epoch_key = jax.random.fold_in(key, epoch)
    if s.partitioning == "shards":
        shard = num_train // s.k
        offsets = pos * per + jnp.arange(per)
        if s.shuffle:  # partition j's own order of its shard, evaluated at this step's positions
            local = jax.vmap(lambda j: permute(jax.random.fold_in(epoch_key, j), shard, offsets))(jnp.arange(s.k))
        else:
            local = jnp.broadcast_to(offsets, (s.k, per))
        return (jnp.arange(s.k)[:, None] * shard + local).astype(jnp.int32)
    offsets = (pos * s.batch + jnp.arange(s.batch)) % num_train
    rows = permute(epoch_key, num_train, offsets) if s.shuffle else offsets
    return rows.reshape(s.k, per).astype(jnp.int32)


def _partition_grad_tree(loss: Callable, params: Any, model_state: Any, xs: jax.Array, ys: jax.Array,
                         keys: jax.Array) -> tuple[Any, Any]:
    """Gradients (a parameter pytree, each leaf with a leading axis k') and new model states of the
    given partitions."""
    def one(x, y, k):
        return jax.grad(lambda p: loss(p, model_state, x, y, k), has_aux=True)(params)

    return jax.vmap(one)(xs, ys, keys)


def _flat_partition_grads(loss: Callable, params: Any, model_state: Any, xs: jax.Array, ys: jax.Array,
                          keys: jax.Array) -> tuple[jax.Array, Any]:
    """Flat gradients ``(k', d)`` and new model states (leading axis k') of the given partitions."""
    grads, states = _partition_grad_tree(loss, params, model_state, xs, ys, keys)
    return jax.vmap(lambda g: ravel_pytree(g)[0])(grads), states


def partition_grads(loss: Callable, params: Any, model_state: Any, xs: jax.Array, ys: jax.Array,
                    key: jax.Array) -> tuple[jax.Array, Any]:
    """``(k, d)`` flat gradients, one per partition, each computed once (``vmap`` over partitions).

    ``loss(params, model_state, x, y, key) -> (loss, new_model_state)``; ``xs``, ``ys`` hold the k
    partitions' samples ``(k, m, ...)``; partition j's augmentation key is ``split(key, k)[j]``.
    Inside the vmap a partition's forward pass sees only its own m samples, so BatchNorm normalizes
    with the partition's statistics ``μ_j, σ²_j``, as the worker computing it would. Each worker
    would update its copy of the running statistics, ``r ← β r + (1 − β) μ_j``; the master keeps
    the mean of the k copies, ``r' = β r + (1 − β) (1/k) Σ_j μ_j`` (likewise the variance).
    """
    grads, states = _flat_partition_grads(loss, params, model_state, xs, ys, jax.random.split(key, xs.shape[0]))
    return grads, jax.tree.map(lambda s: s.mean(axis=0), states)


def master_update(static: SchemeStatic, lr: jax.Array) -> optax.GradientTransformation:
    """The master's optax chain at step size ``lr``: ``u = v + λθ``, ``h ← μh + u``, ``−lr · h``."""
    parts = [optax.add_decayed_weights(static.weight_decay)] if static.weight_decay > 0 else []
    return optax.chain(*parts, optax.sgd(lr, momentum=static.momentum if static.momentum > 0 else None))


def make_train(static: SchemeStatic, task: Task, runtime=None) -> Train:
    """The pure functions of one scheme shape on one task (see :class:`Train`).

    ``runtime`` (:class:`jax_ec.runtime.Runtime`) says how the vote is computed and whether the
    partitions are sharded over a mesh axis (``runtime.partition_axis``, ``runtime.partition_shards``);
    by default the matmul vote on one device.
    """
    s = static
    vote_form = getattr(runtime, "vote", "matmul")
    axis = getattr(runtime, "partition_axis", None)
    shards = getattr(runtime, "partition_shards", 1) if axis is not None else 1
    if shards > 1 and s.k % shards:
        raise ValueError(f"partition_shards: got {shards}; must divide the k = {s.k} partitions")
    shapes = jax.eval_shape(task.init, jax.random.PRNGKey(0))[0]
    num_params = int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(shapes)))
    num_train = task.num_train
    # Adaptive placement: the Byzantine set of each step is chosen from the step's signs (jax_ec.adaptive).
    adaptive = s.placement in ADAPTIVE_PLACEMENTS and s.attack != "none"
    if adaptive and s.aggregator not in ("vote", "signed_sum"):
        raise ValueError(f"placement: got {s.placement!r}; the adaptive placements choose which votes to corrupt: "
                         f"allowed with the vote and signed_sum aggregators, not {s.aggregator!r}")
    leafwise = (vote_form == "leafwise" and s.aggregator == "vote" and s.worker_momentum == 0 and s.noise == "none"
                and axis is None and not adaptive)
    centered = s.aggregator in CENTERED   # the aggregate of step t − 1 is the center of step t (zero at t = 0)

    def psum(x):
        return jax.lax.psum(x, axis)

    def gather(tree):
        """This device's partition block (leading axis) → all k partitions, in order (exact: a copy)."""
        if axis is None:
            return tree
        return jax.tree.map(lambda x: jax.lax.all_gather(x, axis, axis=0, tiled=True), tree)

    def local_partitions():
        if axis is None:
            return jnp.arange(s.k)
        size = s.k // shards
        return jax.lax.axis_index(axis) * size + jnp.arange(size)

    def init(key, params: SchemeParams, initial=None) -> TrialState:
        k_code, k_byz, k_init, k_data, k_noise, k_attack, k_augment = jax.random.split(key, 7)
        G = draw_code(k_code, params)
        byz = byzantine_mask(s.placement, k_byz, G, params.b)
        model_params, model_state = task.init(k_init) if initial is None else initial
        opt_state = master_update(s, jnp.float32(0)).init(model_params)
        mom_dim = num_params if s.worker_momentum > 0 else 0
        center = jnp.zeros((num_params,), jnp.float32) if centered else None
        return TrialState(model_params, model_state, opt_state, jnp.zeros((s.k, mom_dim), jnp.float32), G, byz,
                          jnp.int32(0), TrialKeys(k_data, k_noise, k_attack, k_byz, k_augment), jnp.bool_(True),
                          center)

    def step_byzantine(state: TrialState, params: SchemeParams) -> jax.Array:
        """The Byzantine set in force at this step (redrawn per step under ``per_step`` placement; the
        adaptive placements choose theirs in ``update``, from the step's signs)."""
        if s.placement == "per_step":
            return uniform_placement(jax.random.fold_in(state.keys.placement, state.step), s.n, params.b)
        return state.byzantine

    def update(state: TrialState, params: SchemeParams, data: tuple):
        """The master's update direction of this step, the new worker momentum, the new model state,
        and whether every partition gradient of the step was finite.

        Sign schemes return the global vote in {−1, 0, +1}^d (``vote``: majority of partition signs;
        ``signed_sum``: local votes are the signs of the partitions' summed gradients); real-valued
        baselines return the aggregate of the workers' mean gradients (:mod:`jax_ec.aggregators`;
        the robust ones assume f = ``params.b`` Byzantine workers; centered clipping starts from the
        previous step's aggregate, ``state.center``). Byzantine workers' real messages are computed
        from the noiseless worker means (:mod:`jax_ec.attacks`, with this step's Byzantine mask and
        ``params.attack_scale``).

        Noise before the sign (σ > 0), with ``noise_key_t = fold_in(noise_key, t)``: ``per_copy``:
        worker i adds ``σ · normal(fold_in(fold_in(noise_key_t, i), j))`` to each partition j it
        holds (:func:`jax_ec.election.per_copy_election`; for ``signed_sum`` and the real-valued
        baselines, whose messages are sums, worker i's summed noise is drawn at once as
        ``σ √L_i · normal(fold_in(noise_key_t, i))``, the same distribution); ``per_partition``:
        partition j gets ``σ · normal(fold_in(noise_key_t, j), (d,))``, shared by its holders. With
        worker momentum the noise is added to the momentum, right before the sign.

        Under partition sharding (``shard_map``), this device computes the gradients, momentum and
        noise of its block of partitions only; the vote combines the partial sign counts
        ``G[:, block] @ S_block`` with a ``psum`` (exact: small integers), the other aggregators,
        per-copy noise, the ``random_per_partition`` attack and the BatchNorm statistics gather the
        k partitions' values first, so every number equals the unsharded step's.

        Adaptive placement (``adaptive``, ``adaptive_exact``; the attack is ``omniscient``): the
        Byzantine set of the step is chosen from ``G`` and the step's k partition signs (after the
        worker momentum and any per-partition noise; without the per-copy noise, which the adversary
        does not see), as :func:`jax_ec.adaptive.adaptive_placement` (for ``signed_sum``: from the
        signs of the summed gradients).
        """
        train_x, train_y = data[0], data[1]
        local = local_partitions()
        rows = batch_rows(s, num_train, state.keys.data, state.step)[local]
        keys = jax.random.split(jax.random.fold_in(state.keys.augment, state.step), s.k)[local]
        byzantine = step_byzantine(state, params)
        if leafwise:
            # The vote of each parameter array straight from its k partition gradients (identical
            # votes: the fused election works coordinate by coordinate); the (k, d) concatenation
            # of the flat form is never built. It reads only the signs of its input, so it gets the
            # gradients themselves (no materialized sign pass).
            grads, states = _partition_grad_tree(task.loss, state.params, state.model_state,
                                                 train_x[rows], train_y[rows], keys)
            model_state = jax.tree.map(lambda x: x.mean(axis=0), states)
            votes = jax.tree.map(lambda g: fused_election(state.G, g.reshape(s.k, -1), byzantine, s.attack,
                                                          params.attack_sign), grads)
            finite = jnp.stack([jnp.isfinite(g).all() for g in jax.tree.leaves(grads)]).all()
            return ravel_pytree(votes)[0], state.worker_mom, model_state, finite
        g, states = _flat_partition_grads(task.loss, state.params, state.model_state, train_x[rows], train_y[rows],
                                          keys)
        model_state = jax.tree.map(lambda x: x.mean(axis=0), gather(states))
        finite = jnp.isfinite(g).all()
        if axis is not None:
            finite = psum((~finite).astype(jnp.int32)) == 0
        mom = state.worker_mom
        if s.worker_momentum > 0:
            mom = s.worker_momentum * mom + (1.0 - s.worker_momentum) * g
            g = mom
        noise_key = jax.random.fold_in(state.keys.noise, state.step)
        if s.noise == "per_partition":
            g = g + params.noise_std * jax.vmap(
                lambda j: jax.random.normal(jax.random.fold_in(noise_key, j), g.shape[1:], g.dtype))(local)
        attack_key = jax.random.fold_in(state.keys.attack, state.step)
        if adaptive:
            full = gather(g)
            C, m = (signed_sum_inputs(state.G, full) if s.aggregator == "signed_sum"
                    else omniscient_inputs(state.G, jnp.sign(full)))
            byzantine = adaptive_placement(s.placement, C, m, params.b)
        if s.aggregator == "vote":
            if s.noise == "per_copy":
                v = per_copy_election(state.G, gather(g), byzantine, s.attack, noise_key, params.noise_std,
                                      attack_key, params.attack_sign)
            elif axis is None or s.attack == "random_per_partition":
                # The fused form reads only the signs of its input: it gets g itself (no sign pass).
                fused = vote_form in ("fused", "leafwise")
                g = gather(g)
                v = election(state.G, g if fused else jnp.sign(g), byzantine, s.attack, attack_key,
                             params.attack_sign, fused=fused)
            else:
                v = election(jnp.take(state.G, local, axis=1), jnp.sign(g), byzantine, s.attack, attack_key,
                             params.attack_sign, reduce=psum)
            return v, mom, model_state, finite
        g = gather(g)
        noise = (per_copy_noise_sums(state.G, noise_key, params.noise_std, g.shape[1], g.dtype)
                 if s.noise == "per_copy" else None)
        if s.aggregator == "signed_sum":
            v = signed_sum_election(state.G, g, byzantine, s.attack, attack_key, params.attack_sign,
                                    count_noise=noise)
            return v, mom, model_state, finite
        M = worker_means(state.G, g)
        if noise is not None:   # worker i's mean of L_i noisy copies: σ/√L_i · ξ_i
            M = M + noise / jnp.maximum(state.G.sum(axis=1), 1.0)[:, None]
        if s.attack != "none":
            M = jnp.where(byzantine[:, None], real_attack_messages(
                s.attack, worker_means(state.G, g), g, attack_key, params.attack_sign, byzantine=byzantine,
                scale=params.attack_scale), M)
        u = aggregate(s.aggregator, M, s.groups, s.group_weights, f=params.b, center=state.center)
        return u, mom, model_state, finite

    def step(state: TrialState, params: SchemeParams, data: tuple) -> TrialState:
        v, mom, model_state, finite = update(state, params, data)
        _, unravel = ravel_pytree(state.params)
        lr = lr_at(params.lr, params.lr_boundaries, state.step)
        updates, opt_state = master_update(s, lr).update(unravel(v), state.opt_state, state.params)
        model_params = optax.apply_updates(state.params, updates)
        return state._replace(params=model_params, model_state=model_state, opt_state=opt_state,
                              worker_mom=mom, step=state.step + 1, grads_finite=state.grads_finite & finite,
                              center=v if centered else state.center)

    def run(state: TrialState, params: SchemeParams, data: tuple, num_steps, start=None) -> TrialState:
        return jax.lax.fori_loop(0, num_steps, lambda i, c: step(c, params, data), state)

    def model(state: TrialState, params: SchemeParams):
        return state.params, state.model_state

    def evaluate(state: TrialState, params: SchemeParams, data: tuple) -> jax.Array:
        return task.evaluate(state.params, state.model_state, data[2], data[3])

    return Train(init=init, step=step, run=run, update=update, evaluate=evaluate, model=model,
                 grads_finite=lambda state: state.grads_finite, num_params=num_params,
                 partition_fields=("worker_mom",), task=task)
