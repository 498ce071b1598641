"""jax_ec._io: atomic writes, strict JSON, the run record and the git revision."""

from __future__ import annotations

import json
import math
import os
import subprocess

import numpy as np
import pytest

from jax_ec import _io


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.txt"
    _io.atomic_write_text(path, "old")
    _io.atomic_write_text(path, "new content")
    assert path.read_text() == "new content"
    assert os.listdir(tmp_path) == ["f.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    _io.atomic_write_bytes(path, b"old")

    def fail(src, dst):
        raise OSError("interrupted")

    monkeypatch.setattr(_io.os, "replace", fail)
    with pytest.raises(OSError, match="interrupted"):
        _io.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_write_json_converts_numpy(tmp_path):
    path = tmp_path / "meta.json"
    obj = {"a": np.float32(1.5), "b": np.arange(3), "c": (np.int64(2), math.nan), 4: [np.inf]}
    _io.write_json(path, obj)
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": [2, None], "4": [None]}


def test_run_metadata(tmp_path):
    meta = _io.run_metadata()
    assert set(meta["versions"]) == {"jax", "jaxlib", "flax", "optax", "numpy"}
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["python"].count(".") == 2
    assert isinstance(meta["jax_backend"], str) and meta["jax_devices"]
    assert set(meta) == {"python", "versions", "platform", "machine", "jax_backend", "jax_devices"}
    _io.write_json(tmp_path / "meta.json", meta)
    assert json.loads((tmp_path / "meta.json").read_text()) == meta


def test_git_revision_of_a_checkout_and_outside_one(tmp_path):
    info = _io.git_revision(tmp_path)
    assert info is None                       # not a git checkout
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "m"],
                   check=True)
    info = _io.git_revision(tmp_path)
    assert len(info["commit"]) == 40 and info["dirty"] is False
    (tmp_path / "f").write_text("y")
    assert _io.git_revision(tmp_path)["dirty"] is True


def test_save_npz_atomic_round_trip(tmp_path):
    path = tmp_path / "a" / "x.npz"
    _io.save_npz_atomic(path, {"v": np.arange(4)})
    with np.load(path) as z:
        np.testing.assert_array_equal(z["v"], np.arange(4))
    assert sorted(os.listdir(path.parent)) == ["x.npz"]
