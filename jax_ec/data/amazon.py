"""Amazon Employee Access data: loading and featurization (pure NumPy).

The featurization reproduces the paper's official script
(``amazon_employer/MPI_main.py`` of the Election Coding repository, itself based
on Benjamin Solecki's Kaggle solution):

1. label-encode each of the 9 raw categorical columns;
2. add every pair (36) and every triple (84) of those columns as new
   categorical columns whose value is the tuple of member values
   (``itertools.combinations`` order), giving 9 + 36 + 84 = 129 columns;
3. in every column, merge all values occurring exactly once (counted over all
   rows) into one bucket and all values occurring exactly twice into another;
4. one-hot encode all 129 columns, fitted on all rows (train and test).

The official script identifies a tuple by Python's ``hash(tuple)``; here it is
identified exactly, by combining label codes into one ``int64``.

Each row is represented by its 129 active one-hot coordinates ("global
indices"): the local code of column ``c`` is shifted by the total cardinality of
columns ``0..c-1``.  The model dimension ``D`` is the sum of all cardinalities.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import IO

import numpy as np

AMAZON_SHA256 = "c50b119438fb8c8e84b2ddb9c0a28c76cb01afa3dc78b920cfea36eb506843a7"
"""SHA-256 of the uncompressed Kaggle ``train.csv`` shipped with the package."""

LABEL_COLUMN = "ACTION"
FEATURE_COLUMNS: tuple[str, ...] = (
    "RESOURCE",
    "MGR_ID",
    "ROLE_ROLLUP_1",
    "ROLE_ROLLUP_2",
    "ROLE_DEPTNAME",
    "ROLE_TITLE",
    "ROLE_FAMILY_DESC",
    "ROLE_FAMILY",
    "ROLE_CODE",
)
N_RAW_COLUMNS = len(FEATURE_COLUMNS)
COLUMN_GROUPS: tuple[tuple[int, ...], ...] = (
    tuple((c,) for c in range(N_RAW_COLUMNS))
    + tuple(combinations(range(N_RAW_COLUMNS), 2))
    + tuple(combinations(range(N_RAW_COLUMNS), 3))
)
"""Raw columns making up each of the 129 featurized columns, in output order."""
N_COLUMNS = len(COLUMN_GROUPS)
N_TRAIN = 26325
"""Training rows used by the official script for 15 workers; the rest is test."""

SHIPPED_PATH = Path(__file__).resolve().parent / "amazon_train.csv.gz"


def _open_text(path: Path) -> IO[str]:
    """Open ``path`` as text, transparently decompressing a ``.gz`` suffix."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def load_raw(path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read the Amazon Employee Access ``train.csv`` (plain or gzip-compressed).

    Args:
      path: CSV file; a ``.gz`` suffix means gzip.  ``None`` uses the copy
        shipped with the package.

    Returns:
      ``(labels, raw)``: ``labels`` int32 ``(N,)`` is the ``ACTION`` column
      (1 = access granted); ``raw`` int64 ``(N, 9)`` holds the categorical
      columns in :data:`FEATURE_COLUMNS` order.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: the header is not ``ACTION`` followed by the 9 feature columns.
    """
    file = SHIPPED_PATH if path is None else Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"Amazon Employee Access data not found at '{file}': expected the Kaggle "
            "'Amazon.com - Employee Access Challenge' train.csv (header "
            f"{LABEL_COLUMN},{','.join(FEATURE_COLUMNS)}), plain or gzip-compressed (.gz)."
        )
    expected = [LABEL_COLUMN, *FEATURE_COLUMNS]
    with _open_text(file) as f:
        found = [name.strip() for name in f.readline().strip().split(",")]
        if found != expected:
            raise ValueError(f"Unexpected header in '{file}': found columns {found}, expected {expected}.")
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != len(expected):
        raise ValueError(f"'{file}' has {table.shape[1]} columns per row, expected {len(expected)}.")
    return table[:, 0].astype(np.int32), table[:, 1:]


def _bucket_rare(codes: np.ndarray) -> np.ndarray:
    """Re-encode one column, merging values seen once and values seen twice.

    Values seen at least three times keep their own category (in increasing
    order of ``codes``); all values seen exactly once then share one category,
    and all values seen exactly twice share the next one (the official script
    appends these two buckets after the regular values).  Counts are over all
    rows given.  Returns contiguous local codes ``0..m-1``.
    """
    uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    frequent = counts >= 3
    mapping = np.cumsum(frequent) - 1
    n_frequent = int(frequent.sum())
    has_once = bool((counts == 1).any())
    mapping[counts == 1] = n_frequent
    mapping[counts == 2] = n_frequent + int(has_once)
    return mapping[inverse.reshape(-1)]


def featurize(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Featurize a raw categorical table as in the paper's official script.

    All counting (label encoding, rare-value buckets, one-hot categories) is
    over the rows of ``raw``, i.e. fitted on train and test rows together.

    Steps: label-encode the 9 columns; form the 36 pair and 84 triple columns
    (value = tuple of member values, encoded exactly as one int64 by mixed-radix
    combination of label codes); merge values seen once / twice per column into
    two shared buckets; one-hot encode all 129 columns.

    Args:
      raw: integer array ``(N, 9)`` of raw categorical values.

    Returns:
      ``(indices, offsets)``: ``indices`` int32 ``(N, 129)`` are the global
      one-hot coordinates of each row (column ``c``'s coordinate lies in
      ``[offsets[c], offsets[c + 1])``); ``offsets`` int64 ``(130,)`` are the
      cumulative column cardinalities, ``offsets[-1]`` being the dimension ``D``.
    """
    raw = np.asarray(raw)
    if raw.ndim != 2 or raw.shape[1] != N_RAW_COLUMNS:
        raise ValueError(f"raw must have shape (N, {N_RAW_COLUMNS}), got {raw.shape}.")
    encoded = []
    cards = []
    for c in range(N_RAW_COLUMNS):
        uniq, inverse = np.unique(raw[:, c], return_inverse=True)
        encoded.append(inverse.reshape(-1).astype(np.int64))
        cards.append(len(uniq))

    local = np.empty((raw.shape[0], N_COLUMNS), dtype=np.int64)
    for j, group in enumerate(COLUMN_GROUPS):
        combined = np.zeros(raw.shape[0], dtype=np.int64)
        for c in group:  # mixed radix: exact and order-preserving (lexicographic)
            combined = combined * cards[c] + encoded[c]
        local[:, j] = _bucket_rare(combined)

    offsets = np.zeros(N_COLUMNS + 1, dtype=np.int64)
    np.cumsum(local.max(axis=0) + 1, out=offsets[1:])
    indices = (local + offsets[:-1]).astype(np.int32)
    return indices, offsets


