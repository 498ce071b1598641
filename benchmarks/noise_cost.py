"""Step time of noise before the sign: per worker copy (the default) against one draw per partition.

    python -m benchmarks.noise_cost [--models mlp[,cnn,amazon,resnet18]] [--r 2] [--sigma 0.01]
                                    [--steps S] [--repeats R] [--timing auto|run|step] [--quick] [--out PATH]

With ``noise_model: per_copy`` worker i adds its own draw to each partition j it holds, so a step
draws ``Σ_i L_i = r·n`` noise vectors of length d instead of k (``per_partition``), and the vote is
a loop over workers and their partitions (``jax_ec.election.per_copy_election``) instead of one
(fused or matmul) election over the k signs. Each partition gradient is still computed once. For
each model (``benchmarks/_timing.py``) the step of the trainer ``make_train`` picks is timed, the
three variants interleaved round by round: no noise, ``per_partition`` and ``per_copy`` noise at
σ = ``--sigma``. Reported: each step time and its ratio to the noiseless step. The Amazon model
runs the dense trainer here (the touched-coordinates one does not apply with noise), noiseless
included, so the ratio isolates the noise.
"""

from __future__ import annotations

import argparse

from benchmarks import _timing as T

DEFAULTS = {"amazon": (5, 5), "mlp": (20, 7), "cnn": (10, 5), "synthetic": (20, 7), "logreg": (20, 7),
            "resnet18": (1, 2)}
QUICK = {"amazon": (2, 2), "mlp": (5, 2), "cnn": (3, 2), "synthetic": (5, 2), "logreg": (5, 2), "resnet18": (1, 2)}
VARIANTS = {"no noise": [], "per_partition": ["noise_model=per_partition"], "per_copy": ["noise_model=per_copy"]}


def measure_model(model: str, args, log=print) -> dict:
    import jax
    steps, repeats = (QUICK if args.quick else DEFAULTS)[model]
    steps, repeats = args.steps or steps, args.repeats or repeats
    mode = T.timing_mode(model, args.timing)
    key = T.trial_key(args.seed)
    calls, configs, data = {}, {}, None
    for name, extra in VARIANTS.items():
        sigma = 0.0 if name == "no noise" else args.sigma
        cfg, task = T.build_from_args(model, args, extra=(*args.set, f"noise_std={sigma}", *extra))
        trainer = T.trainer_of(cfg, task, formulation="dense")
        if data is None:
            data = T.device_data(task)
        state = jax.jit(trainer.init)(key)
        configs[name] = {**T.config_record(cfg, trainer), "realised_redundancy": float(state.G.sum()) / cfg.n}
        calls[name] = T.step_call(T.trainer_stepper(trainer), state, data, steps, mode)
    log(f"{model}: d = {trainer.num_params:,}, r = {args.r}, sigma = {args.sigma}, timing {mode}, "
        f"{steps} step(s) per call, {repeats} repeats")
    timings = T.time_many(calls, repeats, units=steps, budget_s=args.budget_s, log=log)
    base = timings["no noise"]
    rows = {name: {"ms": t.median_ms_per_unit, "min_ms": t.min_ms_per_unit, "vs_no_noise": T.ratio(t, base)}
            for name, t in timings.items()}
    return {"model": model, "num_params": trainer.num_params, "steps_per_call": steps, "timing_mode": mode,
            "election_step": T.describe_mode(mode, steps), "configs": configs,
            "measurements": {n: t.to_dict() for n, t in timings.items()}, "per_variant": rows,
            "per_copy_vs_per_partition": T.ratio(timings["per_copy"], timings["per_partition"])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=T.models_arg, default=None, help="comma-separated (default mlp)")
    parser.add_argument("--sigma", type=float, default=0.01, help="noise standard deviation (default 0.01)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--timing", choices=T.TIMING_MODES, default="auto",
                        help="run: lax.scan of S steps in one jit; step: jit(step) called S times; auto: step "
                        "for convolutional models on CPU (see step_ratio)")
    T.model_args(parser)
    T.common_args(parser)
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = ["mlp"]
    env = T.environment()
    results = {m: measure_model(m, args) for m in args.models}
    rows = [{"model": m, "variant": name, "ms": v["ms"], "min_ms": v["min_ms"], "vs": v["vs_no_noise"]["median"],
             "vs_min": v["vs_no_noise"]["min"]}
            for m, res in results.items() for name, v in res["per_variant"].items()]
    print(T.table(rows, [("model", "model", ""), ("variant", "noise", ""), ("ms", "step ms (med)", ".3f"),
                         ("min_ms", "step ms (min)", ".3f"), ("vs", "/ no noise (med)", ".2f"),
                         ("vs_min", "/ no noise (min)", ".2f")]))
    T.write_result(T.out_path(args, "noise_cost"), "noise_cost", env, args, {"models": results})
    return results


if __name__ == "__main__":
    main()
