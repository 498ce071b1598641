"""Per-trial throughput (trial-steps per second) against the number of trials T run in one call.

    python -m benchmarks.trials_sweep [--models mlp,amazon[,synthetic,resnet18]] [--trials 1,8,64,256]
                                      [--resnet-trials 1,4,8] [--modes vmap,map] [--steps S]
                                      [--repeats R] [--max-state-gb 2] [--unroll] [--quick] [--out PATH]

For each model (``benchmarks/_timing.py``; ``amazon`` runs the touched-coordinates
touched-coordinates formulation the runtime picks, the others the dense one), each T and
each trial-batching mode (``jax_ec.experiment.batch_trials(trainer.run, mode)``: ``vmap`` over the
trials, or ``lax.map`` running them one after another inside the call), the T trial states
(``jax.vmap(trainer.init)`` over ``trial_keys(seed, T)``) are advanced S steps by one jitted call,
as ``run_experiment`` does (state donated and carried from call to call). Throughput = T·S / call
time; the modes of one T are interleaved round by round. Reported: per-trial throughput, its ratio
to T = 1 (same mode, and best mode against best mode), and the faster mode per model and T.
Goal: at T = 64 the per-trial throughput of small models is at least 10× that at T = 1 on CPU.
For each small model the script also reports how far batching could go at all on this device
(:func:`per_trial_floor`): one trial-step's flops at the device's matrix-multiply rate, and one
plain gradient over all T trials' rows, per trial; T = 1's step time over either floor bounds the
ratio.

``--unroll`` batches S unrolled ``trainer.step`` calls instead of ``trainer.run``: on CPU a
convolution's weight gradient runs 50-70x slower inside a loop body (jax-ml/jax#12868), which hits
``trainer.run`` (``lax.scan``) and the ``map`` mode's loop over trials for cnn/resnet18.

A T whose stacked trial state would exceed ``--max-state-gb`` is skipped and recorded as such
(the Amazon trainer keeps a (D, k) momentum per trial: 15.8 MB, so T = 256 needs 4 GB).
"""

from __future__ import annotations

import argparse

from benchmarks import _timing as T

SMALL = ("amazon", "mlp", "cnn", "synthetic", "logreg")
# Steps per call: Amazon runs the default job's evaluation chunk (eval_every = 39), as run_experiment does.
STEPS = {"amazon": 39, "mlp": 20, "cnn": 5, "synthetic": 20, "logreg": 20, "resnet18": 1}
GOAL_T, GOAL_RATIO = 64, 10.0


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _batch_trials():
    try:
        from jax_ec.experiment import batch_trials
        return batch_trials, "jax_ec.experiment.batch_trials"
    except ImportError:  # the library moved it: the same two modes, written here
        import jax

        def batch_trials(run, mode):
            if mode == "vmap":
                return jax.vmap(run, in_axes=(0, None, None))
            return lambda states, data, n: jax.lax.map(lambda s: run(s, data, n), states)
        return batch_trials, "benchmarks.trials_sweep fallback (jax_ec.experiment.batch_trials not importable)"


def gemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The device's float32 matrix-multiply rate (GFLOP/s, best of ``repeats``) on one square
    ``size``-matrix product: the arithmetic ceiling that batching trials can approach at best."""
    import jax
    import jax.numpy as jnp
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    f = jax.jit(jnp.dot)
    timing = T.time_many({"gemm": lambda: f(a, a)}, repeats, log=None)["gemm"]
    return 2 * size ** 3 / timing.min_s / 1e9


def per_trial_floor(trainer, data, t: int, peak_gflops: float, seed: int, log=print) -> dict:
    """Lower bounds on the time of one trial-step, whatever the batching of T trials:

    * ``arithmetic``: XLA's flop count of one trial's step (``cost_analysis`` of the compiled
      ``trainer.step``) at the device's matrix-multiply rate (:func:`gemm_gflops`);
    * ``pooled_gradient``: one plain gradient of the task's loss over T·B rows (all T trials'
      minibatches as if they were one, one parameter set: the best-batched form of the gradient
      work every trial-step contains), per B rows. The election step also computes the k
      partition gradients and the vote; this floor counts neither.

    The per-trial throughput at T trials can exceed T = 1's by at most (T = 1 step time) / floor:
    a hard bound for the arithmetic floor, a practical one for the pooled gradient (the gradient
    work alone, in its best-batched form on this device).
    """
    import jax

    from jax_ec.experiment import trial_keys
    state = jax.jit(trainer.init)(trial_keys(seed, 1)[0])
    cost = jax.jit(trainer.step).lower(state, data).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    task = trainer.task
    rows_per_step = int(trainer.batch_rows(state.keys.data, state.step).size)
    rows = jax.random.randint(jax.random.PRNGKey(seed), (t * rows_per_step,), 0, data[0].shape[0])
    x, y = data[0][rows], data[1][rows]
    params, model_state = trainer.model(state)
    grad = jax.jit(jax.grad(lambda p, x, y: task.loss(p, model_state, x, y, jax.random.PRNGKey(0))[0]))
    timing = T.time_many({"pooled": lambda: grad(params, x, y)}, 7, log=None)["pooled"]
    pooled_us = 1e6 * timing.min_s / t
    out = {"flops_per_trial_step": flops, "gemm_gflops": peak_gflops,
           "arithmetic_floor_us": 1e6 * flops / (peak_gflops * 1e9) if flops else None,
           "pooled_gradient_rows": t * rows_per_step, "pooled_gradient_us_per_trial": pooled_us}
    log(f"  floor: {flops / 1e6:.2f} MFLOP per trial-step (XLA) -> {out['arithmetic_floor_us'] or 0:.1f} us at "
        f"{peak_gflops:.0f} GFLOP/s; plain gradient over {t} x {rows_per_step} rows: {pooled_us:.1f} us per trial")
    return out


def measure_model(model: str, trials: list[int], args, log=print, peak_gflops: float | None = None) -> dict:
    import jax

    from jax_ec.experiment import trial_keys
    batch_trials, source = _batch_trials()
    steps = args.steps or (2 if args.quick else STEPS[model])
    cfg, task = T.build_from_args(model, args)
    trainer = T.trainer_of(cfg, task)
    data = T.device_data(task)
    init = jax.jit(jax.vmap(trainer.init))
    if args.unroll:   # the S steps written out, no loop of steps (the map mode still loops over trials)
        def run(state, data, num_steps):
            for _ in range(num_steps):
                state = trainer.step(state, data)
            return state
    else:
        run = trainer.run
    log(f"{model}: {trainer.kind}, d = {trainer.num_params:,}, preferred batching "
        f"{ {t: trainer.preferred_batching(t) for t in trials} }, T in {trials}, {steps} step(s) per call")
    per_t, skipped = {}, {}
    for t in trials:
        keys = trial_keys(args.seed, t)
        shapes = jax.eval_shape(init, keys)
        gb = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes)) / 1e9
        if gb > args.max_state_gb:
            skipped[t] = f"stacked state {gb:.2f} GB > --max-state-gb {args.max_state_gb}"
            log(f"  T = {t}: skipped ({skipped[t]})")
            continue
        calls = {mode: T.chained(jax.jit(batch_trials(run, mode), static_argnums=2, donate_argnums=0),
                                 init(keys), data, steps) for mode in args.modes}
        log(f"  T = {t} (state {gb * 1e3:.1f} MB)")
        timings = T.time_many(calls, args.repeats or (2 if args.quick else 5), units=t * steps,
                              budget_s=args.budget_s, log=log)
        per_t[t] = {"state_gb": gb, "measurements": {m: x.to_dict() for m, x in timings.items()},
                    "trial_steps_per_s": {m: 1e3 / x.median_ms_per_unit for m, x in timings.items()},
                    "trial_steps_per_s_best_of_min": {m: 1e3 / x.min_ms_per_unit for m, x in timings.items()}}
        del calls
    base = per_t.get(trials[0])
    for t, res in per_t.items():
        thr = res["trial_steps_per_s"]
        res["faster_mode"] = max(thr, key=thr.get)
        if base is not None:
            b = base["trial_steps_per_s"]
            res["vs_first_t"] = {m: thr[m] / b[m] for m in thr}
            res["best_vs_best_first_t"] = max(thr.values()) / max(b.values())
    out = {"model": model, "trainer": trainer.kind, "num_params": trainer.num_params,
           "preferred_batching": {t: trainer.preferred_batching(t) for t in trials}, "steps_per_call": steps, "reference_trials": trials[0],
           "batch_trials": source, "run": "unrolled trainer.step" if args.unroll else "trainer.run (lax.scan)",
           **T.config_record(cfg), "per_trials": per_t, "skipped": skipped}
    if model in SMALL and GOAL_T in per_t and trials[0] == 1:
        measured = per_t[GOAL_T]["best_vs_best_first_t"]
        out["goal"] = {"trials": GOAL_T, "min_ratio_vs_T1": GOAL_RATIO, "measured_best_vs_best": measured,
                       "met": measured >= GOAL_RATIO if jax.default_backend() == "cpu" else None}
        if peak_gflops is not None and model != "amazon":
            floor = per_trial_floor(trainer, data, GOAL_T, peak_gflops, args.seed, log)
            t1_us = 1e6 / max(per_t[trials[0]]["trial_steps_per_s"].values())
            floor["t1_us_per_trial_step"] = t1_us
            floor["max_ratio_arithmetic"] = t1_us / floor["arithmetic_floor_us"] if floor["arithmetic_floor_us"] else None
            floor["max_ratio_pooled_gradient"] = t1_us / floor["pooled_gradient_us_per_trial"]
            out["goal"]["bound"] = floor
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=T.models_arg, default=None, help="comma-separated (default mlp,amazon)")
    parser.add_argument("--trials", type=_ints, default=None, help="T for small models (default 1,8,64,256)")
    parser.add_argument("--resnet-trials", type=_ints, default=None, help="T for resnet18 (default 1,4,8)")
    parser.add_argument("--modes", type=lambda s: [m.strip() for m in s.split(",")], default=["vmap", "map"])
    parser.add_argument("--steps", type=int, default=None, help="steps per call (default per model)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=20.0, help="per T: stop repeating after this many s")
    parser.add_argument("--max-state-gb", type=float, default=2.0)
    parser.add_argument("--unroll", action="store_true",
                        help="batch S unrolled trainer.step calls instead of trainer.run (lax.scan): avoids "
                        "XLA:CPU's slow convolution weight gradients inside loops for cnn/resnet18 under vmap")
    T.model_args(parser)
    T.common_args(parser)
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = ["mlp", "amazon"]
    if args.trials is None:
        args.trials = [1, 8] if args.quick else [1, 8, 64, 256]
    if args.resnet_trials is None:
        args.resnet_trials = [1, 2] if args.quick else [1, 4, 8]
    env = T.environment()
    peak = gemm_gflops(512 if args.quick else 2048)
    print(f"float32 matrix-multiply rate: {peak:.0f} GFLOP/s")
    env["gemm_gflops"] = peak
    results = {m: measure_model(m, args.resnet_trials if m == "resnet18" else args.trials, args, peak_gflops=peak)
               for m in args.models}
    rows = []
    for m, res in results.items():
        for t, r in res["per_trials"].items():
            row = {"model": m, "T": t, "faster": r["faster_mode"], "best": r.get("best_vs_best_first_t")}
            for mode in args.modes:
                row[f"{mode}_thr"] = r["trial_steps_per_s"][mode]
                row[f"{mode}_x"] = r.get("vs_first_t", {}).get(mode)
            rows.append(row)
        for t, why in res["skipped"].items():
            rows.append({"model": m, "T": t, "faster": f"skipped: {why}"})
    cols = [("model", "model", ""), ("T", "T", "")]
    for mode in args.modes:
        cols += [(f"{mode}_thr", f"{mode} trial-steps/s", ".0f"), (f"{mode}_x", f"{mode} x T=1", ".2f")]
    cols += [("best", "best x best T=1", ".2f"), ("faster", "faster", "")]
    print(T.table(rows, cols))
    for m, res in results.items():
        if "goal" in res:
            g = res["goal"]
            print(f"{m}: T = {g['trials']} per-trial throughput {g['measured_best_vs_best']:.1f}x T = 1 "
                  f"(goal >= {g['min_ratio_vs_T1']:g}x): {'met' if g['met'] else 'NOT met' if g['met'] is False else 'n/a'}")
            if "bound" in g:
                b = g["bound"]
                arith = f"{b['max_ratio_arithmetic']:.1f}x" if b["max_ratio_arithmetic"] else "n/a"
                print(f"  bound: T = 1 step {b['t1_us_per_trial_step']:.1f} us; at most {arith} if every flop ran at "
                      f"{b['gemm_gflops']:.0f} GFLOP/s; at most {b['max_ratio_pooled_gradient']:.1f}x if the trial-step "
                      f"cost only its share of one plain gradient over all {g['trials']} trials' rows "
                      f"({b['pooled_gradient_us_per_trial']:.1f} us)")
    T.write_result(T.out_path(args, "trials_sweep"), "trials_sweep", env, args, {"models": results})
    return results


if __name__ == "__main__":
    main()
