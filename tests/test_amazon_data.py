"""Tests for jax_ec.data.amazon: shipped data integrity, featurization, loading."""

from __future__ import annotations

import gzip
import hashlib
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from jax_ec.data.amazon import (
    AMAZON_SHA256,
    FEATURE_COLUMNS,
    SHIPPED_PATH,
    featurize,
    load_amazon,
    load_raw,
)

SHARED_CSV = Path(__file__).resolve().parents[2] / "shared/data/amazon-employee-access/train.csv"
OFFICIAL_DIM = 263500  # `model_dimension` noted in the paper's official script


def reference_featurize(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """Plain-Python featurization: dict counts per column of value tuples.

    Local codes: values seen >= 3 times in sorted tuple order, then the
    seen-once bucket, then the seen-twice bucket (each only if non-empty).
    """
    rows = raw.tolist()
    groups = [(c,) for c in range(9)] + list(combinations(range(9), 2)) + list(combinations(range(9), 3))
    out = [[0] * len(groups) for _ in rows]
    offset = 0
    for j, group in enumerate(groups):
        values = [tuple(row[c] for c in group) for row in rows]
        counts: dict[tuple[int, ...], int] = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        code = {v: i for i, v in enumerate(sorted(v for v, k in counts.items() if k >= 3))}
        size = len(code)
        if 1 in counts.values():
            for v, k in counts.items():
                if k == 1:
                    code[v] = size
            size += 1
        if 2 in counts.values():
            for v, k in counts.items():
                if k == 2:
                    code[v] = size
            size += 1
        for i, v in enumerate(values):
            out[i][j] = offset + code[v]
        offset += size
    return np.array(out), offset


@pytest.fixture(scope="module")
def full() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels, raw = load_raw()
    indices, offsets = featurize(raw)
    return raw, indices, offsets


def test_shipped_copy_is_exact() -> None:
    data = gzip.decompress(SHIPPED_PATH.read_bytes())
    assert hashlib.sha256(data).hexdigest() == AMAZON_SHA256


@pytest.mark.skipif(not SHARED_CSV.is_file(), reason="shared dataset not present")
def test_shipped_copy_matches_shared_file() -> None:
    assert hashlib.sha256(SHARED_CSV.read_bytes()).hexdigest() == AMAZON_SHA256
    labels, raw = load_raw(SHARED_CSV)
    shipped_labels, shipped_raw = load_raw()
    np.testing.assert_array_equal(labels, shipped_labels)
    np.testing.assert_array_equal(raw, shipped_raw)


def test_load_raw_shapes_and_dtypes() -> None:
    labels, raw = load_raw()
    assert labels.shape == (32769,) and labels.dtype == np.int32
    assert raw.shape == (32769, 9) and raw.dtype == np.int64
    assert set(np.unique(labels).tolist()) == {0, 1}
    assert labels[0] == 1 and raw[0].tolist() == [39353, 85475, 117961, 118300, 123472, 117905, 117906, 290919, 117908]


def test_load_raw_plain_csv(tmp_path: Path) -> None:
    lines = gzip.decompress(SHIPPED_PATH.read_bytes()).decode().splitlines()[:6]
    plain = tmp_path / "train.csv"
    plain.write_text("\n".join(lines) + "\n")
    labels, raw = load_raw(plain)
    shipped_labels, shipped_raw = load_raw()
    np.testing.assert_array_equal(labels, shipped_labels[:5])
    np.testing.assert_array_equal(raw, shipped_raw[:5])


def test_missing_file_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "train.csv"
    with pytest.raises(FileNotFoundError, match="train.csv") as info:
        load_raw(missing)
    assert str(missing) in str(info.value)


def test_wrong_header_raises(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("ACTION,FOO\n1,2\n")
    with pytest.raises(ValueError, match="FOO") as info:
        load_raw(bad)
    assert FEATURE_COLUMNS[0] in str(info.value)


def test_featurize_full_dataset(full: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, indices, offsets = full
    assert indices.shape == (32769, 129) and indices.dtype == np.int32
    assert offsets.shape == (130,) and offsets[0] == 0
    assert offsets[-1] == OFFICIAL_DIM
    assert np.all(indices >= offsets[:-1]) and np.all(indices < offsets[1:])
    # Every coordinate of every column is used (one-hot fitted on all rows).
    assert np.unique(indices).size == OFFICIAL_DIM


@pytest.mark.parametrize("kind", ["real_subset", "small_cardinality"])
def test_featurize_matches_reference(kind: str, full: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    rng = np.random.default_rng(1)
    if kind == "real_subset":
        raw = full[0][np.sort(rng.choice(len(full[0]), size=300, replace=False))]
    else:  # small alphabets so values seen once, twice and >= 3 times all occur
        raw = rng.integers(0, [40, 30, 3, 5, 8, 10, 12, 2, 6], size=(300, 9)) * 7 + 100
    expected, dim = reference_featurize(raw)
    indices, offsets = featurize(raw)
    assert offsets[-1] == dim
    np.testing.assert_array_equal(indices, expected)


def test_load_amazon_split_and_cache(full: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    data = load_amazon()
    assert load_amazon().train_idx.base is data.train_idx.base  # served from the cache
    assert data.train_idx.shape == (26325, 129) and data.test_idx.shape == (6444, 129)
    assert data.train_y.shape == (26325,) and data.test_y.shape == (6444,)
    assert data.dim == OFFICIAL_DIM
    labels, _ = load_raw()
    np.testing.assert_array_equal(np.concatenate([data.train_idx, data.test_idx]), full[1])
    np.testing.assert_array_equal(np.concatenate([data.train_y, data.test_y]), labels)
    assert not data.train_idx.flags.writeable
