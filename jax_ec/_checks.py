"""Argument checks shared by every public entry point.

Each check returns the value in its canonical type or raises one ``ValueError`` whose message
starts with the argument's name and says what it got and what is allowed
(``"b: got 7; expected an integer in [0, 4]"``), so that the CLI can print it as one line.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["integer", "probability", "one_of", "sign", "seed", "number", "prng_key", "flag", "real_array", "brief",
           "matrix_size", "output_file", "SEED_LIMIT", "MAX_MATRIX_ENTRIES"]

# PRNGKey(seed) keeps 32 bits in jax's default mode: larger seeds would repeat smaller ones.
SEED_LIMIT = 2 ** 32
# Largest dense allocation matrix built on the host: 2^28 entries (256 MiB as int8, 1 GiB as float32).
MAX_MATRIX_ENTRIES = 2 ** 28


def brief(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (arrays and long lists stay one short line)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
        raise ValueError(f"{name}: got {brief(value)}; expected {allowed}{hint}")
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
        raise ValueError(f"{name}: got {brief(value)}; expected {allowed}{hint}")
    return float(value)


def probability(name: str, value: Any, open_ends: bool = False) -> float:
    """A probability in ``[0, 1]`` (``(0, 1)`` with ``open_ends``)."""
    ok = isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))
    if ok:
        v = float(value)
        ok = math.isfinite(v) and ((0.0 < v < 1.0) if open_ends else (0.0 <= v <= 1.0))
    if not ok:
        raise ValueError(f"{name}: got {brief(value)}; expected a probability in {'(0, 1)' if open_ends else '[0, 1]'}")
    return float(value)


def one_of(name: str, value: Any, allowed: Iterable[str], what: str = "") -> str:
    """One of the ``allowed`` names."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}: unknown {what or name} {brief(value)}; allowed: {', '.join(allowed)}")
    return value


def sign(name: str, value: Any) -> int:
    """+1 or −1."""
    if not _is_int(value) or value not in (1, -1):
        raise ValueError(f"{name}: got {brief(value)}; allowed: 1, -1")
    return int(value)


def seed(name: str, value: Any) -> int:
    """A seed in ``[0, 2^32)``: ``PRNGKey`` keeps 32 bits, so a larger seed would silently repeat a
    smaller one."""
    if not _is_int(value) or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name}: got {brief(value)}; expected an integer >= 0 and < 2**32 (PRNGKey keeps 32 bits: "
                         "larger seeds would repeat smaller ones)")
    return int(value)


def flag(name: str, value: Any) -> bool:
    """A boolean (``True``/``False``, NumPy booleans included); strings and numbers are refused,
    since ``bool("False")`` is True."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: got {brief(value)}; expected True or False")
    return bool(value)


def real_array(name: str, value: Any, expected: str, kinds: str = "biuf"):
    """An array of real numbers (booleans, integers or floats; NumPy dtype ``kinds``): a NumPy
    array, or ``value`` itself when it is a JAX array (traced arrays included). ``expected`` says
    what is allowed, e.g. ``"a (k, d) array of real numbers"``. Ragged nesting, strings, None and
    complex numbers are refused."""
    import jax
    if isinstance(value, jax.Array):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError):   # ragged nesting
            raise ValueError(f"{name}: got {brief(value)}, which is not a rectangular array "
                             f"(rows of different lengths?); expected {expected}") from None
    if np.dtype(arr.dtype).kind not in kinds:
        raise ValueError(f"{name}: got {brief(value)} (dtype {arr.dtype}); expected {expected}")
    return arr


def matrix_size(name: str, n: int, k: int) -> None:
    """Refuse an ``n × k`` dense matrix of more than :data:`MAX_MATRIX_ENTRIES` entries."""
    if n * k > MAX_MATRIX_ENTRIES:
        raise ValueError(f"{name}: an n × k = {n} × {k} allocation matrix has {n * k:.3g} entries; "
                         f"expected at most 2**{MAX_MATRIX_ENTRIES.bit_length() - 1} (a dense matrix "
                         "held in memory)")


def output_file(name: str, path: Any) -> Path:
    """A file that can be written: not a folder, its folder created when missing and writable.

    Checked by creating (and removing) a temporary file beside it, so that a bad path fails before
    any work is done rather than after it."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"{name}: got {brief(path)}; expected a file path")
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{name}: {str(p)!r} is a folder; expected a file path such as "
                         f"{str(p / 'plot.png')!r}")
    folder = p.absolute().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{name}: cannot create the folder {str(folder)!r} for {str(p)!r} "
                         f"({exc.strerror or exc})") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{p.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ValueError(f"{name}: cannot write {str(p)!r}: the folder {str(folder)!r} is not writable "
                         f"({exc.strerror or exc})") from None
    return p


def prng_key(name: str, value: Any):
    """A PRNG key (raw uint32 ``(2,)`` or typed), or a seed read as ``PRNGKey(seed)``."""
    import jax
    import jax.numpy as jnp
    if _is_int(value):
        return jax.random.PRNGKey(seed(name, value))
    if isinstance(value, np.ndarray) and value.dtype == np.uint32 and value.shape == (2,):
        return jnp.asarray(value)
    if isinstance(value, jax.Array):
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key) and value.shape == ():
            return value
        if value.dtype == jnp.uint32 and value.shape == (2,):
            return value
    raise ValueError(f"{name}: got {brief(value)}; expected a PRNG key (jax.random.PRNGKey(seed)) or an integer "
                     "seed in [0, 2**32)")
