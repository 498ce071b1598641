"""A synthetic Gaussian-mixture classification set, generated offline from a seed.

Class ``c`` has mean ``μ_c ~ N(0, I_F)`` (drawn once from the seed) and samples ``x = μ_c + ε``,
``ε ~ N(0, σ² I_F)``; labels are uniform over the classes. Used for the minibatch-split mode and
in tests: small, real learning, no network.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian_mixture"]


def gaussian_mixture(seed: int, num_samples: int, num_features: int, num_classes: int,
                     noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x (N, F) float32, y (N,) int32)``."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(num_classes, num_features))
    y = rng.integers(0, num_classes, size=num_samples)
    x = means[y] + noise * rng.normal(size=(num_samples, num_features))
    return x.astype(np.float32), y.astype(np.int32)
