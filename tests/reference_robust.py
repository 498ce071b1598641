"""Plain NumPy loops for the robust aggregators and the real-valued attacks built on honest messages.

The trusted oracle of tests/test_aggregators.py, in the style of tests/reference.py: slow, boring,
obviously correct, one worker and one coordinate at a time; ties go to the lower index, as
jax_ec.aggregators documents.
"""

from __future__ import annotations

import math

import numpy as np


def _squared_distance(x, y) -> float:
    total = 0.0
    for a, b in zip(x, y):
        total += (float(a) - float(b)) ** 2
    return total


def reference_trimmed_mean(M, f: int) -> np.ndarray:
    """Per coordinate: sort the n values, drop the f smallest and the f largest, average the rest."""
    M = np.asarray(M, np.float64)
    n, d = M.shape
    out = np.zeros(d)
    for t in range(d):
        values = sorted(float(M[i, t]) for i in range(n))
        kept = values[f:n - f]
        out[t] = sum(kept) / len(kept)
    return out


def reference_krum_scores(M, f: int) -> list[float]:
    """score_i = the sum of the n − f − 1 smallest squared distances from M_i to the other messages."""
    M = np.asarray(M, np.float64)
    n = M.shape[0]
    scores = []
    for i in range(n):
        others = sorted(_squared_distance(M[i], M[j]) for j in range(n) if j != i)
        scores.append(sum(others[:n - f - 1]))
    return scores


def _lowest(scores: list[float], count: int) -> list[int]:
    """The indices of the ``count`` smallest scores, ties to the lower index."""
    chosen: list[int] = []
    for _ in range(count):
        best = None
        for i, s in enumerate(scores):
            if i in chosen:
                continue
            if best is None or s < scores[best]:   # strict: ties keep the lower index
                best = i
        chosen.append(best)
    return chosen


def reference_krum(M, f: int) -> np.ndarray:
    M = np.asarray(M, np.float64)
    return M[_lowest(reference_krum_scores(M, f), 1)[0]].copy()


def reference_multi_krum(M, f: int) -> np.ndarray:
    M = np.asarray(M, np.float64)
    chosen = _lowest(reference_krum_scores(M, f), M.shape[0] - f)
    return sum(M[i] for i in chosen) / len(chosen)


def reference_nnm(M, f: int) -> np.ndarray:
    """Row i: the mean of the n − f messages nearest to M_i (itself included), ties to the lower index."""
    M = np.asarray(M, np.float64)
    n = M.shape[0]
    out = np.zeros_like(M)
    for i in range(n):
        distances = [_squared_distance(M[i], M[j]) for j in range(n)]
        chosen = _lowest(distances, n - f)
        out[i] = sum(M[j] for j in chosen) / len(chosen)
    return out


def reference_real_attack(attack: str, M, byzantine, scale: float = 0.1) -> np.ndarray:
    """The vector every Byzantine worker sends under ``sign_flip``, ``ipm``, ``alie`` or ``mimic``,
    from the honest rows of ``M`` (those with ``byzantine[i]`` False)."""
    M = np.asarray(M, np.float64)
    n, d = M.shape
    honest = [i for i in range(n) if not byzantine[i]]
    b = n - len(honest)
    mean = np.array([sum(M[i, t] for i in honest) / len(honest) for t in range(d)])
    if attack == "sign_flip":
        return -mean
    if attack == "ipm":
        return -scale * mean
    if attack == "mimic":
        return M[honest[0]].copy()
    if attack == "alie":
        from statistics import NormalDist
        s = max(math.floor(n / 2 + 1) - b, 1)
        z = NormalDist().inv_cdf((n - s) / n)
        std = np.array([math.sqrt(sum((M[i, t] - mean[t]) ** 2 for i in honest) / max(len(honest) - 1, 1))
                        for t in range(d)])
        return mean - z * std
    raise ValueError(f"unknown attack {attack!r}")
