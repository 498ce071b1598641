"""``jax-ec codes show|verify|design|estimate``: inspect, verify, design and analyse allocation codes.

* ``show``    — a code's matrix, redundancy, loads and the largest b it perfectly tolerates;
* ``verify``  — exact perfect b-tolerance with the worst-case margin and, when it fails, a
  counterexample (partition signs and Byzantine set) replayed through :func:`jax_ec.elect`;
* ``design``  — the deterministic construction's redundancy for each (n, b) beside the
  repetition code's (and the exact minimum for small n with ``--min``), with a plot;
* ``estimate`` — Bernoulli-code statistics: failure probability, the smallest p reaching a target
  failure probability as n grows, load deviation against Hoeffding's bound; every number is
  reproducible from ``--seed``.
"""

from __future__ import annotations

import argparse

import numpy as np

from .codes import bernoulli, draco, load_code, paper_code_n5, redundancy, uncoded

__all__ = ["add_codes_parser", "run_codes"]

CODE_NAMES = ("uncoded", "bernoulli", "paper_n5", "deterministic", "repetition", "draco")


def add_codes_parser(sub: argparse._SubParsersAction) -> None:
    codes = sub.add_parser("codes", help="inspect, verify, design and analyse allocation codes")
    csub = codes.add_subparsers(dest="codes_command", required=True)

    def code_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("code", help=f"one of {', '.join(CODE_NAMES)}, or a CSV/.npy file of a 0/1 matrix")
        p.add_argument("--n", type=int, default=5, help="workers (default 5)")
        p.add_argument("--b", type=int, default=1, help="Byzantine workers to tolerate (default 1)")
        p.add_argument("--r", type=float, default=2.0, help="bernoulli: redundancy, p = r/n (default 2)")
        p.add_argument("--seed", type=int, default=0, help="bernoulli: seed of the draw (default 0)")
        p.add_argument("--allow-idle", action="store_true", help="deterministic: allow idle workers")

    code_args(csub.add_parser("show", help="matrix, redundancy, loads, largest tolerated b"))
    v = csub.add_parser("verify", help="exact perfect b-tolerance with a counterexample")
    code_args(v)
    v.add_argument("--plot", default=None, help="PNG of the margin histogram over sign patterns")
    d = csub.add_parser("design", help="deterministic codes' redundancy vs the repetition code")
    d.add_argument("--n", type=int, nargs="+", default=[5, 7, 9, 11, 15, 21, 25], help="worker counts")
    d.add_argument("--b", type=int, nargs="+", default=[1, 2, 3], help="Byzantine counts")
    d.add_argument("--min", action="store_true", help="also search the exact minimum redundancy (small n only)")
    d.add_argument("--plot", default=None, help="PNG: redundancy vs n")
    e = csub.add_parser("estimate", help="Bernoulli-code statistics (Monte Carlo, reproducible from --seed)")
    e.add_argument("what", choices=("failure", "smallest-p", "load"))
    e.add_argument("--n", type=int, nargs="+", default=[15], help="worker counts (k = n)")
    e.add_argument("--p", type=float, nargs="+", default=[2 / 15], help="failure/load: connection probabilities")
    e.add_argument("--b", type=int, default=None, help="Byzantine workers (default: --b-fraction of n)")
    e.add_argument("--b-fraction", type=float, default=0.1, help="b = floor(fraction · n) when --b is absent")
    e.add_argument("--attack", default="reverse", help="none, reverse, directional, random, omniscient, worst_case")
    e.add_argument("--sign-model", default="uniform", help="uniform, or correct:q (each sign correct w.p. q)")
    e.add_argument("--target", type=float, default=1e-2, help="smallest-p: target failure probability")
    e.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.04, 0.06, 0.08, 0.1], help="load: deviations ε")
    e.add_argument("--draws", type=int, default=512, help="code draws per estimate")
    e.add_argument("--patterns", type=int, default=256, help="sign patterns per draw")
    e.add_argument("--seed", type=int, default=0, help="PRNG seed")
    e.add_argument("--plot", default=None, help="PNG (smallest-p vs sqrt(log n / n); load deviation vs Hoeffding)")