@dataclass(frozen=True)
class AmazonData:
    """Featurized train/test split; rows are lists of active one-hot coordinates.

    Attributes:
      train_idx: int32 ``(N_train, 129)`` global one-hot indices.
      train_y: float32 ``(N_train,)`` labels in {0, 1}.
      test_idx: int32 ``(N_test, 129)``.
      test_y: float32 ``(N_test,)``.
      dim: one-hot dimension ``D`` (all indices lie in ``[0, D)``).
    """

    train_idx: np.ndarray
    train_y: np.ndarray
    test_idx: np.ndarray
    test_y: np.ndarray
    dim: int


@functools.lru_cache(maxsize=4)
def _featurized(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Load and featurize ``path`` once per process; arrays are read-only."""
    labels, raw = load_raw(path)
    indices, offsets = featurize(raw)
    y = labels.astype(np.float32)
    indices.flags.writeable = False
    y.flags.writeable = False
    return indices, y, int(offsets[-1])


def load_amazon(path: str | os.PathLike[str] | None = None, n_train: int = N_TRAIN) -> AmazonData:
    """Load, featurize (cached in-process per path) and split the Amazon data.

    As in the official script, train = the first ``n_train`` rows in file
    order (26,325 for 15 workers) and test = the remaining rows (6,444); the
    featurization is fitted on all rows.  Returned arrays are read-only views
    of the cached result.
    """
    file = (SHIPPED_PATH if path is None else Path(path)).resolve()
    indices, y, dim = _featurized(file)
    if not 0 < n_train < len(y):
        raise ValueError(f"n_train must be in (0, {len(y)}), got {n_train}.")
    return AmazonData(
        train_idx=indices[:n_train],
        train_y=y[:n_train],
        test_idx=indices[n_train:],
        test_y=y[n_train:],
        dim=dim,
    )
