"""Election-coded step time against the Bernoulli redundancy r (it should not grow with r).

    python -m benchmarks.redundancy_sweep [--models mlp[,resnet18,amazon]] [--rs 1,2,3,5,15] [--n 15]
                                          [--batch 240] [--steps S] [--repeats R] [--timing auto|run|step]
                                          [--quick] [--out PATH]

The simulator computes every partition gradient once, however many workers hold it, so the step
should cost the same at every r; the paper's per-worker loop grows linearly with r. For each model
(``benchmarks/_timing.py``) and each r (``n`` stands for r = n: every worker holds every
partition), the step of the trainer ``make_train`` picks is timed S steps per call (``--timing``
as in step_ratio: ``trainer.run`` under jit, or ``jax.jit(trainer.step)`` for convolutional models
on CPU), per-step time = call time / S, the r values interleaved round by round, with the plain
one-gradient step (``_timing.plain_fns``) beside them for scale. Every r runs the same compiled
program (the code is an argument: ``_timing.shared_step_call``), so only one election step
compiles. Reported: each time / time at r = 1 (should stay near 1) and the plain ratio.
"""

from __future__ import annotations

import argparse

from benchmarks import _timing as T

DEFAULTS = {"amazon": (20, 7), "mlp": (20, 7), "cnn": (10, 5), "synthetic": (20, 7), "logreg": (20, 7), "resnet18": (1, 2)}
QUICK = {"amazon": (5, 2), "mlp": (5, 2), "cnn": (3, 2), "synthetic": (5, 2), "logreg": (5, 2), "resnet18": (1, 2)}


def parse_rs(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def measure_model(model: str, args, log=print) -> dict:
    import jax
    steps, repeats = (QUICK if args.quick else DEFAULTS)[model]
    steps, repeats = args.steps or steps, args.repeats or repeats
    rs = [float(args.n) if r == "n" else float(r) for r in args.rs]
    mode = T.timing_mode(model, args.timing)
    key = T.trial_key(args.seed)
    calls, configs, trainers, data, shared = {}, {}, {}, None, {}
    for r in rs:
        cfg, task = T.build_from_args(model, args, r=r)
        trainer = T.trainer_of(cfg, task)
        if data is None:
            data = T.device_data(task)
            plain_init, plain = T.plain_fns(trainer)
            calls["plain"] = T.step_call(plain, jax.jit(plain_init)(key), data, steps, mode)
            init = jax.jit(trainer.train.init)       # the code's parameters are an argument: one compilation
        state = init(key, trainer.params)
        name = f"r={r:g}"
        configs[name] = {**T.config_record(cfg, trainer),
                         "realised_redundancy": float(state.G.sum()) / args.n,
                         "max_load": float(state.G.sum(axis=1).max())}
        trainers[name] = trainer
        calls[name] = T.shared_step_call(trainer, state, data, steps, mode, shared)
    log(f"{model}: {trainer.kind}, d = {trainer.num_params:,}, r in {rs}, timing {mode}, "
        f"{steps} step(s) per call, {repeats} repeats")
    timings = T.time_many(calls, repeats, units=steps, budget_s=args.budget_s, log=log)
    base = timings[f"r={rs[0]:g}"]
    rows = {name: {"r": float(name[2:]), "realised_redundancy": configs[name]["realised_redundancy"],
                   "max_load": configs[name]["max_load"], "ms": t.median_ms_per_unit, "min_ms": t.min_ms_per_unit,
                   "vs_first_r": T.ratio(t, base), "vs_plain": T.ratio(t, timings["plain"])}
            for name, t in timings.items() if name != "plain"}
    worst = max(v["vs_first_r"]["median"] for v in rows.values())
    return {"model": model, "trainer": trainer.kind, "num_params": trainer.num_params,
            "steps_per_call": steps, "reference_r": rs[0], "timing_mode": mode,
            "election_step": T.describe_mode(mode, steps),
            "configs": configs, "measurements": {n: t.to_dict() for n, t in timings.items()},
            "per_r": rows, "max_ratio_vs_first_r": worst}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=T.models_arg, default=None, help="comma-separated (default mlp)")
    parser.add_argument("--rs", type=parse_rs, default=parse_rs("1,2,3,5,n"),
                        help="redundancies, 'n' for r = n (default 1,2,3,5,n); the first is the reference")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--timing", choices=T.TIMING_MODES, default="auto",
                        help="run: lax.scan of S steps in one jit; step: jit(step) called S times; auto: step "
                        "for convolutional models on CPU (see step_ratio)")
    T.model_args(parser, r=False)
    T.common_args(parser)
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = ["mlp"]
    if args.quick and args.rs == parse_rs("1,2,3,5,n"):
        args.rs = parse_rs("1,n")
    env = T.environment()
    results = {m: measure_model(m, args) for m in args.models}
    rows = [{"model": m, "r": v["r"], "real_r": v["realised_redundancy"], "load": v["max_load"], "ms": v["ms"],
             "min_ms": v["min_ms"], "vs": v["vs_first_r"]["median"], "vs_min": v["vs_first_r"]["min"],
             "plain": v["vs_plain"]["median"]}
            for m, res in results.items() for v in res["per_r"].values()]
    print(T.table(rows, [("model", "model", ""), ("r", "r", "g"), ("real_r", "realised r", ".2f"),
                         ("load", "max load", "g"), ("ms", "step ms (med)", ".3f"), ("min_ms", "step ms (min)", ".3f"),
                         ("vs", "/ r=first (med)", ".2f"), ("vs_min", "/ r=first (min)", ".2f"),
                         ("plain", "/ plain", ".2f")]))
    T.write_result(T.out_path(args, "redundancy_sweep"), "redundancy_sweep", env, args, {"models": results})
    return results


if __name__ == "__main__":
    main()
