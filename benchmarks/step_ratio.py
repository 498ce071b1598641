"""Election-coded step time / plain one-gradient step time, same model, same global minibatch.

    python -m benchmarks.step_ratio [--models amazon,mlp[,resnet18]] [--n 15] [--r 2] [--batch 240]
                                    [--steps S] [--repeats R] [--timing auto|run|step] [--compare-modes]
                                    [--no-breakdown] [--quick] [--out PATH]

For every model (see ``benchmarks/_timing.py``: ``amazon`` the default Amazon job, ``mlp`` the
digits MLP, ``resnet18`` ResNet-18 on random CIFAR-shaped data; also ``cnn``, ``synthetic``) with a
Bernoulli code of redundancy r over n workers (k = n partitions) and global minibatch B:

* ``plain``: one ``jax.grad`` of the task's mean loss over the whole minibatch of B samples (the
  same rows the k partitions get) plus the trainer's optax update (``_timing.plain_fns``);
* ``election``: the step of the trainer ``make_train`` picks (Amazon: the touched-coordinates
  touched-coordinates formulation; others: the dense one);
* ``election_direct`` (Amazon only): the dense formulation (``runtime.formulation: dense``);
* ``partition_mean`` (breakdown, direct trainers): the direct step with sign + election replaced by
  the mean of the k partition gradients. ``partition_mean − plain`` is the price of computing k
  per-partition gradients instead of one; ``election − partition_mean`` that of sign + election
  (+ worker momentum for Amazon);
* ``row_selection`` (breakdown): ``trainer.batch_rows`` alone, which both steps run (with
  ``task.shuffle`` it evaluates the epoch's keyed permutation at the step's B positions); the breakdown
  also gives the ratio with it taken out of both steps.

Timing (``--timing``, recorded as ``timing_mode``): ``run`` times one jitted ``run(state, data, S)``
(``lax.scan`` over S steps, as ``Train.run`` and ``run_experiment`` do); ``step`` calls
``jax.jit(step)`` S times from Python. The state is donated and carried from call to call;
per-step time = call time / S. ``auto`` (default) uses ``step`` for the convolutional models (cnn,
resnet18) on CPU, because XLA:CPU runs a convolution's weight gradient 50-70x slower inside a loop
body (jax-ml/jax#12868), which would swamp both steps; ``--compare-modes`` also times the plain and
election steps the other way. Medians and minima over interleaved repeats after one warm-up call.
Ratios (election / plain) are computed within the run. Goals: MLP ratio ≤ 1.5 on CPU, ResNet-18
≤ 1.3 on GPU.
"""

from __future__ import annotations

import argparse

from benchmarks import _timing as T

# (steps per call, repeats) per model, full and --quick.
DEFAULTS = {"amazon": (20, 7), "mlp": (20, 7), "cnn": (10, 5), "synthetic": (20, 7), "logreg": (20, 7), "resnet18": (1, 3)}
QUICK = {"amazon": (5, 2), "mlp": (5, 2), "cnn": (3, 2), "synthetic": (5, 2), "logreg": (5, 2), "resnet18": (1, 2)}
GOALS = {"mlp": ("cpu", 1.5), "resnet18": ("gpu", 1.3)}


