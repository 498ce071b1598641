"""Allocation matrices ("codes") of election coding.

An allocation matrix ``G`` has shape ``(n, k)``: ``G[i, j] = 1`` when worker ("polling station")
``i`` processes data partition ("voter") ``j``. The redundancy of a code is the mean number of
partitions per worker,

    r(G) = (Σ_ij G[i, j]) / n,

and the load of worker ``i`` is its row sum ``Σ_j G[i, j]``. An iteration of the simulated cluster
lasts as long as its busiest worker, so ``max_i load_i`` sets the simulated clock.

Codes provided here:

* :func:`uncoded` — ``G = I_n``: plain SignSGD with majority vote (r = 1);
* :func:`bernoulli` / :func:`draw_bernoulli` — ``G[i, j] ~ Bernoulli(p)`` i.i.d. with ``p = r / n``
  (Sohn et al. 2020, random Bernoulli codes), optionally redrawn until no worker is empty as the
  paper's CIFAR script does;
* :func:`paper_code_n5` — the deterministic 1-Byzantine-tolerant example of the official code
  (n = 5, r = 3.8);
* :func:`draco` — DRACO's layout: groups of at least 2b + 1 workers that all hold the same
  partitions (block-diagonal all-ones blocks, r ≥ 2b + 1), for the real-valued repetition baseline
  (the election-coding repetition allocation, 2b + 1 full copies, is
  :func:`jax_ec.analysis.design.repetition`);
* :func:`from_matrix` / :func:`load_code` — a user-given 0/1 matrix (nested list, array, CSV file).

Host-side functions return NumPy ``int8`` arrays; :func:`draw_bernoulli` is the jit/vmap-safe JAX
draw used inside trainers (one code per trial key).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks

__all__ = [
    "uncoded",
    "bernoulli",
    "draw_bernoulli",
    "draw_code",
    "paper_code_n5",
    "draco",
    "from_matrix",
    "load_code",
    "validate_allocation",
    "redundancy",
    "loads",
]


def validate_allocation(G: object, n: int | None = None, k: int | None = None,
                        name: str = "G") -> np.ndarray:
    """Check that ``G`` is a 2-D 0/1 matrix (of shape ``(n, k)`` when given) and return it as int8.

    Raises ``ValueError`` naming the field, the offending value and what is allowed.
    """
    n = None if n is None else _checks.integer("n", n, 1)
    k = None if k is None else _checks.integer("k", k, 1)
    arr = np.asarray(_checks.real_array(name, G, "a 2-D 0/1 array of shape (n, k)"))
    if arr.ndim != 2:
        raise ValueError(f"{name}: has shape {arr.shape}; expected a 2-D 0/1 array of shape (n, k)")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name}: has shape {arr.shape}; expected at least one worker and one partition")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name}: entry [{i}, {j}] is {arr[i, j].item()!r}; allocation entries must be 0 or 1")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name}: has {arr.shape[0]} rows (workers); expected n = {n}")
    if k is not None and arr.shape[1] != k:
        raise ValueError(f"{name}: has {arr.shape[1]} columns (partitions); expected k = {k}")
    return arr.astype(np.int8)


def uncoded(n: int) -> np.ndarray:
    """``G = I_n``: each worker holds its own partition (SignSGD-MV, redundancy 1)."""
    n = _checks.integer("n", n, 1, hint=" (workers)")
    _checks.matrix_size("n", n, n)
    return np.eye(n, dtype=np.int8)


def draw_bernoulli(key: jax.Array, n: int, k: int, p: float | jax.Array,
                   nonempty_rows: bool | jax.Array = False) -> jax.Array:
    """Draw ``G[i, j] ~ Bernoulli(p)`` i.i.d. (shape ``(n, k)``, float32 0/1), jit- and vmap-safe.

    With ``nonempty_rows`` the whole matrix is redrawn until every worker holds at least one
    partition (the paper's CIFAR script does this); the expected number of redraws is
    ``1 / (1 - (1 - p)^k)^n``. ``p`` and ``nonempty_rows`` may be traced (per-trial values).
    """
    def draw(key: jax.Array) -> jax.Array:
        return jax.random.bernoulli(key, p, (n, k)).astype(jnp.float32)

    if isinstance(nonempty_rows, (bool, np.bool_)) and not nonempty_rows:
        return draw(key)
    loop_key, sub = jax.random.split(key)
    first = draw(sub) if isinstance(nonempty_rows, (bool, np.bool_)) else jnp.where(nonempty_rows, draw(sub), draw(key))

    def has_empty_row(carry):
        _, G = carry
        return jnp.asarray(nonempty_rows) & jnp.any(G.sum(axis=1) == 0)

    def redraw(carry):
        key, _ = carry
        key, sub = jax.random.split(key)
        return key, draw(sub)

    _, G = jax.lax.while_loop(has_empty_row, redraw, (loop_key, first))
    return G


def draw_code(key: jax.Array, params) -> jax.Array:
    """A trial's allocation matrix (float32 (n, k)) from a scheme's parameters
    (:class:`jax_ec.core.SchemeParams`): a Bernoulli draw (``params.bernoulli``: probability
    ``params.p``, redrawn while a row is empty if ``params.nonempty_rows``) or the fixed
    ``params.G``; all of them data, so fixed and random codes share one compiled program."""
    n, k = params.G.shape
    drawn = draw_bernoulli(key, n, k, params.p, params.nonempty_rows)
    return jnp.where(params.bernoulli, drawn, jnp.asarray(params.G, jnp.float32))


def check_redundancy(r: object, n: int, name: str = "r") -> float:
    """A Bernoulli code's redundancy ``r`` in ``(0, n]`` (so that ``p = r / n`` is a probability)."""
    return _checks.number(name, r, 0, n, low_open=True, hint=f" (redundancy of n = {n} workers: p = r/n)")


# Largest expected number of whole-matrix redraws accepted with ``nonempty_rows``.
MAX_EXPECTED_REDRAWS = 1e6


def min_nonempty_p(n: int, k: int) -> float:
    """Smallest ``p`` for which a redraw-until-no-empty-row Bernoulli ``(n, k)`` code takes at most
    :data:`MAX_EXPECTED_REDRAWS` draws on average: the expected number is ``1 / (1 − (1 − p)^k)^n``,
    so ``p_min = 1 − (1 − M^{−1/n})^{1/k}`` with ``M`` that limit."""
    return -math.expm1(math.log(-math.expm1(-math.log(MAX_EXPECTED_REDRAWS) / n)) / k)


def check_nonempty_rows(n: int, k: int, p: float, name: str = "nonempty_rows") -> None:
    """Refuse ``nonempty_rows`` at a ``p`` whose expected number of redraws exceeds the limit
    (the draw would loop for ever in practice)."""
    p_min = min_nonempty_p(n, k)
    if p < p_min:
        raise ValueError(f"{name}: with p = {p:.4g}, an (n, k) = ({n}, {k}) code has no empty row too rarely "
                         f"(more than {MAX_EXPECTED_REDRAWS:.0e} redraws on average); expected p >= {p_min:.4g}, "
                         "or no nonempty_rows")


def bernoulli(seed: int, n: int, r: float, k: int | None = None,
              nonempty_rows: bool = False) -> np.ndarray:
    """A random Bernoulli code with connection probability ``p = r / n`` (``k`` defaults to ``n``).

    The realised redundancy ``redundancy(G)`` is random with mean ``k·p`` (= r when k = n); read it
    off the returned matrix. Same draw as :func:`draw_bernoulli` with ``jax.random.PRNGKey(seed)``,
    ``seed`` in ``[0, 2^32)``. With ``nonempty_rows`` the matrix is redrawn until no row is empty,
    ``1 / (1 − (1 − p)^k)^n`` draws on average; more than ``MAX_EXPECTED_REDRAWS`` is refused.
    """
    seed = _checks.seed("seed", seed)
    n = _checks.integer("n", n, 1, hint=" (workers)")
    size_name = "n" if k is None else "n, k"
    k = n if k is None else _checks.integer("k", k, 1, hint=" (partitions)")
    _checks.matrix_size(size_name, n, k)
    r = check_redundancy(r, n)
    nonempty_rows = _checks.flag("nonempty_rows", nonempty_rows)
    p = r / n
    if nonempty_rows:
        check_nonempty_rows(n, k, p)
    G = draw_bernoulli(jax.random.PRNGKey(seed), n, k, p, nonempty_rows)
    return np.asarray(G, dtype=np.int8)


def paper_code_n5() -> np.ndarray:
    """The official code's deterministic example: n = k = 5, perfectly 1-Byzantine-tolerant, r = 3.8.

    Rows (1-based partitions): {1}, {2, 3, 4}, and three workers holding all five partitions.
    """
    return np.array(
        [[1, 0, 0, 0, 0],
         [0, 1, 1, 1, 0],
         [1, 1, 1, 1, 1],
         [1, 1, 1, 1, 1],
         [1, 1, 1, 1, 1]],
        dtype=np.int8,
    )


def draco(n: int, b: int) -> np.ndarray:
    """DRACO's repetition layout with ``k = n``: workers split into ``⌊n / (2b + 1)⌋`` groups of as
    equal size as possible (each ≥ 2b + 1); every worker of a group holds all of the group's
    partitions. Each partition is processed by its whole group, so a majority (or median) inside a
    group is decided by honest workers whenever fewer than half of the group are Byzantine, which
    ``b`` Byzantine workers cannot break — with DRACO's decoder (``aggregator: repetition``), not
    with the majority of local majorities, under which this layout is not b-tolerant. Redundancy: ``Σ_g size_g² / n`` (= 2b + 1 when 2b + 1 divides n).
    """
    n = _checks.integer("n", n, 1, hint=" (workers)")
    b = _checks.integer("b", b, 0, (n - 1) // 2, hint=f" (the DRACO layout needs 2b + 1 <= n = {n})")
    _checks.matrix_size("n", n, n)
    groups = n // (2 * b + 1)
    sizes = [n // groups + (1 if g < n % groups else 0) for g in range(groups)]
    G = np.zeros((n, n), dtype=np.int8)
    start = 0
    for size in sizes:
        G[start:start + size, start:start + size] = 1
        start += size
    return G


def from_matrix(G: Sequence[Sequence[int]] | np.ndarray, n: int | None = None,
                k: int | None = None) -> np.ndarray:
    """A user-given allocation matrix (nested list or array), validated as 0/1 of shape (n, k)."""
    return validate_allocation(G, n=n, k=k)


def load_code(path: str | os.PathLike, n: int | None = None, k: int | None = None) -> np.ndarray:
    """Read an allocation matrix from a CSV (comma- or whitespace-separated 0/1 rows, ``#`` comments)
    or ``.npy`` file (a plain numeric array: pickled object arrays are not loaded)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path: got {path!r}; expected the path of a CSV or .npy file")
    p = Path(path)
    where = f"code file {str(p)!r}"
    if p.is_dir():
        raise ValueError(f"{where}: is a folder; expected a CSV or .npy 0/1 matrix")
    if not p.is_file():
        raise FileNotFoundError(f"{where}: does not exist; expected a CSV or .npy 0/1 matrix")
    try:
        if p.suffix == ".npy":
            arr = _read_npy(p, where)
        else:
            arr = _read_csv(p.read_text(encoding="utf-8"), where)
    except OSError as exc:
        raise ValueError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: is not a text file; expected a CSV of 0/1 numbers or a .npy array") from None
    return validate_allocation(arr, n=n, k=k, name=where)


def _read_npy(p: Path, where: str) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(f"{where}: holds a pickled object array, which is not loaded "
                             "(allow_pickle=False); save a numeric 0/1 array instead") from None
        raise ValueError(f"{where}: is not a valid .npy array ({exc})") from None
    except EOFError:
        raise ValueError(f"{where}: is empty or truncated; expected a .npy 0/1 array") from None


def _read_csv(text: str, where: str) -> np.ndarray:
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.replace(",", " ").split()
        for cell in cells:
            try:
                float(cell)
            except ValueError:
                raise ValueError(f"{where}, line {number}: {cell!r} is not a number; "
                                 "expected rows of 0/1 numbers") from None
        if rows and len(cells) != len(rows[0]):
            raise ValueError(f"{where}, line {number}: has {len(cells)} entries but line {lines[0]} has "
                             f"{len(rows[0])}; expected rows of equal length")
        rows.append([float(c) for c in cells])
        lines.append(number)
    if not rows:
        raise ValueError(f"{where}: holds no rows; expected a CSV of 0/1 numbers, one row per worker")
    return np.array(rows)


def redundancy(G: np.ndarray | jax.Array) -> float | jax.Array:
    """``r = (number of ones in G) / n``: the mean number of partitions per worker."""
    if isinstance(G, jax.Array):
        return G.sum() / G.shape[0]
    G = validate_allocation(G)
    return float(G.sum()) / G.shape[0]


def loads(G: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
    """Per-worker computational load: the row sums ``Σ_j G[i, j]`` (partitions processed by worker i)."""
    if isinstance(G, jax.Array):
        return G.sum(axis=1)
    return validate_allocation(G).sum(axis=1).astype(np.int64)
