"""Per-trial throughput (trial-steps per second) against the number of trials T run in one call.

    python -m benchmarks.trials_sweep [--models mlp,amazon[,synthetic,resnet18]] [--trials 1,8,64,256]
                                      [--resnet-trials 1,4,8] [--modes vmap,map] [--steps S]
                                      [--repeats R] [--max-state-gb 2] [--unroll] [--quick] [--out PATH]

For each model (``benchmarks/_timing.py``; ``amazon`` runs the touched-coordinates
``SparseLogRegTrainer`` that ``make_train`` picks, the others the direct ``Trainer``), each T and
each trial-batching mode (``jax_ec.experiment.batch_trials(trainer.run, mode)``: ``vmap`` over the
trials, or ``lax.map`` running them one after another inside the call), the T trial states
(``jax.vmap(trainer.init)`` over ``trial_keys(seed, T)``) are advanced S steps by one jitted call,
as ``run_experiment`` does (state donated and carried from call to call). Throughput = T·S / call
time; the modes of one T are interleaved round by round. Reported: per-trial throughput, its ratio
to T = 1 (same mode, and best mode against best mode), and the faster mode per model and T.
Goal: at T = 64 the per-trial throughput of small models is at least 10× that at T = 1 on CPU.

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


def measure_model(model: str, trials: list[int], args, log=print) -> dict:
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
    log(f"{model}: {type(trainer).__name__}, d = {trainer.num_params:,}, preferred batching "
        f"{trainer.preferred_batching}, T in {trials}, {steps} step(s) per call")
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
    out = {"model": model, "trainer": type(trainer).__name__, "num_params": trainer.num_params,
           "preferred_batching": trainer.preferred_batching, "steps_per_call": steps, "reference_trials": trials[0],
           "batch_trials": source, "run": "unrolled trainer.step" if args.unroll else "trainer.run (lax.scan)",
           **T.config_record(cfg), "per_trials": per_t, "skipped": skipped}
    if model in SMALL and GOAL_T in per_t and trials[0] == 1:
        measured = per_t[GOAL_T]["best_vs_best_first_t"]
        out["goal"] = {"trials": GOAL_T, "min_ratio_vs_T1": GOAL_RATIO, "measured_best_vs_best": measured,
                       "met": measured >= GOAL_RATIO if jax.default_backend() == "cpu" else None}
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
    results = {m: measure_model(m, args.resnet_trials if m == "resnet18" else args.trials, args)
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
    T.write_result(T.out_path(args, "trials_sweep"), "trials_sweep", env, args, {"models": results})
    return results


if __name__ == "__main__":
    main()
