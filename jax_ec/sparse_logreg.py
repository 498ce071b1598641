"""The touched-coordinates formulation of the Amazon logistic regression, behind the same protocol
as :func:`jax_ec.core.make_train` (init / step / run / evaluate, one trial a pure function of
(key, scheme parameters)).

With worker momentum (``m_j ← β m_j + (1 − β) g_j``) and plain sign steps at the master, the vote at
a coordinate can only change where some partition's samples touch it: a momentum decay never
changes a sign, so between touches a coordinate keeps its vote and moves by that vote times the
summed step sizes. A step therefore costs O(k · B · F) (F = 129 active features per row) instead
of O(n · k · D) for D = 263,500 coordinates, and gives the same votes as the dense formulation at
every step and coordinate (tested on the real features).

It applies (:func:`applies`) with worker momentum, no master momentum or weight decay, no noise, a
fixed Byzantine set (``uniform`` or ``most_loaded``: not ``per_step``, nor the adaptive placements,
which read every coordinate's signs to choose the set) and an attack whose message at a coordinate depends only on that coordinate's
partition signs (:data:`jax_ec.attacks.COORDINATEWISE_ATTACKS`). A coordinate no partition has
touched yet has all partition signs 0, so its vote is the constant election outcome on an all-zero
column (e.g. +1 under a directional +1 attack with b > 0).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .attacks import COORDINATEWISE_ATTACKS, byzantine_mask
from .codes import draw_code
from .core import SchemeParams, SchemeStatic, Train, TrialKeys, batch_rows
from .election import election
from .schedule import lr_sum
from .tasks import Task

__all__ = ["SparseState", "applies", "make_train", "rescale_every", "working_memory", "MAX_STEPS"]

# The anchor step of a coordinate is stored as a float32 integer: exact below 2^24.
MAX_STEPS = 2 ** 24


class SparseState(NamedTuple):
    """State of one trial of the touched-coordinates formulation.

    ``table[c] = (θ_{a_c}, v_{a_c}, a_c)``: the parameter and the vote of the step ``a_c`` at which
    coordinate ``c`` was last touched (``a_c`` stored as an exact float32 integer, below 2^24), so
    that at the start of step t ``θ_t[c] = θ_{a_c} − v_{a_c} · Σ_{a_c ≤ s < t} γ_s``. One row per
    coordinate: a step reads and writes a touched coordinate's three values with one random access
    each way (the step is memory-latency bound). The partition momenta are stored rescaled,
    ``m_j[c] = mom[c, j] · β^(t − ref)`` after step t (one positive factor for all coordinates, so
    ``sign(mom) = sign(m)``): a step adds ``(1 − β) g_j β^−(t − ref)`` at the touched coordinates
    only, and ``run`` folds the factor back in at every multiple of :func:`rescale_every` steps.
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


def applies(static: SchemeStatic, task: Task, total_steps: int) -> bool:
    """Whether the touched-coordinates formulation computes this scheme exactly."""
    return (task.sparse_logreg and static.aggregator == "vote" and static.worker_momentum > 0
            and static.momentum == 0 and static.weight_decay == 0 and static.noise == "none"
            and static.attack in COORDINATEWISE_ATTACKS and static.placement in ("uniform", "most_loaded")
            and total_steps < MAX_STEPS)


def rescale_every(beta: float) -> int:
    """Largest number of steps between two rescalings of the momentum: β^−R stays below 1e30."""
    return max(1, int(30 * np.log(10) / -np.log(beta)))


