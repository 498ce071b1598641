"""Sharded runs (trials and/or partitions over a mesh of 8 forced host devices) give exactly the
numbers of a single-device run, and a run interrupted on one mesh resumes on another.

The 8-device runs happen in one subprocess (``tests/sharding_worker.py``): the device count of a
process is fixed when JAX starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jax_ec.checkpoint import config_fingerprint
from jax_ec.config import ConfigError, MeshConfig, config_from_dict
from jax_ec.sharding import make_mesh, mesh_shape, pad_trials

WORKER = Path(__file__).with_name("sharding_worker.py")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding") / "results.json"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(WORKER), str(out)], env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", ["mlp_vmap", "mlp_map", "amazon_auto", "amazon_sparse_map", "amazon_direct"])
def test_sharded_runs_equal_one_device(sharded, case):
    runs = sharded[case]
    reference = runs["1x1"]
    assert len(runs) > 1
    for mesh, schemes in runs.items():
        assert schemes.keys() == reference.keys()
        for scheme, got in schemes.items():
            want = reference[scheme]
            assert got["metric"] == want["metric"], f"{case}: mesh {mesh}, scheme {scheme}"
            assert got["byzantine"] == want["byzantine"] and got["redundancy"] == want["redundancy"]
            assert got["trainer"] == want["trainer"]
            # 5 trials, distinct curves: the padding copies of the last trial were dropped.
            assert len(got["metric"]) == 5


def test_the_cases_cover_every_path(sharded):
    meshes = {m for name, case in sharded.items() if name not in ("resume", "meshes_used", "mesh_shapes")
              for m in case}
    assert {"2x4", "8x1", "4x1", "1x8"} <= meshes      # trials only, partitions only, both
    assert sharded["amazon_sparse_map"]["4x1"]["mv"]["trainer"] == "touched_coordinates"
    assert sharded["amazon_direct"]["1x8"]["mv"]["trainer"] == "dense"
    mv = [float.fromhex(v) for v in sharded["amazon_direct"]["1x1"]["bern"]["metric"][0]]
    assert len(set(mv)) > 1  # the AUC moves: the comparison is not between constant curves


def test_interrupted_run_resumes_on_another_mesh(sharded):
    resumed = sharded["resume"]
    for scheme, got in resumed.items():
        assert got["metric"] == sharded["mlp_vmap"]["1x1"][scheme]["metric"], scheme
    assert resumed["mv"]["resumed_from_step"] == 2   # continued from the 2 × 4 mesh's checkpoint


def test_auto_mesh_takes_the_free_devices_up_to_the_pairs(sharded):
    shapes = sharded["mesh_shapes"]
    assert shapes["auto"] == [8, 1]                  # every device
    assert shapes["auto_3_pairs"] == [3, 1]          # no device idles on padding alone
    assert shapes["auto_partitions_4"] == [2, 4]     # the devices the partitions leave
    assert shapes["fixed"] == [2, 2]                 # an explicit mesh is kept
    assert sharded["cnn_auto_mesh"] == [1, 1]        # CPU, an image model: the pairs stay on one device
    # Each group of the default run spread its pairs over min(8, pairs) devices; run.json says so.
    used = sharded["meshes_used"]["amazon_auto_autox1"]
    assert any(pairs > 8 for _, pairs in used)
    assert all(mesh == {"trials": min(8, pairs), "partitions": 1} for mesh, pairs in used)
    assert all(mesh == {"trials": 2, "partitions": 4} for mesh, _ in sharded["meshes_used"]["mlp_vmap_2x4"])


# ------------------------------------------------------------------ in-process checks (one device)

def test_mesh_larger_than_the_devices_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"runtime\.mesh: asks for 8 devices.*sees 1.*xla_force_host_platform_device_count=8"):
        mesh_shape(MeshConfig(trials=2, partitions=4))
    assert mesh_shape(MeshConfig()) == (1, 1) and make_mesh((1, 1)) is None
    with pytest.raises(ConfigError, match=r"runtime\.mesh: asks for 4 devices"):
        mesh_shape(MeshConfig(partitions=4))


def test_mesh_trials_takes_auto_or_a_positive_integer():
    assert config_from_dict({}).runtime.mesh.trials == "auto"
    assert config_from_dict({"runtime": {"mesh": {"trials": 3}}}).runtime.mesh.trials == 3
    with pytest.raises(ConfigError, match=r"runtime\.mesh\.trials"):
        config_from_dict({"runtime": {"mesh": {"trials": "many"}}})


@pytest.mark.parametrize("mesh, field", [({"trials": 0}, "runtime.mesh.trials"),
                                         ({"partitions": -1}, "runtime.mesh.partitions"),
                                         ({"partitions": 4}, "runtime.mesh.partitions"),
                                         ({"devices": 2}, "runtime.mesh.devices")])
def test_bad_mesh_is_rejected_at_the_config(mesh, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        config_from_dict({"n": 15, "b": 5, "runtime": {"mesh": mesh}})


def test_partition_shards_must_divide_k():
    with pytest.raises(ConfigError, match=r"runtime\.mesh\.partitions: got 4; must divide the k = 15 .*allowed: 1, 3, 5, 15"):
        config_from_dict({"n": 15, "b": 5, "runtime": {"mesh": {"partitions": 4}}})
    assert config_from_dict({"n": 15, "b": 5, "runtime": {"mesh": {"partitions": 5}}}).runtime.mesh.partitions == 5


def test_the_mesh_is_not_part_of_the_fingerprint():
    a = config_from_dict({"runtime": {"mesh": {"trials": 2}}})
    b = config_from_dict({"runtime": {"mesh": {"trials": 1, "partitions": 3}}})
    assert config_fingerprint(a) == config_fingerprint(b) == config_fingerprint(config_from_dict({}))


def test_pad_trials_repeats_the_last_trial():
    tree = {"a": jnp.arange(6).reshape(3, 2), "b": jnp.array([True, False, True])}
    padded = pad_trials(tree, 5)
    np.testing.assert_array_equal(padded["a"], [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    np.testing.assert_array_equal(padded["b"], [True, False, True, True, True])
    assert pad_trials(tree, 3)["a"].shape == (3, 2)


# End-to-end and subprocess tests: `python -m pytest -m slow` (CI runs them after the default set).
pytestmark = pytest.mark.slow
