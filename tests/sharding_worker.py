"""Run by tests/test_sharding.py in a subprocess with 8 forced host devices.

Runs each case's config on several meshes (trials × partitions) and writes every run's metrics
(as exact float64 bit patterns, via ``float.hex``) to the JSON file named by argv[1]. The parent
test compares them with the single-device run.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jax_ec.config import MeshConfig, config_from_dict  # noqa: E402
from jax_ec.experiment import run_experiment  # noqa: E402
from jax_ec.sharding import mesh_shape  # noqa: E402

MLP = dict(
    name="shard_mlp", seed=3, trials=5, task={"name": "synthetic", "num_samples": 512, "num_features": 8, "hidden": [16]},
    n=8, b=2, attack="reverse", partitioning="split", batch_size=64, steps=4, eval_every=2,
    optim={"lr": 0.05, "lr_boundaries": [], "momentum": 0.9, "worker_momentum": 0.5},
    schemes=[
        {"name": "mv", "code": "uncoded"},
        {"name": "bern_noise", "code": "bernoulli", "r": 2.0, "noise_std": 0.05},
        {"name": "omniscient", "code": "bernoulli", "r": 3.0, "attack": "omniscient"},
        {"name": "signed_sum", "code": "bernoulli", "r": 2.0, "aggregator": "signed_sum", "attack": "random"},
        {"name": "median", "code": "uncoded", "aggregator": "median"},
    ],
)
# Amazon logistic regression (test AUC: a metric that shows any difference in the last bits).
AMAZON = dict(
    name="shard_amazon", seed=1, trials=5, task={"name": "amazon", "n_train": 4000, "shuffle": False},
    n=8, b=2, attack="directional", direction=1, partitioning="shards", batch_size=80, steps=8, eval_every=4,
    optim={"lr": 1e-3, "lr_boundaries": [], "momentum": 0.0, "worker_momentum": 0.9},
    schemes=[{"name": "mv", "code": "uncoded"}, {"name": "bern", "code": "bernoulli", "r": 2.0}],
)

CASES = {
    # name: (config, [(mesh_trials, mesh_partitions, trial_batching), ...]); the first is the reference.
    "mlp_vmap": (MLP, [(1, 1, "vmap"), (2, 4, "vmap")]),
    "mlp_map": (MLP, [(1, 1, "map"), (8, 1, "map")]),
    "amazon_auto": (AMAZON, [(1, 1, "map"), ("auto", 1, "map")]),   # the default: min(8 devices, pairs)
    "amazon_sparse_map": (AMAZON, [(1, 1, "map"), (4, 1, "map")]),
    "amazon_direct": (dict(AMAZON, runtime={"formulation": "dense"}), [(1, 1, "vmap"), (1, 8, "vmap")]),
}


def cnn_auto_mesh() -> list[int]:
    """The mesh `trials: auto` gives a convolutional model's call on the CPU (8 devices, 4 pairs)."""
    from jax_ec.experiment import prepare_group
    from jax_ec.plan import group_schemes, make_schemes
    from jax_ec.tasks import make_task
    cfg = config_from_dict(dict(name="cnn_auto", trials=4, task={"name": "digits", "model": "cnn", "width": 4},
                                n=5, b=1, batch_size=20, steps=2, eval_every=1,
                                schemes=[{"name": "mv", "code": "uncoded"}]))
    task = make_task(cfg.task, cfg.seed)
    (group,) = group_schemes(make_schemes(cfg, task.num_train))
    return list(prepare_group(cfg, 0, group, task).mesh)


class Interrupted(Exception):
    pass


def resume_across_meshes(out_dir: str) -> dict:
    """A run on mesh 2 × 4 interrupted after its first state checkpoint, resumed on one device."""
    import jax_ec.checkpoint as ck
    cfg = dict(MLP, schemes=MLP["schemes"][:2], runtime={"trial_batching": "vmap"})
    original = ck.Checkpointer.save_progress

    def save_then_stop(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise Interrupted

    ck.Checkpointer.save_progress = save_then_stop
    try:
        run_experiment(config_from_dict(dict(cfg, runtime={"trial_batching": "vmap",
                                                           "mesh": {"trials": 2, "partitions": 4}})), out_dir,
                       progress_bar=False, checkpoint_every_s=0)
        raise AssertionError("the run was not interrupted")
    except Interrupted:
        pass
    finally:
        ck.Checkpointer.save_progress = original
    res = run_experiment(config_from_dict(dict(cfg, runtime={"trial_batching": "vmap", "mesh": {"trials": 1}})),
                         out_dir, progress_bar=False, resume=True, checkpoint_every_s=0)
    return {r.curves.scheme: {"metric": [[float(v).hex() for v in row] for row in np.asarray(r.curves.metric)],
                              "resumed_from_step": r.resumed_from_step} for r in res.runs}


def main(out_path: str, names: list[str]) -> None:
    assert jax.device_count() == 8, jax.devices()
    results, meshes_used = {}, {}
    for name in [n for n in names if n in CASES]:
        base, meshes = CASES[name]
        runs = {}
        for t, p, batching in meshes:
            runtime = {**base.get("runtime", {}), "trial_batching": batching, "mesh": {"trials": t, "partitions": p}}
            cfg = config_from_dict(dict(base, runtime=runtime))
            res = run_experiment(cfg, os.path.join(os.path.dirname(out_path), f"{name}_{t}x{p}"),
                                 progress_bar=False, checkpoint_every_s=None)
            run_json = os.path.join(os.path.dirname(out_path), f"{name}_{t}x{p}", "run.json")
            meshes_used[f"{name}_{t}x{p}"] = [(g["mesh"], g["pairs"]) for g in json.loads(open(run_json).read())["groups"]]
            runs[f"{t}x{p}"] = {
                r.curves.scheme: {"metric": [[float(v).hex() for v in row] for row in np.asarray(r.curves.metric)],
                                  "trainer": r.trainer, "redundancy": np.asarray(r.redundancy).tolist(),
                                  "byzantine": np.asarray(r.byzantine).astype(int).tolist()}
                for r in res.runs}
        results[name] = runs
    if "resume" in names or not names:
        results["resume"] = resume_across_meshes(os.path.join(os.path.dirname(out_path), "resume"))
    results["meshes_used"] = meshes_used
    results["cnn_auto_mesh"] = cnn_auto_mesh()
    results["mesh_shapes"] = {"auto": mesh_shape(MeshConfig()), "auto_3_pairs": mesh_shape(MeshConfig(), 3),
                              "auto_partitions_4": mesh_shape(MeshConfig(partitions=4), 100),
                              "fixed": mesh_shape(MeshConfig(trials=2, partitions=2), 1)}
    with open(out_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or [*CASES, "resume"])
