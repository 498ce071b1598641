"""A plain NumPy reference of the election, written with Python loops like the paper's official code.

This is the trusted oracle of the tests: slow, boring, obviously correct. It follows docs/algorithm.md, section 1,
step by step, one worker and one partition at a time, with no matrix algebra.
"""

from __future__ import annotations

import math

import numpy as np


def _sign(x: float) -> float:
    """sign with sign(0) = 0 and NaN read as 0 (the master's reading of a garbage message)."""
    if isinstance(x, float) and math.isnan(x):
        return 0.0
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    return 0.0


def reference_elect(G, grads, byzantine, attack, direction=1, random_messages=None, copy_noise=None) -> np.ndarray:
    """Global vote in {-1, 0, +1}^d of one election, computed with loops.

    G: (n, k) 0/1; grads: (k, d) partition gradients; byzantine: (n,) booleans; attack: one of
    ``none, reverse, directional, random, random_per_partition, omniscient, stealth``; random_messages:
    (n, d) messages for the random attacks (row i is what worker i sends if it is Byzantine).
    copy_noise: (n, k, d) noise worker i adds to partition j's gradient before its sign (honest
    workers only; Byzantine messages use the noiseless signs, as the official code does).
    A worker holding a partition whose sign is NaN votes 0 at that coordinate.
    """
    G = np.asarray(G)
    grads = np.asarray(grads, dtype=np.float64)
    byzantine = np.asarray(byzantine)
    n, k = G.shape
    d = grads.shape[1]

    # The true majority of all partition signs (what the omniscient attack votes against).
    truth = []
    for t in range(d):
        total = 0.0
        for j in range(k):
            total += _sign(float(grads[j, t]))
        truth.append(_sign(total))

    messages = []
    for i in range(n):
        # Honest local vote: majority of the signs of the partitions worker i holds.
        c = []
        clean = []
        for t in range(d):
            local, local_clean, void = 0.0, 0.0, False
            for j in range(k):
                if G[i, j] == 1:
                    value = float(grads[j, t])
                    if math.isnan(value):
                        void = True
                    local_clean += _sign(value)
                    if copy_noise is not None:
                        value = float(np.float32(value) + np.float32(copy_noise[i][j][t]))
                    local += _sign(value)
            c.append(0.0 if void else _sign(local))  # tie -> 0; empty worker -> sum 0 -> 0
            clean.append(0.0 if void else _sign(local_clean))

        if bool(byzantine[i]):
            if attack == "none":
                pass
            elif attack == "reverse":
                c = [-x for x in clean]
            elif attack == "directional":
                c = [float(direction) for _ in range(d)]
            elif attack in ("random", "random_per_partition"):
                c = [float(random_messages[i][t]) for t in range(d)]
            elif attack == "omniscient":
                c = [-x for x in truth]
            elif attack == "stealth":
                c = list(clean)   # for now its honest (noiseless) vote; the pass below flips some coordinates
            else:
                raise ValueError(f"unknown attack {attack!r}")
        messages.append(c)

    if attack == "stealth":
        # Against the no-attack vote v0, only where the b Byzantine votes overturn it (reverse or tie).
        count = sum(1 for i in range(n) if bool(byzantine[i]))
        for t in range(d):
            honest = sum(_sign(float(messages[i][t])) for i in range(n) if not bool(byzantine[i]))
            own = sum(_sign(float(messages[i][t])) for i in range(n) if bool(byzantine[i]))
            v0 = _sign(honest + own)
            if v0 != 0 and _sign(honest - count * v0) != v0:
                for i in range(n):
                    if bool(byzantine[i]):
                        messages[i][t] = -v0

    vote = np.zeros(d)
    for t in range(d):
        total = 0.0
        for i in range(n):
            total += _sign(float(messages[i][t]))
        vote[t] = _sign(total)
    return vote


def reference_placement_most_loaded(G, b) -> np.ndarray:
    """The b workers with the most partitions; among equal loads, the lower index first."""
    G = np.asarray(G)
    n = G.shape[0]
    load = []
    for i in range(n):
        total = 0
        for j in range(G.shape[1]):
            total += int(G[i, j])
        load.append(total)
    chosen = np.zeros(n, dtype=bool)
    for _ in range(min(b, n)):
        best = None
        for i in range(n):
            if chosen[i]:
                continue
            if best is None or load[i] > load[best]:  # strict: ties keep the lower index
                best = i
        chosen[best] = True
    return chosen
