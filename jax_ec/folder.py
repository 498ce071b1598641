"""The results folder as a transaction: what a run publishes appears together, or not at all.

A results folder ``OUT/`` holds the files of one committed run (``config.yaml``, ``metrics.csv``,
``summary.csv``, ``summary.txt``, ``curves.png``, ``sweep_<field>.png``, ``run.json``) and a hidden
working area ``OUT/.jax_ec/``:

* ``lock`` — held (``fcntl.flock``) by the run using the folder; the operating system releases it
  when that process ends, however it ends. A second run into the folder stops at once with a
  message naming the holder, or waits for it (``wait=True``, ``jax-ec run --wait``).
* ``checkpoints/`` — the running groups' checkpoints (:mod:`jax_ec.checkpoint`).
* ``staging/`` — the next run's files while they are written.
* ``commit.json`` — the commit record: present only while staged files are moved into place.

Publishing (:meth:`ResultsFolder.publish`): every file is written into ``staging/``; then
``commit.json`` is written atomically (the commit point: the list of files to move and of the
previous run's files to remove); then each staged file is renamed into ``OUT/`` (``run.json``
last), the previous run's leftover files are removed and ``commit.json`` is deleted. A process
killed before the commit point leaves the previous run's files untouched; one killed after it
leaves a commit record that the next ``jax-ec`` command to open the folder completes before doing
anything else (:meth:`ResultsFolder.open`), so the folder never stays half-published. ``run.json``
is written last and lists the SHA-256 of every other file it published (``files``):
:func:`check_published` says whether the files on disk are that run's.

A folder that holds another config's committed results is refused with the fields that differ,
unless the run is started fresh (``fresh=True``, ``jax-ec run --fresh``): the old files then stay
intact until the new run publishes and replaces them.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import yaml

from ._io import atomic_write_text
from .config import ConfigError

__all__ = ["WORK_DIR", "RESULT_FILES", "FolderError", "FolderBusyError", "ResultsFolder", "check_output_dir",
           "check_published", "config_differences", "is_result_file"]

WORK_DIR = ".jax_ec"
RESULT_FILES = ("config.yaml", "metrics.csv", "summary.csv", "summary.txt", "curves.png", "run.json")
"""The files of a committed run (plus ``sweep_<field>.png`` for one-dimensional sweeps)."""
_RECORD = "run.json"


class FolderError(ConfigError):
    """A results folder that cannot be used as asked (the message says why and the way out)."""


class FolderBusyError(FolderError):
    """Another run holds the folder's lock."""


def is_result_file(name: str) -> bool:
    """Whether ``name`` is one of the files a run publishes."""
    return name in RESULT_FILES or (name.startswith("sweep_") and name.endswith(".png"))


def check_output_dir(out: str | os.PathLike, what: str = "--out") -> Path:
    """Refuse, before any work, an output folder that cannot be created or written.

    ``what`` names the argument in the message. Returns the path.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FolderError(f"{what}: {str(out)!r} is a file, not a folder; give a folder (it is created if missing)")
    ancestor = out
    while not ancestor.exists():
        parent = ancestor.parent
        if parent == ancestor:
            break
        ancestor = parent
    if ancestor != out and not ancestor.is_dir():
        raise FolderError(f"{what}: {str(out)!r} cannot be created: {str(ancestor)!r} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise FolderError(f"{what}: {str(out)!r} is not writable ({str(ancestor)!r} does not allow this user to "
                          "write); choose another folder")
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        out = {}
        for i, v in enumerate(data):
            out.update(_flatten(v, f"{prefix}.{i}"))
        if not data:
            out[prefix] = []
        return out
    return {prefix: data}


def config_differences(old: dict, new: dict, ignore: tuple[str, ...] = ("out_dir", "runtime")) -> list[str]:
    """The dotted fields where two plain configs differ, as ``field: old -> new`` (``ignore``d
    top-level fields left out)."""
    a = _flatten({k: v for k, v in old.items() if k not in ignore})
    b = _flatten({k: v for k, v in new.items() if k not in ignore})
    missing = object()
    diffs = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            fa = "(absent)" if va is missing else repr(va)
            fb = "(absent)" if vb is missing else repr(vb)
            diffs.append(f"{key}: {fa} -> {fb}")
    return diffs


def check_published(out: str | os.PathLike) -> list[str]:
    """The problems of a committed run's files: a file ``run.json`` lists that is missing or whose
    SHA-256 differs, or a pending commit. An empty list: the files are the run's."""
    out = Path(out)
    problems = []
    if (out / WORK_DIR / "commit.json").exists():
        problems.append("a publication was interrupted (any jax-ec run into the folder completes it)")
    record = out / _RECORD
    if not record.is_file():
        return problems + [f"{_RECORD} is missing: the folder holds no committed run"]
    try:
        files = json.loads(record.read_text()).get("files") or {}
    except (OSError, ValueError) as exc:
        return problems + [f"{_RECORD} is unreadable ({exc})"]
    for name, digest in files.items():
        path = out / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif _sha256(path) != digest:
            problems.append(f"{name} is not the file {_RECORD} recorded (SHA-256 differs)")
    return problems


