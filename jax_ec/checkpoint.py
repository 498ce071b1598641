"""Checkpoints of a running experiment, so that a killed run resumes where it stopped.

Layout: ``<out_dir>/.jax_ec/checkpoints/group<i>.npz`` (the results folder's working area,
:mod:`jax_ec.folder`), one file per group of schemes that run as one
compiled call (:func:`jax_ec.plan.group_schemes`), each a plain ``np.savez`` archive (no pickle)
holding

* ``__meta__``: UTF-8 JSON (format version, config fingerprint, the group's schemes, trial ids,
  evaluation chunks done, step reached, whether the group finished, the jax/jax_ec versions and
  backend);
* ``metric`` ``(P, c + 1)`` and ``wall`` ``(c + 1,)``: the curves recorded so far for the group's P
  (scheme, trial) pairs (step 0 and the ``c`` chunks done);
* while the group runs: ``leaf_0 … leaf_{L-1}``, the flattened leaves of the pair-batched state
  after chunk ``c``. The pytree structure is not stored: it is rebuilt from ``jax.eval_shape`` of
  the group's init (nothing runs or compiles), and every leaf's shape and dtype are checked
  against it;
* once the group finished: ``G`` ``(P, n, k)`` and ``byzantine`` ``(P, n)``, what ``run.json``
  reports per trial (the state itself is dropped).

Every file is written to a temporary file in the same folder, flushed, fsynced and
``os.replace``-d onto its name, so a kill at any instant leaves either the previous checkpoint or
the new one, never a torn file. A checkpoint written for another config is refused
(:class:`CheckpointError`): the fingerprint is the SHA-256 of the resolved config (all fields but
``out_dir`` and ``runtime``) plus the contents of the files it names (``task.data_path``,
``schemes[].matrix``).
Resuming continues from the same chunk boundary with the same compiled chunk function, so the
finished run's metrics equal an uninterrupted run's bit for bit (only wall times differ).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import yaml

from ._io import atomic_write_text, save_npz_atomic
from .config import ConfigError, ExperimentConfig, config_to_dict

__all__ = ["CHECKPOINT_DIR", "FORMAT_VERSION", "DEFAULT_EVERY_S", "CheckpointError", "GroupCheckpoint", "Checkpointer",
           "config_fingerprint"]

CHECKPOINT_DIR = ".jax_ec/checkpoints"   # inside the results folder (jax_ec.folder.ResultsFolder.checkpoints)
FORMAT_VERSION = 2
# Seconds between two checkpoints of a running scheme. Writing after every chunk would cost a third
# of the default Amazon job's time (10 trials × 190 MB of momenta per write); with a minute between
# writes a kill loses at most about a minute of work, and runs shorter than that write only the
# small record of each finished scheme.
DEFAULT_EVERY_S = 60.0


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used to resume (another config, another format, unreadable)."""


