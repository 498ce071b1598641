"""The election alone on a ResNet-18-sized parameter vector: time and achieved memory bandwidth.

    python -m benchmarks.vote_kernel [--d 11173962] [--n 15] [--r 2] [--b 3] [--attacks reverse,none]
                                     [--repeats 10] [--step-json PATH] [--quick] [--out PATH]

Inputs: an allocation G (n × k, k = n, Bernoulli p = r/n with every worker holding a partition, as
the CIFAR configs draw it), b uniformly placed Byzantine workers, and (k, d) float32 random ±1
partition signs (or Gaussian partition gradients for the sign pipeline). Timed functions (jitted;
one warm-up call, then interleaved repeats, each call ended by ``jax.block_until_ready``):

* ``election[attack]``: ``jax_ec.election.election(G, S, byzantine, attack)`` on the signs S;
* ``elect[attack]``: ``jax_ec.election.elect(G, grads, byzantine, attack)``, the public entry
  point: sign of the partition gradients + election (the sign-only pipeline from gradients);
* ``reference_read``: ``ones(k) @ S``, which reads and writes as many bytes as the election must
  (the achievable streaming rate of this machine for this access pattern);
* ``fused_election[attack]`` / ``fused_elect[attack]`` (``--no-alternatives`` skips them): the
  library's fused form, ``election(..., fused=True)`` (bit-packed signs, popcount counts, one
  elementwise pass over S with no (n, d) intermediate; attacks none/reverse/directional/omniscient),
  on the signs and from the gradients; its votes are checked equal to the matmul form's
  (``matches_library``).

Bytes moved, at least: ``k·d·4`` read (the float32 signs or gradients) + ``d·4`` written (the
float32 vote) = ``(k + 1)·d·4`` (715 MB at the defaults); achieved bandwidth = that / median time.
An election that materialises the (n, d) local votes moves about ``(k + 2n + 1)·d·4`` instead.
If ``--step-json`` (default ``benchmarks/results/step_ratio.json``) holds a ResNet-18 measurement
on the same device kind, the election's share of that election step is reported.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from benchmarks import _timing as T

RESNET18_PARAMS = 11_173_962
FUSED_ATTACKS = ("none", "reverse", "directional", "omniscient")


def main(argv=None) -> dict:
    import jax
    import jax.numpy as jnp

    from jax_ec.attacks import uniform_placement
    from jax_ec.codes import draw_bernoulli
    from jax_ec.election import elect, election

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=None, help=f"coordinates (default {RESNET18_PARAMS:,}; quick 1e6)")
    parser.add_argument("--n", type=int, default=15)
    parser.add_argument("--r", type=float, default=2.0)
    parser.add_argument("--b", type=int, default=3)
    parser.add_argument("--attacks", type=lambda s: [a.strip() for a in s.split(",")], default=["reverse", "none"])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--step-json", default=str(T.RESULTS / "step_ratio.json"))
    parser.add_argument("--no-alternatives", dest="alternatives", action="store_false",
                        help="skip the library's fused form (election(..., fused=True))")
    T.common_args(parser)
    args = parser.parse_args(argv)
    d = args.d or (1_000_000 if args.quick else RESNET18_PARAMS)
    repeats = args.repeats or (3 if args.quick else 10)
    n = k = args.n
    env = T.environment()

    key = jax.random.PRNGKey(args.seed)
    k_code, k_byz, k_signs, k_grads = jax.random.split(key, 4)
    G = draw_bernoulli(k_code, n, k, args.r / n, nonempty_rows=True)
    byz = uniform_placement(k_byz, n, args.b)
    S = jax.random.rademacher(k_signs, (k, d), dtype=jnp.float32)
    grads = jax.random.normal(k_grads, (k, d), jnp.float32)
    jax.block_until_ready((S, grads))

    calls = {"reference_read": partial(jax.jit(lambda s: jnp.ones((s.shape[0],), s.dtype) @ s), S)}
    for attack in args.attacks:
        calls[f"election[{attack}]"] = partial(jax.jit(partial(election, attack=attack)), G, S, byz)
        calls[f"elect[{attack}]"] = partial(elect, G, grads, byz, attack)
        if args.alternatives and attack in FUSED_ATTACKS:
            fused = partial(election, attack=attack, fused=True)
            calls[f"fused_election[{attack}]"] = partial(jax.jit(fused), G, S, byz)
            calls[f"fused_elect[{attack}]"] = partial(jax.jit(lambda G, g, b, f=fused: f(G, jnp.sign(g), b)),
                                                      G, grads, byz)
    print(f"vote kernel: d = {d:,}, n = k = {n}, r = {args.r:g} (realised {float(G.sum()) / n:.2f}), "
          f"b = {args.b}, {repeats} repeats")
    timings = T.time_many(calls, repeats)

    matches = {}
    for name, call in calls.items():
        if name.startswith("fused_"):
            matches[name] = bool((call() == calls[name.replace("fused_", "")]()).all())
    min_bytes = (k + 1) * d * 4
    rows, out = [], {}
    for name, t in timings.items():
        out[name] = {**t.to_dict(), "ms": 1e3 * t.median_s, "min_ms": 1e3 * t.min_s,
                     "bandwidth_GBps": min_bytes / t.median_s / 1e9, "bandwidth_GBps_best": min_bytes / t.min_s / 1e9}
        rows.append({"name": name, "ms": out[name]["ms"], "min_ms": out[name]["min_ms"],
                     "bw": out[name]["bandwidth_GBps"], "bwb": out[name]["bandwidth_GBps_best"],
                     "vs_ref": t.median_s / timings["reference_read"].median_s})
        out[name]["vs_reference_read"] = rows[-1]["vs_ref"]
        if name in matches:
            out[name]["matches_library"] = matches[name]
            out[name]["speedup_over_library"] = timings[name.replace("fused_", "")].median_s / t.median_s
            rows[-1]["same"] = matches[name]

    # Share of a ResNet-18 election step measured by step_ratio (same device kind only).
    share = {"source": args.step_json, "available": False}
    path = Path(args.step_json)
    if path.is_file():
        doc = json.loads(path.read_text())
        res = doc.get("models", {}).get("resnet18")
        same_device = doc.get("environment", {}).get("device_kind") == env["device_kind"]
        if res is None:
            share["reason"] = "no resnet18 entry"
        elif not same_device:
            share["reason"] = f"measured on {doc['environment'].get('device_kind')!r}, not {env['device_kind']!r}"
        elif res["num_params"] != d:
            share["reason"] = f"step has d = {res['num_params']}, kernel d = {d}"
        else:
            step_ms = res["measurements"]["election"]["median_ms_per_unit"]
            plain_ms = res["measurements"]["plain"]["median_ms_per_unit"]
            share.update(available=True, election_step_ms=step_ms, plain_step_ms=plain_ms,
                         attack_of_step=res["config"]["attack"])
            for name in out:
                if name != "reference_read":
                    share[f"{name}/election_step"] = out[name]["ms"] / step_ms
                    share[f"{name}/(election_step - plain_step)"] = out[name]["ms"] / (step_ms - plain_ms)
    else:
        share["reason"] = "file not found"

    print(T.table(rows, [("name", "function", ""), ("ms", "ms (med)", ".2f"), ("min_ms", "ms (min)", ".2f"),
                         ("bw", "GB/s (med)", ".1f"), ("bwb", "GB/s (best)", ".1f"), ("vs_ref", "x reference", ".2f"),
                         ("same", "votes == library", "")]))
    print(f"bytes = (k + 1)·d·4 = {min_bytes / 1e6:.0f} MB per call")
    if share["available"]:
        for name, v in share.items():
            if name.endswith("/election_step"):
                print(f"{name}: {100 * v:.2f}% of the ResNet-18 election step ({share['election_step_ms']:.0f} ms)")
    else:
        print(f"share of the ResNet-18 step: not available ({share.get('reason')})")
    body = {"d": d, "n": n, "k": k, "r": args.r, "realised_redundancy": float(G.sum()) / n, "b": args.b,
            "G": jnp.asarray(G, jnp.int32).tolist(), "byzantine": jnp.flatnonzero(byz).tolist(),
            "bytes_formula": "(k + 1) * d * 4: the float32 (k, d) input read once + the float32 (d,) vote written",
            "bytes_per_call": min_bytes, "measurements": out, "share_of_resnet18_step": share}
    T.write_result(T.out_path(args, "vote_kernel"), "vote_kernel", env, args, body)
    return body


if __name__ == "__main__":
    main()