class ResultsFolder:
    """One run's use of a results folder: lock, checks, staging and the atomic publication.

    Use as a context manager (``with ResultsFolder(out, ...) as folder``) or call :meth:`open` and
    :meth:`close`. ``writer=False`` (processes other than 0 of a multi-process run) touches nothing.
    """

    def __init__(self, out: str | os.PathLike, *, wait: bool = False, writer: bool = True):
        self.out = Path(out)
        self.work = self.out / WORK_DIR
        self.staging = self.work / "staging"
        self.checkpoints = self.work / "checkpoints"
        self.wait = wait
        self.writer = writer
        self._lock_fd: int | None = None
        self._created: list[Path] = []

    # ------------------------------------------------------------------ open / close
    def open(self) -> ResultsFolder:
        """Check the path, create the folder, take the lock and complete a pending publication."""
        if not self.writer:
            return self
        check_output_dir(self.out)
        missing = []
        p = self.out
        while not p.exists():
            missing.append(p)
            p = p.parent
        self._created = [*reversed(missing)]
        self._lock()                      # creates OUT/.jax_ec/ (again after a finishing run removed it)
        self._complete_pending()
        return self

    def _lock(self) -> None:
        """Take ``OUT/.jax_ec/lock``. A run that ends unlinks the lock file; a lock taken on a file
        that was unlinked meanwhile is therefore dropped and taken again on the current file."""
        path = self.work / "lock"
        announced = False
        while True:
            try:
                self.work.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FolderError(f"--out: cannot create {str(self.work)!r} ({exc.strerror or exc})") from None
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise FolderError(f"--out: cannot create {str(path)!r} ({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                    os.close(fd)
                    raise FolderError(f"--out: cannot lock {str(path)!r} ({exc.strerror})") from None
                holder = _read_holder(path)
                if not self.wait:
                    os.close(fd)
                    raise FolderBusyError(f"--out: {str(self.out)!r} is in use by another jax-ec run ({holder}); "
                                          "wait for it to finish, pass --wait to wait for it, or write to another "
                                          "--out")
                if not announced:
                    print(f"jax-ec: waiting for {str(self.out)!r}, in use by another run ({holder})", flush=True)
                    announced = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)          # the holder ended and unlinked this file: lock the current one
        self._lock_fd = fd
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S %z")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)

    def close(self) -> None:
        """Release the lock; drop the staging area, and the folders this run created if it left
        nothing in them."""
        if not self.writer or self._lock_fd is None:
            return
        shutil.rmtree(self.staging, ignore_errors=True)
        try:
            (self.work / "lock").unlink()
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None
        _remove_if_empty(self.work)
        for p in reversed(self._created):
            _remove_if_empty(p)

    def __enter__(self) -> ResultsFolder:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the committed run
    def committed_config(self) -> dict | None:
        """The config of the committed run in the folder (``config.yaml``), or ``None``."""
        path = self.out / "config.yaml"
        if not path.is_file():
            return None
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            return {}
        return data if isinstance(data, dict) else {}

    def committed_fingerprint(self) -> str | None:
        record = self.out / _RECORD
        if not record.is_file():
            return None
        try:
            return (json.loads(record.read_text()).get("reproducibility") or {}).get("config_fingerprint")
        except (OSError, ValueError):
            return None

    def refuse_other_config(self, config: dict, fingerprint: str) -> None:
        """Raise :class:`FolderError` when the folder holds another config's committed results."""
        old = self.committed_config()
        if old is None:
            return
        if self.committed_fingerprint() == fingerprint:
            return
        diffs = config_differences(old, config)
        if not diffs:
            diffs = ["(the same fields, but a file the config names changed: task.data_path or a scheme's matrix)"
                     if (self.out / _RECORD).is_file() else "(the folder has config.yaml but no run.json)"]
        shown = "; ".join(diffs[:8]) + (f"; … ({len(diffs) - 8} more)" if len(diffs) > 8 else "")
        raise FolderError(f"--out: {str(self.out)!r} holds the results of a different config ({shown}); "
                          "use --fresh to replace them once this run finishes, or write to another --out")

    # ------------------------------------------------------------------ publishing
    def stage(self) -> Path:
        """A clean staging folder for the run's files."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        return self.staging

    def publish(self) -> list[str]:
        """Move the staged files into the folder as one commit (``run.json`` last); returns their names.

        ``run.json`` in the staging folder is completed with the SHA-256 of every other staged file
        (``files``) before the commit point.
        """
        if not self.writer:
            return []
        names = sorted(p.name for p in self.staging.iterdir() if p.is_file())
        record = self.staging / _RECORD
        if _RECORD in names:
            data = json.loads(record.read_text())
            data["files"] = {n: _sha256(self.staging / n) for n in names if n != _RECORD}
            atomic_write_text(record, json.dumps(data, indent=2, allow_nan=False) + "\n")
        order = [n for n in names if n != _RECORD] + ([_RECORD] if _RECORD in names else [])
        stale = sorted(p.name for p in self.out.iterdir() if p.is_file() and is_result_file(p.name)
                       and p.name not in names)
        atomic_write_text(self.work / "commit.json", json.dumps({"move": order, "remove": stale}))
        self._complete_pending()
        return order

    def _complete_pending(self) -> None:
        """Finish a publication whose commit record exists (idempotent: a file already moved is skipped)."""
        commit = self.work / "commit.json"
        if not commit.is_file():
            return
        try:
            plan = json.loads(commit.read_text())
        except (OSError, ValueError):
            commit.unlink()   # written atomically: unreadable only if it is not ours; nothing to roll forward
            return
        for name in plan.get("remove", []):
            try:
                (self.out / name).unlink()
            except FileNotFoundError:
                pass
        if (self.staging / _RECORD).exists():
            # run.json not moved yet: the previous run's record goes first, so that the folder never
            # shows it beside the new files.
            try:
                (self.out / _RECORD).unlink()
            except FileNotFoundError:
                pass
        for name in plan.get("move", []):
            src = self.staging / name
            if src.exists():
                os.replace(src, self.out / name)
        _fsync_dir(self.out)
        commit.unlink()
        _fsync_dir(self.work)


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
