"""Real-valued baselines: what workers send and how the master combines it.

Election coding's workers send one bit per coordinate. The baselines the paper compares against
send real gradients (32 bits per coordinate):

* ``median`` — full-gradient coordinate-wise median ("FGM"): worker i sends the mean gradient of
  the partitions it holds, ``M_i = (Σ_j G[i, j] g_j) / load_i`` (with G = I, its own partition
  gradient); the master takes the coordinate-wise median over workers;
* ``mean`` — plain distributed SGD: the master averages ``M_i``;
* ``repetition`` — DRACO-style repetition: workers form groups that all hold the same partitions
  (identical rows of G); the master takes the coordinate-wise median inside each group (exact
  majority decoding when fewer than half of a group lie) and averages the groups' decoded values
  weighted by the number of partitions each group holds, ``Σ_g |P_g| · med_g / Σ_g |P_g|`` (the
  mean gradient over partitions when every group decodes correctly and groups hold disjoint
  partitions).

Byzantine workers replace ``M_i`` by the real-valued form of their attack
(:data:`jax_ec.attacks.ATTACK_TABLE`).

Non-finite messages: the master first replaces every NaN by 0 and clips ±Inf to the largest finite
float32 (:func:`sanitize`); the median then ignores up to ⌊(n−1)/2⌋ such outliers, the mean does
not (a single huge message moves it arbitrarily — as it would on a real cluster).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["REAL_AGGREGATORS", "AGGREGATORS", "BITS_PER_COORDINATE", "worker_means",
           "sanitize", "median_rows", "coordinate_median", "mean_aggregate",
           "repetition_groups", "repetition_weights", "repetition_aggregate", "aggregate"]

REAL_AGGREGATORS: tuple[str, ...] = ("median", "mean", "repetition")
# "vote": majority of partition signs (election coding); "signed_sum": a worker sends the sign of
# the sum of its partitions' real gradients, the master takes the majority.
AGGREGATORS: tuple[str, ...] = ("vote", "signed_sum", *REAL_AGGREGATORS)
BITS_PER_COORDINATE: dict[str, int] = {"vote": 1, "signed_sum": 1, "median": 32, "mean": 32, "repetition": 32}


def worker_means(G: jax.Array, grads: jax.Array) -> jax.Array:
    """``M_i = (Σ_j G[i, j] g_j) / max(load_i, 1)``: each worker's mean partition gradient (n, d)."""
    load = jnp.maximum(G.sum(axis=1), 1.0)
    return (G.astype(grads.dtype) @ grads) / load[:, None]


def sanitize(M: jax.Array) -> jax.Array:
    """NaN → 0 and ±Inf → ±(largest finite float): what the master reads from a garbage message."""
    return jnp.nan_to_num(M, nan=0.0)


# Largest number of rows whose coordinate-wise median is taken with a sorting network (odd-even
# transposition: n rounds of elementwise min/max) instead of jnp.median's sort along axis 0, which
# XLA:CPU runs far slower (benchmarks/README.md, "median"); beyond it the network's n²/2
# comparators per coordinate stop paying.
MEDIAN_NETWORK_MAX_ROWS = 64


def median_rows(M: jax.Array) -> jax.Array:
    """The median over axis 0 (the mean of the two middle values for an even count), equal to
    ``jnp.median(M, axis=0)`` bit for bit on finite input away from the largest floats (tested;
    near them jnp.median's interpolation overflows to ±Inf, this keeps the value): up to
    :data:`MEDIAN_NETWORK_MAX_ROWS` rows sorted by an odd-even transposition network of
    elementwise ``minimum``/``maximum``, which XLA runs as one fused elementwise pass."""
    n = M.shape[0]
    if n > MEDIAN_NETWORK_MAX_ROWS:
        return jnp.median(M, axis=0)
    rows = [M[i] for i in range(n)]
    for rnd in range(n):
        for i in range(rnd % 2, n - 1, 2):
            rows[i], rows[i + 1] = jnp.minimum(rows[i], rows[i + 1]), jnp.maximum(rows[i], rows[i + 1])
    if n % 2:
        return rows[n // 2]
    return rows[n // 2 - 1] * 0.5 + rows[n // 2] * 0.5


def coordinate_median(M: jax.Array) -> jax.Array:
    """Coordinate-wise median over workers (axis 0), garbage sanitized first."""
    return median_rows(sanitize(M))


def _bounded(M: jax.Array) -> jax.Array:
    """Sanitized and clipped to ±max/(2n): no sum of the n rows can overflow (identity on real gradients)."""
    bound = jnp.finfo(M.dtype).max / (2 * M.shape[0])
    return jnp.clip(sanitize(M), -bound, bound)


def mean_aggregate(M: jax.Array) -> jax.Array:
    """Coordinate-wise mean over workers (a matmul with a ones vector: fast on XLA:CPU)."""
    return jnp.ones((M.shape[0],), M.dtype) @ _bounded(M) / M.shape[0]


def repetition_groups(G) -> tuple[tuple[int, ...], ...]:
    """Workers grouped by identical rows of ``G`` (host-side, static): the repetition code's groups."""
    import numpy as np
    rows = [tuple(np.asarray(r).astype(int).tolist()) for r in np.asarray(G)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row, []).append(i)
    return tuple(tuple(g) for g in groups.values())


def repetition_weights(G) -> tuple[int, ...]:
    """Host-side: the number of partitions each group of :func:`repetition_groups` holds."""
    import numpy as np
    G = np.asarray(G)
    return tuple(int(G[g[0]].sum()) for g in repetition_groups(G))


def repetition_aggregate(M: jax.Array, groups: tuple[tuple[int, ...], ...],
                         weights: tuple[int, ...] | None = None) -> jax.Array:
    """Median inside each group of identical workers, then the mean over groups weighted by
    ``weights`` (their numbers of partitions; equal weights when ``None``). Groups holding no
    partition have weight 0; with no partition at all the result is 0."""
    M = sanitize(M)
    weights = tuple(1 for _ in groups) if weights is None else tuple(weights)
    total = max(sum(weights), 1)
    bound = jnp.finfo(M.dtype).max / (2 * total)    # no weighted sum of the decoded rows can overflow
    decoded = jnp.clip(jnp.stack([median_rows(M[jnp.asarray(g)]) for g in groups]), -bound, bound)
    return (jnp.asarray(weights, M.dtype) @ decoded) / total


def aggregate(name: str, M: jax.Array, groups: tuple[tuple[int, ...], ...] | None = None,
              weights: tuple[int, ...] | None = None) -> jax.Array:
    """The master's combination of real-valued worker messages ``M`` (n, d)."""
    if name == "median":
        return coordinate_median(M)
    if name == "mean":
        return mean_aggregate(M)
    if name == "repetition":
        if groups is None:
            raise ValueError("groups: the repetition aggregator needs the worker groups")
        return repetition_aggregate(M, groups, weights)
    raise ValueError(f"aggregator: unknown real-valued aggregator {name!r}; allowed: {', '.join(REAL_AGGREGATORS)}")
