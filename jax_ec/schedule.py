"""The step size: piecewise constant in the step, as data.

The master's step size at step ``t`` is ``γ_t = values[#{i : boundaries[i] ≤ t}]``: ``lr`` until the
first boundary, ``lr · decay`` until the second, and so on (the config gives the boundaries in
epochs; :func:`schedule_arrays` turns them into steps of the scheme's own epoch length). The values
are computed once on the host in double precision and stored as float32, so every formulation
(dense, touched-coordinates) uses the very same numbers; they are arrays, not constants, so
schemes of different step sizes share one compiled program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["NO_BOUNDARY", "schedule_arrays", "lr_at", "lr_sum"]

# A boundary no run reaches: pads the boundaries of schemes with fewer milestones.
NO_BOUNDARY = np.iinfo(np.int32).max


def schedule_arrays(lr: float, decay: float, boundaries: tuple[int, ...], length: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(values, boundaries)`` as float32 ``(L + 1,)`` and int32 ``(L,)``: ``values[i] = lr · decay^i``
    (computed in float64), padded to ``length`` boundaries with :data:`NO_BOUNDARY`."""
    length = len(boundaries) if length is None else length
    if length < len(boundaries):
        raise ValueError(f"length: got {length}; the schedule has {len(boundaries)} boundaries")
    values = np.array([np.float32(lr * decay ** i) for i in range(length + 1)], np.float32)
    steps = np.full((length,), NO_BOUNDARY, np.int32)
    steps[:len(boundaries)] = boundaries
    return values, steps


def lr_at(values: jax.Array, boundaries: jax.Array, step: jax.Array) -> jax.Array:
    """``γ_t``: the value of the segment that holds step ``t``."""
    count = jnp.sum((jnp.asarray(step)[..., None] >= boundaries).astype(jnp.int32), axis=-1)
    return values[count]


def lr_sum(values: jax.Array, boundaries: jax.Array, t0: jax.Array, t1: jax.Array) -> jax.Array:
    """``Σ_{t0 ≤ s < t1} γ_s``, summed segment by segment (integer step counts × step size), in the
    order of the segments (the touched-coordinates formulation applies votes lazily with it)."""
    total = jnp.zeros(jnp.broadcast_shapes(jnp.shape(t0), jnp.shape(t1)), jnp.float32)
    lows = [jnp.int32(0), *(boundaries[i] for i in range(boundaries.shape[0]))]
    for i, lo in enumerate(lows):
        hi = boundaries[i] if i < boundaries.shape[0] else jnp.int32(NO_BOUNDARY)
        count = jnp.clip(jnp.minimum(t1, hi) - jnp.maximum(t0, lo), 0, None)
        total = total + values[i] * count.astype(jnp.float32)
    return total
