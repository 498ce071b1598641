"""Analysis of allocation matrices: exact tolerance verification, deterministic code design,
minimum-redundancy search and Bernoulli-code statistics."""

from .design import deterministic, repetition
from .search import min_redundancy
from .verify import max_tolerance, replay, verify

__all__ = ["deterministic", "max_tolerance", "min_redundancy", "repetition", "replay", "verify"]
