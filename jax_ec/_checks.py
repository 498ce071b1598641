"""Argument checks shared by every public entry point.

Each check returns the value in its canonical type or raises one ``ValueError`` whose message
starts with the argument's name and says what it got and what is allowed
(``"b: got 7; expected an integer in [0, 4]"``), so that the CLI can print it as one line.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["integer", "probability", "one_of", "sign", "seed", "number", "prng_key", "SEED_LIMIT"]

# PRNGKey(seed) keeps 32 bits in jax's default mode: larger seeds would repeat smaller ones.
SEED_LIMIT = 2 ** 32


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def integer(name: str, value: Any, low: int | None = None, high: int | None = None, hint: str = "") -> int:
    """An integer in ``[low, high]`` (either end may be open)."""
    if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            allowed = f"an integer in [{low}, {high}]"
        elif low is not None:
            allowed = f"an integer >= {low}"
        elif high is not None:
            allowed = f"an integer <= {high}"
        else:
            allowed = "an integer"
        raise ValueError(f"{name}: got {value!r}; expected {allowed}{hint}")
    return int(value)


def number(name: str, value: Any, low: float | None = None, high: float | None = None,
           low_open: bool = False, hint: str = "") -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    ok = isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))
    if ok:
        v = float(value)
        ok = (math.isfinite(v) and (low is None or (v > low if low_open else v >= low))
              and (high is None or v <= high))
    if not ok:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            parts.append(f"<= {high:g}")
        allowed = "a finite number" + (" " + " and ".join(parts) if parts else "")
        raise ValueError(f"{name}: got {value!r}; expected {allowed}{hint}")
    return float(value)


def probability(name: str, value: Any, open_ends: bool = False) -> float:
    """A probability in ``[0, 1]`` (``(0, 1)`` with ``open_ends``)."""
    ok = isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))
    if ok:
        v = float(value)
        ok = math.isfinite(v) and ((0.0 < v < 1.0) if open_ends else (0.0 <= v <= 1.0))
    if not ok:
        raise ValueError(f"{name}: got {value!r}; expected a probability in {'(0, 1)' if open_ends else '[0, 1]'}")
    return float(value)


def one_of(name: str, value: Any, allowed: Iterable[str], what: str = "") -> str:
    """One of the ``allowed`` names."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}: unknown {what or name} {value!r}; allowed: {', '.join(allowed)}")
    return value


def sign(name: str, value: Any) -> int:
    """+1 or −1."""
    if not _is_int(value) or value not in (1, -1):
        raise ValueError(f"{name}: got {value!r}; allowed: 1, -1")
    return int(value)


def seed(name: str, value: Any) -> int:
    """A seed in ``[0, 2^32)``: ``PRNGKey`` keeps 32 bits, so a larger seed would silently repeat a
    smaller one."""
    if not _is_int(value) or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name}: got {value!r}; expected an integer >= 0 and < 2**32 (PRNGKey keeps 32 bits: "
                         "larger seeds would repeat smaller ones)")
    return int(value)


def prng_key(name: str, value: Any):
    """A PRNG key (raw uint32 ``(2,)`` or typed), or a seed read as ``PRNGKey(seed)``."""
    import jax
    import jax.numpy as jnp
    if _is_int(value):
        return jax.random.PRNGKey(seed(name, value))
    if isinstance(value, jax.Array):
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key) and value.shape == ():
            return value
        if value.dtype == jnp.uint32 and value.shape == (2,):
            return value
    raise ValueError(f"{name}: got {value!r}; expected a PRNG key (jax.random.PRNGKey(seed)) or an integer "
                     "seed in [0, 2**32)")