def working_memory(static: SchemeStatic, num_params: int) -> int:
    """Bytes of one trial's state (its step's working set is O(touched coordinates), small):
    the table (3 floats), the momenta (k floats) and the int8 signs (k rounded up to 4) per
    coordinate."""
    return num_params * (4 * 3 + 4 * static.k + -(-static.k // 4) * 4)


def make_train(static: SchemeStatic, task: Task, runtime=None) -> Train:
    """The touched-coordinates formulation's pure functions (see :class:`jax_ec.core.Train`)."""
    s = static
    beta_value = s.worker_momentum
    every = rescale_every(beta_value)
    num_train = task.num_train
    shapes = jax.eval_shape(task.init, jax.random.PRNGKey(0))[0]
    num_params = int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(shapes)))

    def init(key: jax.Array, params: SchemeParams, initial=None) -> SparseState:
        k_code, k_byz, k_init, k_data, k_noise, k_attack, k_augment = jax.random.split(key, 7)
        G = draw_code(k_code, params)
        byz = byzantine_mask(s.placement, k_byz, G, params.b)
        theta = (task.init(k_init) if initial is None else initial)[0]["w"]
        dim = theta.shape[0]
        zero_column = jnp.zeros((s.k, 1), jnp.float32)
        v0 = election(G, zero_column, byz, s.attack, None, params.attack_sign)[0]
        table = jnp.stack([theta, jnp.full((dim,), v0), jnp.zeros((dim,), jnp.float32)], axis=-1)
        return SparseState(table, jnp.zeros((dim, s.k), jnp.float32), jnp.zeros((dim, -(-s.k // 4) * 4), jnp.int8),
                           jnp.int32(-1), G, byz, jnp.int32(0),
                           TrialKeys(k_data, k_noise, k_attack, k_byz, k_augment))

    def step(state: SparseState, params: SchemeParams, data: tuple) -> SparseState:
        t = state.step
        beta = jnp.float32(beta_value)
        get = dict(mode="promise_in_bounds")
        rows = batch_rows(s, num_train, state.keys.data, t)
        idx = data[0].at[rows].get(**get)                     # (k, B/k, F) touched coordinates
        y = data[1].at[rows].get(**get)                       # (k, B/k)
        # θ_t at the touched coordinates (lazy: stored value minus the stored vote times Σγ).
        # The optimization barriers keep a product from being fused (contracted into an FMA) with
        # the sum that consumes it: XLA:CPU fuses the batched (vmap) program differently from a
        # trial alone, which changed the last bits; a trial's numbers must not depend on the trial
        # batching.
        rows_before = state.table.at[idx].get(**get)         # (k, B/k, F, 3)
        shift = jax.lax.optimization_barrier(
            rows_before[..., 1] * lr_sum(params.lr, params.lr_boundaries, rows_before[..., 2].astype(jnp.int32), t))
        theta_t = rows_before[..., 0] - shift
        z = theta_t[..., 0]
        for f in range(1, theta_t.shape[-1]):   # the logits in the fixed order of logreg_logits
            z = z + theta_t[..., f]
        residual = jax.lax.optimization_barrier((jax.nn.sigmoid(z) - y) / s.per_partition)
        # m_j ← β m_j + (1 − β) g_j, in the rescaled form: add (1 − β) g_j β^−(t − ref) where touched.
        scale = (1.0 - beta) * beta ** (-(t - state.ref).astype(jnp.float32))
        part = jnp.broadcast_to(jnp.arange(s.k)[:, None, None], idx.shape)
        mom = state.mom.at[idx, part].add(jnp.broadcast_to(scale * residual[..., None], idx.shape), **get)
        # Only the touched (coordinate, partition) pairs can change sign: refresh those in the int8
        # copy (duplicates write the same value), then read every touched coordinate's k signs as
        # k4/4 int32 words (XLA:CPU gathers per element: 4× fewer elements than int8, and floats).
        signs = state.signs.at[idx, part].set(jnp.sign(mom.at[idx, part].get(**get)).astype(jnp.int8), **get)
        coords = idx.reshape(-1)
        dim, k4 = signs.shape
        words = jax.lax.bitcast_convert_type(signs.reshape(dim, k4 // 4, 4), jnp.int32)
        touched = jax.lax.bitcast_convert_type(words.at[coords].get(**get), jnp.int8).reshape(-1, k4)
        S = touched[:, :s.k].astype(jnp.float32).T            # (k, touched): the k partition signs
        # The matmul form: on these gathered, transposed columns it beats the fused form.
        v = election(state.G, S, state.byzantine, s.attack, None, params.attack_sign, finite=True)
        # Duplicated coordinates write identical rows (the same θ_t and the same vote).
        rows_after = jnp.stack([theta_t.reshape(-1), v, jnp.broadcast_to(t.astype(jnp.float32), v.shape)], axis=-1)
        table = state.table.at[coords].set(rows_after, **get)
        return state._replace(table=table, mom=mom, signs=signs, step=t + 1)

    def rescale(state: SparseState) -> SparseState:
        """Fold the pending factor β^(t − 1 − ref) into the stored momentum (ref ← t − 1)."""
        factor = jnp.float32(beta_value) ** (state.step - 1 - state.ref).astype(jnp.float32)
        return state._replace(mom=state.mom * factor, ref=state.step - 1)

    def run(state: SparseState, params: SchemeParams, data: tuple, num_steps, start=None) -> SparseState:
        """``num_steps`` steps; the momentum is rescaled before every step t with t ≡ 0 (mod
        :func:`rescale_every`), a fixed schedule: the numbers do not depend on how a run is cut
        into calls (``start``: the shared step of a batch, so the branch stays a branch under vmap)."""
        def body(i, c):
            t = c.step if start is None else start + i
            c = jax.lax.cond(t % every == 0, rescale, lambda x: x, c)
            return step(c, params, data)
        return jax.lax.fori_loop(0, num_steps, body, state)

    def update(state: SparseState, params: SchemeParams, data: tuple):
        """The vote of this step at every coordinate (a coordinate the step does not touch keeps its
        stored vote, which is the dense formulation's vote there), as the dense ``update`` returns it."""
        return step(state, params, data).vote, None, {}, jnp.bool_(True)

    def model(state: SparseState, params: SchemeParams):
        """θ after the last completed step (every pending lazy update applied), and no model state."""
        return {"w": state.theta - state.vote * lr_sum(params.lr, params.lr_boundaries, state.anchor, state.step)}, {}

    def evaluate(state: SparseState, params: SchemeParams, data: tuple) -> jax.Array:
        return task.evaluate(model(state, params)[0], {}, data[2], data[3])

    return Train(init=init, step=step, run=run, update=update, evaluate=evaluate, model=model,
                 grads_finite=lambda state: jnp.bool_(True), num_params=num_params, partition_fields=(),
                 task=task)
