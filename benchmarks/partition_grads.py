"""Per-partition gradients on the CPU: which formulation is fastest for each model.

The election step needs the k partition gradients ``g_j = ∇ℓ(θ; partition j)`` separately (one
sign per partition), not their sum. Formulations compared on one global batch B split into k
partitions, against the plain step's single gradient over B:

* ``vmap``  — ``jax.vmap(jax.grad(ℓ))`` over partitions (the trainer's default): the forward pass
  batches the partitions into one; the backward pass's weight gradients become batched
  (batch-grouped) convolutions / matmuls, one per partition;
* ``map``   — ``lax.map`` over partitions: k ordinary backward passes of B/k samples each, one after
  another;
* ``map_g`` — ``lax.map(..., batch_size=g)``: partitions in groups of g, vmapped inside a group.

All give the same gradients up to float rounding (checked: max abs difference reported).
Run ``python -m benchmarks.partition_grads [--quick] [--models cnn,resnet18] [--width W]``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jax_ec.models import make_model
from jax_ec.models.mlp import classification_loss

from ._timing import common_args, environment, out_path, time_many, write_result


def _loss_fn(model, name):
    def loss(params, state, x, y):
        variables = {"params": params, **({"batch_stats": state} if state else {})}
        if name == "mlp":
            logits = model.apply(variables, x.reshape(x.shape[0], -1))
        elif state:
            logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
        else:
            logits = model.apply(variables, x, train=True)
        return classification_loss(logits, y)
    return loss


def bench_model(name: str, width: int | None, batch: int, k: int, repeats: int, groups: tuple[int, ...]) -> dict:
    model = make_model(name, 10, width)
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (batch, 32, 32, 3), jnp.float32)
    y = jax.random.randint(key, (batch,), 0, 10)
    sample = x[:1].reshape(1, -1) if name == "mlp" else x[:1]
    variables = model.init(key, sample) if name == "mlp" else model.init(key, sample, train=False)
    params, state = variables["params"], variables.get("batch_stats", {})
    loss = _loss_fn(model, name)
    d = ravel_pytree(params)[0].size
    xs, ys = x.reshape(k, batch // k, *x.shape[1:]), y.reshape(k, batch // k)

    def flat_grad(xb, yb):
        return ravel_pytree(jax.grad(loss)(params, state, xb, yb))[0]

    variants = {
        "plain": jax.jit(lambda x, y: flat_grad(x, y)),
        "vmap": jax.jit(lambda xs, ys: jax.vmap(flat_grad)(xs, ys)),
        "map": jax.jit(lambda xs, ys: jax.lax.map(lambda a: flat_grad(*a), (xs, ys))),
    }
    for g in groups:
        if 1 < g < k and k % g == 0:
            variants[f"map_g{g}"] = jax.jit(lambda xs, ys, g=g: jax.lax.map(lambda a: flat_grad(*a), (xs, ys),
                                                                             batch_size=g))
    calls, grads = {}, {}
    for label, fn in variants.items():
        args = (x, y) if label == "plain" else (xs, ys)
        calls[label] = (lambda fn=fn, args=args: fn(*args))
        grads[label] = np.asarray(fn(*args))
    timings = time_many(calls, repeats)
    ref = grads["vmap"]
    plain = timings["plain"].median_ms_per_unit
    rows = {}
    for label, t in timings.items():
        rows[label] = {**t.to_dict(), "ratio_to_plain": t.median_ms_per_unit / plain,
                       "max_abs_diff_vs_vmap": (None if label == "plain"
                                                else float(np.abs(grads[label] - ref).max()))}
    best = min((r for r in rows if r != "plain"), key=lambda r: rows[r]["median_ms_per_unit"])
    return {"model": name, "width": width, "num_params": int(d), "batch": batch, "k": k, "repeats": repeats,
            "variants": rows, "fastest": best}


def main(argv=None) -> None:
    parser = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--models", default="mlp,cnn,resnet18")
    parser.add_argument("--width", type=int, default=None, help="model width (default: each model's)")
    parser.add_argument("--batch", type=int, default=240)
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    env = environment()
    batch, width, repeats = args.batch, args.width, args.repeats
    if args.quick:
        batch, width, repeats = 30, 4, 2
    results = []
    for name in args.models.split(","):
        r = bench_model(name, width, batch, args.k, repeats, groups=(3, 5))
        results.append(r)
        print(f"{name} (d = {r['num_params']:,}, B = {batch}, k = {args.k}): " + ", ".join(
            f"{label} {v['median_ms_per_unit']:.1f} ms ({v['ratio_to_plain']:.2f}x plain)"
            for label, v in r["variants"].items()) + f"; fastest per-partition: {r['fastest']}", flush=True)
    write_result(out_path(args, "partition_grads"), "partition_grads", env, args, {"results": results})


if __name__ == "__main__":
    main()