def _code(args: argparse.Namespace) -> np.ndarray:
    name = args.code
    if name == "uncoded":
        return uncoded(args.n)
    if name == "bernoulli":
        return bernoulli(args.seed, args.n, args.r)
    if name == "paper_n5":
        return paper_code_n5()
    if name == "deterministic":
        from .analysis.design import deterministic
        return deterministic(args.n, args.b, allow_idle=args.allow_idle)
    if name == "repetition":
        from .analysis.design import repetition
        return repetition(args.n, args.b)
    if name == "draco":
        return draco(args.n, args.b)
    return load_code(name)


def _b_of(args: argparse.Namespace, n: int) -> int:
    return args.b if args.b is not None else int(np.floor(args.b_fraction * n))


def run_codes(args: argparse.Namespace) -> int:
    """Run a ``codes`` subcommand; prints its table. Errors propagate as ValueError/FileNotFoundError."""
    from .analysis import bernoulli as stats
    from .analysis import report
    from .analysis.verify import max_tolerance

    if args.codes_command == "show":
        G = _code(args)
        loads = G.sum(axis=1)
        print("\n".join(" ".join(str(int(x)) for x in row) for row in G))
        print(f"\nn = {G.shape[0]}, k = {G.shape[1]}, redundancy r = {redundancy(G):.4g}, "
              f"loads {loads.tolist()}, largest perfectly tolerated b = {max_tolerance(G)}")
    elif args.codes_command == "verify":
        G = _code(args)
        print(report.verify_report(G, args.b))
        if args.plot:
            report.plot_margin_histogram(args.plot, G, args.b)
            print(f"plot written to {args.plot}")
    elif args.codes_command == "design":
        r_min = None
        if args.min:
            from .analysis.search import min_redundancy
            r_min = {(n, b): min_redundancy(n, b).redundancy for n in args.n for b in args.b
                     if 2 * b < n and n <= 7}
        print(report.design_table(args.n, args.b, r_min=r_min))
        if args.plot:
            report.plot_redundancy(args.plot, args.n, tuple(args.b), r_min=r_min)
            print(f"plot written to {args.plot}")
    elif args.codes_command == "estimate":
        sign = args.sign_model
        if isinstance(sign, str) and sign.startswith("correct:"):
            sign = ("correct", float(sign.split(":", 1)[1]))
        if args.what == "failure":
            rows = []
            for n in args.n:
                for p in args.p:
                    b = _b_of(args, n)
                    est = stats.failure_probability(args.seed, n, p, b, attack=args.attack, draws=args.draws,
                                                    patterns_per_draw=args.patterns, sign_model=sign)
                    rows.append({"n": n, "p": p, "b": b, "attack": args.attack, "estimate": est})
            print(report.estimate_table(rows))
        elif args.what == "smallest-p":
            ps = [stats.smallest_p(args.seed, n, args.target, b=_b_of(args, n), attack=args.attack,
                                   draws=args.draws, patterns_per_draw=args.patterns, sign_model=sign)
                  for n in args.n]
            print(report.smallest_p_table(args.n, ps))
            if args.plot:
                report.plot_smallest_p(args.plot, args.n, ps, title=f"target {args.target}, attack {args.attack}")
                print(f"plot written to {args.plot}")
        else:
            for n in args.n:
                for p in args.p:
                    ests = stats.load_deviation_curve(args.seed, n, p, args.eps, draws=args.draws)
                    print(report.load_deviation_table(n, p, args.eps, ests))
                    if args.plot:
                        report.plot_load_deviation(args.plot, n, p, args.eps, key=args.seed, draws=args.draws,
                                                  estimates=ests)
                        print(f"plot written to {args.plot}")
    return 0
