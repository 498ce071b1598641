"""Files and records shared by the library and the benchmarks: atomic writes, strict JSON, the
software/hardware record of a run and the source checkout's git revision.

Every file is written atomically (a temporary file in the destination folder, flushed, fsynced and
``os.replace``-d onto its name), so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "save_npz_atomic", "write_json", "to_jsonable",
           "run_metadata", "git_revision", "METADATA_PACKAGES"]

METADATA_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy")
"""Distributions whose versions :func:`run_metadata` records."""


def _default_file_mode() -> int:
    """Permission bits a plain ``open(path, "w")`` would give a new file (``0o666 & ~umask``)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating parent directories.

    The bytes go to a temporary file in the destination directory, which is
    flushed, fsynced and then :func:`os.replace`-d onto ``path``; readers see
    either the old file or the complete new one.  On failure the temporary
    file is removed and the exception re-raised.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode(encoding))


def save_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez(path, **arrays)`` through a temporary file, fsync and ``os.replace`` (then the
    folder is fsynced too, where the file system allows it, so that the rename itself is durable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _package_version(name: str) -> str | None:
    """Installed version of distribution ``name``, or ``None`` if not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_metadata() -> dict[str, Any]:
    """Software/hardware description of the current run (no hostname).

    Keys: ``python``, ``versions`` (``{package: version | None}`` for
    :data:`METADATA_PACKAGES`), ``platform`` (:func:`platform.platform`),
    ``machine``, ``jax_backend`` (``jax.default_backend()``) and
    ``jax_devices`` (list of ``{"platform", "device_kind"}``); the last two
    are ``None`` when JAX is not importable.
    """
    metadata: dict[str, Any] = {
        "python": platform.python_version(),
        "versions": {name: _package_version(name) for name in METADATA_PACKAGES},
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        import jax
    except ImportError:
        metadata["jax_backend"] = None
        metadata["jax_devices"] = None
    else:
        metadata["jax_backend"] = jax.default_backend()
        metadata["jax_devices"] = [
            {"platform": d.platform, "device_kind": d.device_kind} for d in jax.devices()
        ]
    return metadata


def to_jsonable(obj: Any) -> Any:
    """Recursively convert NumPy scalars/arrays, tuples and non-finite floats to strict JSON types.

    NaN and +/-inf become ``None``; dict keys become strings.
    """
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON, atomically.

    NumPy scalars and arrays are converted to Python numbers and lists, and
    NaN/inf to ``null`` (see :func:`to_jsonable`).
    """
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")


def git_revision(root: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The commit of the source checkout at ``root`` (default: the one this package is imported
    from) and whether it has uncommitted changes to tracked files; ``None`` outside git."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None
