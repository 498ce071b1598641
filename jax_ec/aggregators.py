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

Robust aggregators from the Byzantine-robust learning literature, following ByzFL's definitions
(``byzfl`` 0.0.11; ``tests/test_zoo_byzfl.py`` checks them against its outputs). ``f`` is the number
of Byzantine workers the defense assumes: the trainer passes the scheme's ``b`` (a traced integer,
so that one compiled program serves every b; everything that depends on f is a rank mask, never a
shape). Those that read f (:data:`ASSUMES_F`) need ``2f < n`` (the config refuses more; a traced
f is clipped to ``[0, ⌊(n−1)/2⌋]``):

* ``trimmed_mean`` — coordinate-wise: drop the f largest and the f smallest values, average the
  other ``n − 2f``;
* ``krum`` — the message with the smallest Krum score ``score_i = Σ_{j ∈ N_i} ‖M_i − M_j‖²``, N_i
  the ``n − f − 1`` nearest other messages (Blanchard et al. 2017; ByzFL averages instead of summing
  the same number of terms: the same order); ties to the lower index;
* ``multi_krum`` — the mean of the ``n − f`` messages of smallest Krum score (ties to the lower index);
* ``geometric_median`` — the smoothed Weiszfeld iteration from ``z_0 = 0``:
  ``β_i = 1 / max(‖M_i − z_t‖, ν)``, ``z_{t+1} = Σ_i β_i M_i / Σ_i β_i``, for
  :data:`GEOMETRIC_MEDIAN_ITERATIONS` steps with ν = :data:`GEOMETRIC_MEDIAN_NU` (ByzFL's T and ν);
  a message holding ±Inf gets weight 0 (ByzFL drops such rows); it does not read f;
* ``centered_clipping`` — from a center ``v_0 = m``:
  ``v_{l+1} = v_l + (1/n) Σ_i (M_i − v_l) · min(1, τ / ‖M_i − v_l‖)``, L iterations
  (τ = :data:`CENTERED_CLIPPING_TAU`, L = :data:`CENTERED_CLIPPING_ITERATIONS`, ByzFL's defaults);
  it does not read f. ByzFL keeps its center across calls (the previous aggregate; zero at the
  first call); the trainer does the same (``TrialState.center``, :mod:`jax_ec.core`);
* ``nnm+<aggregator>`` — nearest-neighbour mixing before any of the above (and the median and
  mean; not repetition, whose groups NNM would mix): every message is replaced by the mean of its
  ``n − f`` nearest messages, itself included (ties to the lower index), then the aggregator runs
  on the mixed messages (Allouah et al. 2023).

Byzantine workers replace ``M_i`` by the real-valued form of their attack
(:data:`jax_ec.attacks.ATTACK_TABLE`).

Non-finite messages: the master first replaces every NaN by 0 and clips ±Inf to the largest finite
float32 (:func:`sanitize`); the median then ignores up to ⌊(n−1)/2⌋ such outliers, the mean does
not (a single huge message moves it arbitrarily — as it would on a real cluster). The robust
aggregators sum messages bounded to ±max/(2n) (no sum overflows) and measure distances that may
overflow to +Inf (such a message is the farthest: Krum and NNM rank it last, the geometric median
and centered clipping give it weight 0), so garbage never turns into NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["REAL_AGGREGATORS", "AGGREGATORS", "BITS_PER_COORDINATE", "ROBUST_AGGREGATORS", "NNM_AGGREGATORS",
           "ASSUMES_F", "CENTERED", "GEOMETRIC_MEDIAN_NU", "GEOMETRIC_MEDIAN_ITERATIONS", "CENTERED_CLIPPING_TAU",
           "CENTERED_CLIPPING_ITERATIONS", "worker_means", "sanitize", "median_rows", "coordinate_median",
           "mean_aggregate", "repetition_groups", "repetition_weights", "repetition_aggregate", "sorted_rows", "stable_ranks",
           "trimmed_mean", "squared_distances", "krum_scores", "krum", "multi_krum", "geometric_median",
           "centered_clipping", "nnm", "aggregate"]

ROBUST_AGGREGATORS: tuple[str, ...] = ("trimmed_mean", "krum", "multi_krum", "geometric_median", "centered_clipping")
# Nearest-neighbour mixing composes with every real aggregator but repetition (NNM would mix its groups).
NNM_AGGREGATORS: tuple[str, ...] = tuple(f"nnm+{a}" for a in ("median", "mean", *ROBUST_AGGREGATORS))
REAL_AGGREGATORS: tuple[str, ...] = ("median", "mean", "repetition", *ROBUST_AGGREGATORS, *NNM_AGGREGATORS)
# "vote": majority of partition signs (election coding); "signed_sum": a worker sends the sign of
# the sum of its partitions' real gradients, the master takes the majority.
AGGREGATORS: tuple[str, ...] = ("vote", "signed_sum", *REAL_AGGREGATORS)
BITS_PER_COORDINATE: dict[str, int] = {"vote": 1, "signed_sum": 1, **{a: 32 for a in REAL_AGGREGATORS}}
# The aggregators that read f (the number of Byzantine workers they assume) and need 2f < n.
ASSUMES_F: frozenset[str] = frozenset(("trimmed_mean", "krum", "multi_krum", *NNM_AGGREGATORS))
# The aggregators that carry a center from one step to the next.
CENTERED: frozenset[str] = frozenset(("centered_clipping", "nnm+centered_clipping"))

GEOMETRIC_MEDIAN_NU = 0.1            # ByzFL GeometricMedian(nu=0.1): smoothing of the Weiszfeld weights
GEOMETRIC_MEDIAN_ITERATIONS = 3      # ByzFL GeometricMedian(T=3)
CENTERED_CLIPPING_TAU = 100.0        # ByzFL CenteredClipping(tau=100.0): the clipping radius τ
CENTERED_CLIPPING_ITERATIONS = 1     # ByzFL CenteredClipping(L=1)


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


def _network_sorted(M: jax.Array) -> list[jax.Array]:
    """The rows of ``M`` in ascending order per coordinate, by an odd-even transposition network
    (n rounds of elementwise ``minimum``/``maximum``)."""
    n = M.shape[0]
    rows = [M[i] for i in range(n)]
    for rnd in range(n):
        for i in range(rnd % 2, n - 1, 2):
            rows[i], rows[i + 1] = jnp.minimum(rows[i], rows[i + 1]), jnp.maximum(rows[i], rows[i + 1])
    return rows


def median_rows(M: jax.Array) -> jax.Array:
    """The median over axis 0 (the mean of the two middle values for an even count), equal to
    ``jnp.median(M, axis=0)`` bit for bit on finite input away from the largest floats (tested;
    near them jnp.median's interpolation overflows to ±Inf, this keeps the value): up to
    :data:`MEDIAN_NETWORK_MAX_ROWS` rows sorted by an odd-even transposition network of
    elementwise ``minimum``/``maximum``, which XLA runs as one fused elementwise pass."""
    n = M.shape[0]
    if n > MEDIAN_NETWORK_MAX_ROWS:
        return jnp.median(M, axis=0)
    rows = _network_sorted(M)
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


def sorted_rows(M: jax.Array) -> jax.Array:
    """``M`` (n, d) sorted along axis 0 (``jnp.sort(M, axis=0)``): up to
    :data:`MEDIAN_NETWORK_MAX_ROWS` rows by the odd-even transposition network
    :func:`_network_sorted` (one fused elementwise pass; XLA:CPU's sort is far slower)."""
    if M.shape[0] > MEDIAN_NETWORK_MAX_ROWS:
        return jnp.sort(M, axis=0)
    return jnp.stack(_network_sorted(M))


def _assumed_f(f, n: int, name: str) -> jax.Array:
    """``f`` as an int32 in ``[0, ⌊(n−1)/2⌋]``; a concrete f outside raises one ValueError (a traced
    one is clipped: the config refuses 2b >= n before anything is traced)."""
    if not isinstance(f, jax.core.Tracer):
        import numpy as np
        value = np.asarray(f)
        if value.ndim or not np.issubdtype(value.dtype, np.integer) or not 0 <= int(value) <= (n - 1) // 2:
            raise ValueError(f"f: got {f!r}; the {name} aggregator assumes f Byzantine workers of n = {n} and needs "
                             f"an integer with 0 <= f and 2f < n (f <= {(n - 1) // 2})")
    return jnp.clip(jnp.asarray(f, jnp.int32), 0, (n - 1) // 2)


def trimmed_mean(M: jax.Array, f) -> jax.Array:
    """Coordinate-wise trimmed mean: per coordinate, drop the ``f`` largest and the ``f`` smallest
    of the n values and average the other ``n − 2f`` (ByzFL ``TrMean(f)``; f = 0 is the mean)."""
    n = M.shape[0]
    f = _assumed_f(f, n, "trimmed_mean")
    rank = jnp.arange(n)
    keep = ((rank >= f) & (rank < n - f)).astype(M.dtype)
    return (keep @ sorted_rows(_bounded(M))) / (n - 2 * f).astype(M.dtype)


def squared_distances(M: jax.Array) -> jax.Array:
    """``D[i, j] = ‖M_i − M_j‖²`` (n, n), from the differences themselves (exactly symmetric, 0 on
    the diagonal and between equal messages; no ‖x‖² + ‖y‖² − 2x·y cancellation). XLA fuses the
    differences into the reduction: nothing of size n² × d is stored."""
    return jax.vmap(lambda x: jnp.sum(jnp.square(M - x), axis=1))(M)


def krum_scores(D: jax.Array, f) -> jax.Array:
    """``score_i = Σ_{j ∈ N_i} D[i, j]``, N_i the ``n − f − 1`` nearest other messages: the
    entries 1 … n − f − 1 of row i sorted ascending (entry 0 is the message itself, at distance 0)."""
    n = D.shape[0]
    pos = jnp.arange(n)
    nearest = (pos >= 1) & (pos <= n - f - 1)
    return jnp.where(nearest, jnp.sort(D, axis=1), 0.0).sum(axis=1)


def stable_ranks(scores: jax.Array, axis: int = -1) -> jax.Array:
    """Rank of every entry along ``axis`` (0 = smallest; ties to the lower index)."""
    return jnp.argsort(jnp.argsort(scores, axis=axis, stable=True), axis=axis, stable=True)


def krum(M: jax.Array, f) -> jax.Array:
    """Krum: the message of smallest Krum score (:func:`krum_scores`; ByzFL ``Krum(f)``; ties to the
    lower index), garbage sanitized and bounded first."""
    B = _bounded(M)
    f = _assumed_f(f, M.shape[0], "krum")
    return B[jnp.argmin(krum_scores(squared_distances(B), f))]


def multi_krum(M: jax.Array, f) -> jax.Array:
    """Multi-Krum: the mean of the ``m = n − f`` messages of smallest Krum score (ByzFL ``MultiKrum(f)``)."""
    n = M.shape[0]
    f = _assumed_f(f, n, "multi_krum")
    B = _bounded(M)
    chosen = (stable_ranks(krum_scores(squared_distances(B), f)) < n - f).astype(M.dtype)
    return (chosen @ B) / (n - f).astype(M.dtype)


def nnm(M: jax.Array, f) -> jax.Array:
    """Nearest-neighbour mixing (ByzFL ``NNM(f)``): message i becomes the mean of its ``n − f`` nearest
    messages, itself included (ties to the lower index); shape (n, d), finite."""
    n = M.shape[0]
    f = _assumed_f(f, n, "nnm")
    B = _bounded(M)
    near = (stable_ranks(squared_distances(B), axis=1) < n - f).astype(M.dtype)
    return (near @ B) / (n - f).astype(M.dtype)


def _row_norms(X: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(X), axis=1))


def geometric_median(M: jax.Array, nu: float = GEOMETRIC_MEDIAN_NU,
                     iterations: int = GEOMETRIC_MEDIAN_ITERATIONS) -> jax.Array:
    """Smoothed Weiszfeld from ``z_0 = 0``: ``β_i = 1 / max(‖M_i − z_t‖, ν)``,
    ``z_{t+1} = Σ_i β_i M_i / Σ_i β_i`` (ByzFL ``GeometricMedian(nu, T)``). A message holding ±Inf
    gets weight 0, as ByzFL drops it; a NaN reads as 0."""
    usable = ~jnp.isinf(M).any(axis=1)
    B = _bounded(M)
    z = jnp.zeros(M.shape[1:], M.dtype)
    for _ in range(iterations):
        beta = jnp.where(usable, 1.0 / jnp.maximum(_row_norms(B - z), nu), 0.0).astype(M.dtype)
        total = beta.sum()
        z = jnp.where(total > 0, (beta @ B) / jnp.where(total > 0, total, 1.0), z)
    return z


def centered_clipping(M: jax.Array, center: jax.Array | None = None, tau: float = CENTERED_CLIPPING_TAU,
                      iterations: int = CENTERED_CLIPPING_ITERATIONS) -> jax.Array:
    """Centered clipping from ``v_0 = center`` (zero when None):
    ``v_{l+1} = v_l + (1/n) Σ_i (M_i − v_l) · min(1, τ / ‖M_i − v_l‖)`` (ByzFL
    ``CenteredClipping(m, L, tau)``, one call from a given center). A message at distance 0 counts
    in full; one whose distance overflows to +Inf counts 0."""
    n = M.shape[0]
    B = _bounded(M)
    v = jnp.zeros(M.shape[1:], M.dtype) if center is None else sanitize(jnp.asarray(center, M.dtype))
    for _ in range(iterations):
        diff = B - v
        scale = jnp.minimum(1.0, tau / _row_norms(diff)).astype(M.dtype)
        v = v + (scale @ diff) / n
    return v


def aggregate(name: str, M: jax.Array, groups: tuple[tuple[int, ...], ...] | None = None,
              weights: tuple[int, ...] | None = None, f=0, center: jax.Array | None = None) -> jax.Array:
    """The master's combination of real-valued worker messages ``M`` (n, d).

    ``f``: the number of Byzantine workers the robust aggregators assume (:data:`ASSUMES_F`; a
    Python int or a traced int32); ``center``: centered clipping's starting point (zero when None);
    ``groups``/``weights``: the repetition aggregator's groups and their numbers of partitions.
    """
    if name.startswith("nnm+") and name in REAL_AGGREGATORS:
        return aggregate(name[4:], nnm(M, f), groups, weights, f, center)
    if name == "median":
        return coordinate_median(M)
    if name == "mean":
        return mean_aggregate(M)
    if name == "repetition":
        if groups is None:
            raise ValueError("groups: the repetition aggregator needs the worker groups")
        return repetition_aggregate(M, groups, weights)
    if name == "trimmed_mean":
        return trimmed_mean(M, f)
    if name == "krum":
        return krum(M, f)
    if name == "multi_krum":
        return multi_krum(M, f)
    if name == "geometric_median":
        return geometric_median(M)
    if name == "centered_clipping":
        return centered_clipping(M, center)
    raise ValueError(f"aggregator: unknown real-valued aggregator {name!r}; allowed: {', '.join(REAL_AGGREGATORS)}")