def measure_model(model: str, args, log=print) -> dict:
    import jax
    steps, repeats = (QUICK if args.quick else DEFAULTS)[model]
    steps = args.steps or steps
    repeats = args.repeats or repeats
    mode = T.timing_mode(model, args.timing)
    cfg, task = T.build_from_args(model, args)
    trainer = T.trainer_of(cfg, task)
    data = T.device_data(task)
    key = T.trial_key(args.seed)
    log(f"{model}: {trainer.kind}, d = {trainer.num_params:,}, k = {trainer.static.k}, "
        f"B = {trainer.static.batch}, timing {mode}, {steps} step(s) per call, {repeats} repeats")

    plain_init, plain = T.plain_fns(trainer)
    measured = {"plain": (plain, jax.jit(plain_init)), "election": (T.trainer_stepper(trainer), jax.jit(trainer.init))}
    trainers = {"election": trainer}
    if model == "amazon":
        direct = T.trainer_of(cfg, task, formulation="dense")
        trainers["election_direct"] = direct
        measured["election_direct"] = (T.trainer_stepper(direct), jax.jit(direct.init))
    else:
        direct = trainer
    if args.breakdown:
        measured["partition_mean"] = (T.partition_mean_stepper(direct), jax.jit(direct.init))
        rows_init, rows = T.rows_fns(trainer)
        measured["row_selection"] = (rows, jax.jit(rows_init))
    # The election steps take the scheme's parameters as an argument (_timing.shared_step_call): the
    # program redundancy_sweep and paper_loop compile for the same model, so a suite compiles it once.
    calls = {name: T.shared_step_call(trainers[name], jax.jit(trainers[name].train.init)(key, trainers[name].params),
                                      data, steps, mode, {}) if name in trainers
             else T.step_call(stepper, init(key), data, steps, mode) for name, (stepper, init) in measured.items()}
    modes = {name: mode for name in calls}
    if args.compare_modes:
        other = "step" if mode == "run" else "run"
        for name in ("plain", "election"):
            stepper, init = measured[name]
            calls[f"{name}[{other}]"] = T.step_call(stepper, init(key), data, steps, other)
            modes[f"{name}[{other}]"] = other
    timings = T.time_many(calls, repeats, units=steps, budget_s=args.budget_s, log=log)

    plain_t = timings["plain"]
    ratios = {f"{name}/plain": T.ratio(t, plain_t) for name, t in timings.items()
              if name not in ("plain", "row_selection") and "[" not in name}
    if "election_direct" in timings:
        ratios["election_direct/election"] = T.ratio(timings["election_direct"], timings["election"])
    if args.compare_modes:
        other = "step" if mode == "run" else "run"
        ratios[f"election[{other}]/plain[{other}]"] = T.ratio(timings[f"election[{other}]"], timings[f"plain[{other}]"])
        for name in ("plain", "election"):
            ratios[f"{name}[{other}]/{name}[{mode}]"] = T.ratio(timings[f"{name}[{other}]"], timings[name])
    breakdown = None
    if "partition_mean" in timings:
        elect_name = "election_direct" if "election_direct" in timings else "election"
        pm, el = timings["partition_mean"].median_ms_per_unit, timings[elect_name].median_ms_per_unit
        rows_ms = timings["row_selection"].median_ms_per_unit
        breakdown = {"of": elect_name, "row_selection_ms": rows_ms,
                     "plain_grad_and_update_ms": plain_t.median_ms_per_unit - rows_ms,
                     "extra_for_k_partition_grads_ms": pm - plain_t.median_ms_per_unit,
                     "extra_for_sign_and_election_ms": el - pm, "total_ms": el,
                     "ratio_without_row_selection": (el - rows_ms) / (plain_t.median_ms_per_unit - rows_ms)}
    result = {**T.config_record(cfg, trainer), "steps_per_call": steps, "timing_mode": mode,
              "election_step": T.describe_mode(mode, steps), "modes": modes,
              "trainers": {name: type(t).__name__ for name, t in trainers.items()},
              "measurements": {name: t.to_dict() for name, t in timings.items()},
              "ratios": ratios, "breakdown": breakdown}
    if model in GOALS:
        platform, bound = GOALS[model]
        measured_ratio = ratios["election/plain"]["median"]
        result["goal"] = {"platform": platform, "max_ratio": bound, "measured": measured_ratio,
                          "met": (measured_ratio <= bound) if jax.default_backend() == platform else None,
                          "note": None if jax.default_backend() == platform else
                          f"goal is for {platform}; measured on {jax.default_backend()}"}
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=T.models_arg, default=None,
                        help="comma-separated: amazon,mlp,cnn,synthetic,resnet18 (default amazon,mlp)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed call (default per model)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per function (default per model)")
    parser.add_argument("--budget-s", type=float, default=None, help="stop repeating after this many seconds")
    T.model_args(parser)
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="skip the partition-gradient step (breakdown of the election step)")
    parser.add_argument("--timing", choices=T.TIMING_MODES, default="auto",
                        help="run: lax.scan of S steps in one jit; step: jit(step) called S times; auto: step "
                        "for convolutional models on CPU (XLA:CPU conv weight gradients are slow in loops)")
    parser.add_argument("--compare-modes", action="store_true",
                        help="also time plain and election steps in the other timing mode")
    T.common_args(parser)
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = ["amazon", "mlp"]
    env = T.environment()
    results = {m: measure_model(m, args) for m in args.models}
    rows = []
    for m, res in results.items():
        meas = res["measurements"]
        for name in [k for k in meas if k not in ("plain", "row_selection") and "[" not in k]:
            goal = res.get("goal") if name == "election" else None
            rows.append({"model": m, "trainer": res["trainers"].get(name, "(breakdown)"), "d": res["num_params"],
                         "plain": meas["plain"]["median_ms_per_unit"], "which": name,
                         "ms": meas[name]["median_ms_per_unit"], "ratio": res["ratios"][f"{name}/plain"]["median"],
                         "ratio_min": res["ratios"][f"{name}/plain"]["min"],
                         "goal": None if goal is None else f"<= {goal['max_ratio']} ({goal['platform']}): "
                         + {True: "met", False: "NOT met", None: "n/a here"}[goal["met"]]})
    print(T.table(rows, [("model", "model", ""), ("which", "step", ""), ("trainer", "trainer", ""),
                         ("d", "params", ","), ("plain", "plain ms", ".3f"), ("ms", "step ms", ".3f"),
                         ("ratio", "ratio (med)", ".2f"), ("ratio_min", "ratio (min)", ".2f"), ("goal", "goal", "")]))
    for m, res in results.items():
        b = res["breakdown"]
        if b:
            print(f"{m} breakdown of {b['of']} ({b['total_ms']:.3f} ms/step): row selection {b['row_selection_ms']:.3f}"
                  f" + one grad & update {b['plain_grad_and_update_ms']:.3f} + k partition grads instead "
                  f"{b['extra_for_k_partition_grads_ms']:+.3f} + sign/election {b['extra_for_sign_and_election_ms']:+.3f}"
                  f" ms; ratio without the shared row selection {b['ratio_without_row_selection']:.2f}")
    T.write_result(T.out_path(args, "step_ratio"), "step_ratio", env, args, {"models": results})
    return results


if __name__ == "__main__":
    main()