def _file_digest(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Config fields added after results folders were published, with their default (the behaviour before).
_ADDED_FIELDS: dict[tuple[str, str], object] = {("task", "compute_dtype"): "float32"}


def config_fingerprint(cfg: ExperimentConfig) -> str:
    """SHA-256 of the resolved config and of the files it names.

    Leaves out ``out_dir`` and ``runtime`` (the results do not depend on how the run executes or on
    the devices: a run may resume with other execution choices or on another mesh), and fields added
    since results were first published while they hold their default (:data:`_ADDED_FIELDS`), so
    those results folders and checkpoints keep their fingerprint.
    """
    data = config_to_dict(cfg)
    data.pop("out_dir", None)
    data.pop("runtime", None)
    for (section, name), default in _ADDED_FIELDS.items():
        if data.get(section, {}).get(name) == default:
            del data[section][name]
    files = {}
    if cfg.task.data_path is not None:
        files["task.data_path"] = _file_digest(cfg.task.data_path)
    for i, s in enumerate(cfg.schemes):
        if isinstance(s.matrix, str):
            files[f"schemes[{i}].matrix"] = _file_digest(s.matrix)
    text = json.dumps({"config": data, "files": files}, sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class GroupCheckpoint:
    """What a group's checkpoint holds, restored."""
    group: str
    chunks_done: int           # evaluation chunks completed: metric has chunks_done + 1 columns
    steps_done: int
    metric: np.ndarray         # (P, chunks_done + 1)
    wall: np.ndarray           # (chunks_done + 1,)
    finished: bool
    state: Any = None          # pair-batched state (unfinished groups)
    G: np.ndarray | None = None            # (P, n, k) (finished groups)
    byzantine: np.ndarray | None = None    # (P, n) (finished groups)


def _meta_array(meta: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)


class Checkpointer:
    """Reads and writes the checkpoints of one experiment in the folder ``directory``
    (a run's is ``<out_dir>/.jax_ec/checkpoints/``).

    ``every_s``: after an evaluation chunk the group's state is written when at least ``every_s``
    seconds passed since the group started or was last written (0: after every chunk); a group's
    end is always written.
    """

    def __init__(self, directory: str | os.PathLike, cfg: ExperimentConfig, every_s: float = DEFAULT_EVERY_S):
        if not every_s >= 0:
            raise ValueError(f"every_s: got {every_s!r}; expected seconds >= 0")
        self.directory = Path(directory)
        self.fingerprint = config_fingerprint(cfg)
        self.every_s = float(every_s)
        self._last_save: dict[str, float] = {}
        self._saved_step: dict[str, int] = {}
        # In a multi-process run (jax.distributed) every process reads; only process 0 writes.
        self.writer = jax.process_index() == 0

    # ------------------------------------------------------------------ files
    def path(self, group: str) -> Path:
        return self.directory / f"{group}.npz"

    def existing(self) -> list[Path]:
        return sorted(self.directory.glob("*.npz")) if self.directory.is_dir() else []

    def _read(self, path: Path) -> tuple[dict, dict[str, np.ndarray]]:
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
            meta = json.loads(arrays.pop("__meta__").tobytes().decode())
        except Exception as exc:  # a foreign or damaged file: never silently trusted
            raise CheckpointError(f"checkpoints: {str(path)!r} is not a readable jax_ec checkpoint ({exc}); "
                                  "rerun with --fresh to discard the checkpoints") from None
        if meta.get("format") != FORMAT_VERSION:
            raise CheckpointError(f"checkpoints: {str(path)!r} has format {meta.get('format')!r}, this "
                                  f"jax_ec reads format {FORMAT_VERSION}; rerun with --fresh to discard it")
        return meta, arrays

    def check_config(self, config: dict | None = None) -> None:
        """Refuse checkpoints written for another config (raises :class:`CheckpointError`);
        ``config`` (the plain form of this run's config) lets the message name the fields that differ."""
        for path in self.existing():
            meta, _ = self._read(path)
            if meta.get("fingerprint") != self.fingerprint:
                noted = self.directory / "config.yaml"
                diffs = []
                if config is not None and noted.is_file():
                    from .folder import config_differences
                    try:
                        diffs = config_differences(yaml.safe_load(noted.read_text()) or {}, config)
                    except (OSError, yaml.YAMLError):
                        diffs = []
                what = ("; ".join(diffs[:8]) + (f"; … ({len(diffs) - 8} more)" if len(diffs) > 8 else "")
                        if diffs else f"fingerprint {str(meta.get('fingerprint'))[:12]}, this config "
                        f"{self.fingerprint[:12]}")
                raise CheckpointError(
                    f"checkpoints: {str(self.directory)!r} holds an interrupted run of a different config ({what}"
                    f"{'; its config is ' + repr(str(noted)) if noted.is_file() else ''}); rerun that config to "
                    "finish it, use --fresh to discard it, or write to another --out")

    def note_config(self, config: dict) -> None:
        """Keep the running config's plain form beside the checkpoints (for the message above)."""
        if self.writer:
            atomic_write_text(self.directory / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def clear(self) -> None:
        """Remove every checkpoint (a fresh start, or a run whose results are all written)."""
        if self.writer and self.directory.is_dir():
            shutil.rmtree(self.directory)

    # ------------------------------------------------------------------ writing
    def _meta(self, group: str, schemes: tuple[str, ...], trial_ids: np.ndarray, chunks_done: int, steps_done: int,
              finished: bool, num_leaves: int) -> dict:
        from . import __version__
        return {"format": FORMAT_VERSION, "fingerprint": self.fingerprint, "group": group, "schemes": list(schemes),
                "trial_ids": [int(t) for t in trial_ids], "chunks_done": int(chunks_done),
                "steps_done": int(steps_done), "finished": bool(finished), "num_leaves": int(num_leaves),
                "jax": jax.__version__, "jax_ec": __version__, "backend": jax.default_backend()}

    def start(self, group: str, now: float) -> None:
        """The group starts (or resumes) running at ``now``: the interval counts from here."""
        self._last_save[group] = now

    def due(self, group: str, now: float) -> bool:
        """Whether a checkpoint of the running group should be written after the chunk ending ``now``."""
        last = self._last_save.get(group)
        return last is None or now - last >= self.every_s

    def saved_step(self, group: str) -> int | None:
        """The step of the group's state checkpoint on disk (written or resumed from), if any."""
        return self._saved_step.get(group)

    def save_progress(self, group: str, schemes: tuple[str, ...], trial_ids: np.ndarray, state: Any,
                      metric: np.ndarray, wall: np.ndarray, chunks_done: int, steps_done: int, now: float) -> None:
        if not self.writer:
            self._last_save[group], self._saved_step[group] = now, int(steps_done)
            return
        leaves = [np.asarray(x) for x in jax.device_get(jax.tree.leaves(state))]
        arrays = {f"leaf_{i}": x for i, x in enumerate(leaves)}
        arrays.update(metric=np.asarray(metric), wall=np.asarray(wall, np.float64),
                      __meta__=_meta_array(self._meta(group, schemes, trial_ids, chunks_done, steps_done, False,
                                                      len(leaves))))
        save_npz_atomic(self.path(group), arrays)
        self._last_save[group] = now
        self._saved_step[group] = int(steps_done)

    def save_finished(self, group: str, schemes: tuple[str, ...], trial_ids: np.ndarray, metric: np.ndarray,
                      wall: np.ndarray, G: np.ndarray, byzantine: np.ndarray, chunks_done: int, steps_done: int) -> None:
        if not self.writer:
            return
        save_npz_atomic(self.path(group), {
            "metric": np.asarray(metric), "wall": np.asarray(wall, np.float64), "G": np.asarray(G),
            "byzantine": np.asarray(byzantine),
            "__meta__": _meta_array(self._meta(group, schemes, trial_ids, chunks_done, steps_done, True, 0))})

    # ------------------------------------------------------------------ reading
    def load(self, group: str, schemes: tuple[str, ...], trial_ids: np.ndarray, eval_steps: int | np.ndarray,
             abstract_state: Callable[[], Any]) -> GroupCheckpoint | None:
        """The group's checkpoint, or ``None`` when there is none.

        ``eval_steps``: the run's evaluation steps (``0, …, total``), or only their number of chunks
        (then the step the state reached is not checked against them). A state saved between two
        evaluations (a stop request) resumes from that step.

        ``abstract_state()`` returns the ``jax.eval_shape`` of the group's initial state; it is
        called only for an unfinished group and gives the pytree structure to restore into.
        """
        path = self.path(group)
        if not path.is_file():
            return None
        meta, arrays = self._read(path)

        def refuse(why: str) -> CheckpointError:
            return CheckpointError(f"checkpoints: {str(path)!r} {why}; rerun with --fresh to discard the checkpoints")

        if meta.get("fingerprint") != self.fingerprint:
            raise refuse("was written for a different config")
        if meta.get("schemes") != list(schemes) or meta.get("trial_ids") != [int(t) for t in trial_ids]:
            raise refuse(f"holds schemes {meta.get('schemes')} trials {meta.get('trial_ids')}, "
                         f"not schemes {list(schemes)} trials {[int(t) for t in trial_ids]}")
        chunks = int(meta["chunks_done"])
        pairs = len(schemes) * len(trial_ids)
        steps = None if np.ndim(eval_steps) == 0 else np.asarray(eval_steps)
        num_chunks = int(eval_steps) if steps is None else len(steps) - 1
        if not 0 <= chunks <= num_chunks or arrays["metric"].shape != (pairs, chunks + 1):
            raise refuse(f"holds {chunks} evaluation chunks with metric shape {arrays['metric'].shape}, "
                         f"inconsistent with this run's {num_chunks} chunks of {pairs} (scheme, trial) pairs")
        if steps is not None:
            at, low = int(meta["steps_done"]), int(steps[chunks])
            high = int(steps[chunks]) if chunks == num_chunks else int(steps[chunks + 1]) - 1
            if not low <= at <= high:
                raise refuse(f"holds the state of step {at}, outside its evaluation chunk (steps {low}..{high})")
        if meta.get("jax") != jax.__version__ or meta.get("backend") != jax.default_backend():
            warnings.warn(f"checkpoint {str(path)!r} was written with jax {meta.get('jax')} on "
                          f"{meta.get('backend')}; resuming with jax {jax.__version__} on {jax.default_backend()} "
                          "may make the rest of the run differ in the last float bits from an uninterrupted run",
                          RuntimeWarning, stacklevel=3)
        common = dict(group=group, chunks_done=chunks, steps_done=int(meta["steps_done"]),
                      metric=arrays["metric"], wall=arrays["wall"], finished=bool(meta["finished"]))
        if meta["finished"]:
            return GroupCheckpoint(**common, G=arrays["G"], byzantine=arrays["byzantine"])
        abstract = abstract_state()
        shapes, treedef = jax.tree.flatten(abstract)
        leaves = [arrays.get(f"leaf_{i}") for i in range(len(shapes))]
        if meta.get("num_leaves") != len(shapes) or any(x is None for x in leaves):
            raise refuse(f"holds {meta.get('num_leaves')} state arrays; this group's state has {len(shapes)}")
        for i, (x, s) in enumerate(zip(leaves, shapes)):
            if x.shape != tuple(s.shape) or x.dtype != s.dtype:
                raise refuse(f"state array {i} is {x.dtype}{list(x.shape)}, expected {s.dtype}{list(s.shape)}")
        # Fresh device buffers (copies: the chunk function donates its input state).
        state = jax.tree.unflatten(treedef, [jax.numpy.array(x, dtype=s.dtype, copy=True)
                                             for x, s in zip(leaves, shapes)])
        self._saved_step[group] = int(meta["steps_done"])
        return GroupCheckpoint(**common, state=state)
