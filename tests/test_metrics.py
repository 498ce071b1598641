"""Tests for jax_ec.metrics: AUC against an O(N^2) pairwise reference."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jax_ec.metrics import accuracy, auc

auc_jit = jax.jit(auc)


def reference_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann–Whitney U over all (positive, negative) pairs, ties = 1/2."""
    pos = scores[labels > 0]
    neg = scores[labels <= 0]
    total = 0.0
    for p in pos:
        for n in neg:
            total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


@st.composite
def scored_labels(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Small integer scores (so ties occur) with both classes present."""
    n = draw(st.integers(2, 12))
    scores = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda l: 0 < sum(l) < n))
    return np.array(scores, np.float32), np.array(labels, np.int32)


@settings(max_examples=150, deadline=None)
@given(scored_labels())
def test_auc_matches_pairwise_reference(data: tuple[np.ndarray, np.ndarray]) -> None:
    scores, labels = data
    assert float(auc_jit(scores, labels)) == pytest.approx(reference_auc(scores, labels), abs=1e-6)


def test_auc_perfect_inverted_constant() -> None:
    labels = np.array([0, 0, 1, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.3, 0.9, 0.7])
    assert float(auc(scores, labels)) == 1.0
    assert float(auc(-scores, labels)) == 0.0
    assert float(auc(np.zeros(6), labels)) == 0.5


def test_auc_accepts_signed_labels_and_infinite_scores() -> None:
    scores = np.array([-np.inf, 0.0, 1.0, np.inf], np.float32)
    assert float(auc(scores, np.array([-1, 1, -1, 1]))) == pytest.approx(0.75)


def test_auc_single_class_is_nan() -> None:
    assert np.isnan(float(auc(np.arange(4.0), np.ones(4))))


def test_auc_vmap_matches_per_row() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(8, 50)).astype(np.float32)
    labels = rng.integers(0, 2, size=(8, 50))
    batched = np.asarray(jax.jit(jax.vmap(auc))(scores, labels))
    per_row = np.array([float(auc_jit(s, l)) for s, l in zip(scores, labels)])
    np.testing.assert_allclose(batched, per_row, rtol=0, atol=1e-7)
    np.testing.assert_allclose(per_row, [reference_auc(s, l) for s, l in zip(scores, labels)], atol=1e-6)


def test_accuracy() -> None:
    logits = np.array([2.0, -1.0, 0.0, 3.0])
    assert float(accuracy(logits, np.array([1, 0, 1, 0]))) == 0.5
    assert float(accuracy(logits, np.array([1, -1, -1, 1]))) == 1.0
