"""``jax-ec codes show|verify|design|estimate``: inspect, verify, design and analyse allocation codes.

* ``show``    — a code's matrix, redundancy, loads and the largest b it perfectly tolerates;
* ``verify``  — exact perfect b-tolerance with the worst-case margin and, when it fails, a
  counterexample (partition signs and Byzantine set) replayed through :func:`jax_ec.elect`;
* ``design``  — the deterministic construction's redundancy for each (n, b) beside the
  repetition code's (and the exact minimum for small n with ``--min``), with a plot;
* ``estimate`` — Bernoulli-code statistics: failure probability, the smallest p reaching a target
  failure probability as n grows, load deviation against Hoeffding's bound; every number is
  reproducible from ``--seed``.

Every argument is checked before any work starts: a value out of range, an option that the chosen
code or estimate does not read, or an output path that cannot be written is one ValueError naming
the flag (``jax-ec: error: --n: got 0; expected an integer >= 1 (workers)``, exit 2). Long
commands show their progress: design rows are printed as they are computed, and a progress bar on
a terminal's stderr counts the settings of ``estimate`` and of ``design --min``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import _checks

__all__ = ["add_codes_parser", "run_codes", "CODE_NAMES", "OneLineErrorParser"]

# What each built-in code reads to build its matrix; `verify` also reads --b (the b it checks).
CODE_OPTIONS = {
    "uncoded": ("n",),
    "bernoulli": ("n", "r", "seed"),
    "paper_n5": (),
    "deterministic": ("n", "b", "allow_idle"),
    "repetition": ("n", "b"),
    "draco": ("n", "b"),
}
CODE_NAMES = tuple(CODE_OPTIONS)
CODE_DEFAULTS = {"n": 5, "b": 1, "r": 2.0, "seed": 0}

# What each estimate reads.
ESTIMATE_OPTIONS = {
    "failure": ("n", "p", "b", "b_fraction", "attack", "sign_model", "draws", "patterns", "seed"),
    "smallest-p": ("n", "b", "b_fraction", "attack", "sign_model", "target", "draws", "patterns", "seed", "plot"),
    "load": ("n", "p", "eps", "draws", "seed", "plot"),
}
ESTIMATE_DEFAULTS = {"n": [15], "p": [2 / 15], "b_fraction": 0.1, "attack": "reverse", "sign_model": "uniform",
                     "target": 1e-2, "eps": [0.02, 0.04, 0.06, 0.08, 0.1], "draws": 512, "patterns": 256,
                     "seed": 0}

DESIGN_DEFAULT_BS = (1, 2, 3)
MAX_PRINTED = 100        # `show` prints matrices of at most this many rows and columns
MIN_SEARCH_MAX_N = 7     # `design --min`: the exact search runs for n <= this (seconds to minutes each)


class OneLineErrorParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, ``jax-ec: error: --flag: ...`` (exit 2), like
    every other bad input of the command line."""

    def error(self, message: str):
        self.exit(2, f"jax-ec: error: {message.removeprefix('argument ')}\n")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected an integer") from None


def _real(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a number") from None


def add_codes_parser(sub: argparse._SubParsersAction) -> None:
    codes = sub.add_parser("codes", help="inspect, verify, design and analyse allocation codes")
    csub = codes.add_subparsers(dest="codes_command", required=True, parser_class=OneLineErrorParser)

    def code_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("code", help=f"one of {', '.join(CODE_NAMES)}, or a CSV/.npy file of a 0/1 matrix")
        p.add_argument("--n", type=_integer, default=None,
                       help="workers (default 5); a fixed code (paper_n5, a file) takes only its own n")
        p.add_argument("--b", type=_integer, default=None,
                       help="Byzantine workers: the b that verify checks, and the b that deterministic, "
                            "repetition and draco tolerate (default 1)")
        p.add_argument("--r", type=_real, default=None, help="bernoulli only: redundancy, p = r/n (default 2)")
        p.add_argument("--seed", type=_integer, default=None,
                       help="bernoulli only: seed of the draw, in [0, 2**32) (default 0)")
        p.add_argument("--allow-idle", action="store_true", help="deterministic only: allow idle workers")

    code_args(csub.add_parser("show", help="matrix, redundancy, loads, largest tolerated b"))
    v = csub.add_parser("verify", help="exact perfect b-tolerance with a counterexample")
    code_args(v)
    v.add_argument("--plot", default=None, help="PNG of the margin histogram over sign patterns")
    d = csub.add_parser("design", help="deterministic codes' redundancy vs the repetition code")
    d.add_argument("--n", type=_integer, nargs="+", default=[5, 7, 9, 11, 15, 21, 25], help="worker counts")
    d.add_argument("--b", type=_integer, nargs="+", default=None,
                   help="Byzantine counts, each < n/2 of some n (default: those of 1 2 3 that some n admits, else 0)")
    d.add_argument("--min", action="store_true",
                   help=f"also search the exact minimum redundancy (n <= {MIN_SEARCH_MAX_N} only)")
    d.add_argument("--plot", default=None, help="PNG: redundancy vs n")
    e = csub.add_parser("estimate", help="Bernoulli-code statistics (Monte Carlo, reproducible from --seed)")
    e.add_argument("what", metavar="quantity", choices=tuple(ESTIMATE_OPTIONS),
                   help="what to estimate: " + ", ".join(ESTIMATE_OPTIONS))
    e.add_argument("--n", type=_integer, nargs="+", default=None, help="worker counts, k = n (default 15)")
    e.add_argument("--p", type=_real, nargs="+", default=None,
                   help="failure/load: connection probabilities (default 2/15)")
    e.add_argument("--b", type=_integer, default=None, help="failure/smallest-p: Byzantine workers (default: --b-fraction of n)")
    e.add_argument("--b-fraction", type=_real, default=None,
                   help="failure/smallest-p: b = floor(fraction · n) when --b is absent (default 0.1)")
    e.add_argument("--attack", default=None,
                   help="failure/smallest-p: none, reverse, directional, random, random_per_partition, omniscient, "
                        "worst_case (default reverse)")
    e.add_argument("--sign-model", default=None,
                   help="failure/smallest-p: uniform, or correct:q (each sign correct w.p. q) (default uniform)")
    e.add_argument("--target", type=_real, default=None,
                   help="smallest-p: target failure probability, in (0, 1) (default 0.01)")
    e.add_argument("--eps", type=_real, nargs="+", default=None, help="load: deviations ε > 0 (default 0.02 .. 0.1)")
    e.add_argument("--draws", type=_integer, default=None, help="code draws per estimate (default 512)")
    e.add_argument("--patterns", type=_integer, default=None,
                   help="failure/smallest-p: sign patterns per draw (default 256)")
    e.add_argument("--seed", type=_integer, default=None, help="PRNG seed, in [0, 2**32) (default 0)")
    e.add_argument("--plot", default=None,
                   help="smallest-p/load: PNG (smallest p vs sqrt(log n / n); load deviation vs Hoeffding); "
                        "with several (n, p) pairs, load writes one file per pair (NAME_n<n>_p<p>.png)")


# ---------------------------------------------------------------------------------------------
# Argument checks (all before any work)
# ---------------------------------------------------------------------------------------------


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _given(args: argparse.Namespace, dests) -> list[str]:
    """The options among ``dests`` given on the command line (store_true flags: when set)."""
    return [d for d in dests if getattr(args, d, None) not in (None, False)]


def _refuse_unused(args: argparse.Namespace, reads, all_dests, what: str, readers: dict) -> None:
    for dest in _given(args, all_dests):
        if dest not in reads:
            users = [name for name, opts in readers.items() if dest in opts]
            raise ValueError(f"{_flag(dest)}: {what} does not use it (read by: {', '.join(users) or 'verify'}); "
                             "leave it out")


def _option(args: argparse.Namespace, dest: str, defaults: dict) -> tuple[object, str]:
    """The option's value and the name to report it under (``--b``, or ``--b (default 1)``)."""
    value = getattr(args, dest)
    if value is None:
        return defaults[dest], f"{_flag(dest)} (default {defaults[dest]})"
    return value, _flag(dest)


def _output(args: argparse.Namespace) -> Path | None:
    return None if args.plot is None else _checks.output_file("--plot", args.plot)


def _unknown_code(name: str) -> ValueError:
    return ValueError(f"code: unknown code {name!r}; allowed: {', '.join(CODE_NAMES)}, or the path of an existing "
                      "CSV/.npy file of a 0/1 matrix")


def _code(args: argparse.Namespace):
    """Check the code's arguments; return ``(build, n)``: a function building the matrix and its
    number of workers (None for a file, known once it is read)."""
    from .analysis.design import check_nb
    from .codes import check_redundancy

    name, command = args.code, args.codes_command
    extra = ("b",) if command == "verify" else ()
    all_dests = ("n", "b", "r", "seed", "allow_idle")
    what = f"`codes {command} {name}`"
    if name not in CODE_OPTIONS:
        if not Path(name).exists():
            raise _unknown_code(name)
        _refuse_unused(args, ("n", *extra), all_dests, f"{what} (a code file)", CODE_OPTIONS)
        from .codes import load_code
        return (lambda: _fixed(args, load_code(name), f"code file {name!r}")), None
    _refuse_unused(args, (*CODE_OPTIONS[name], *extra) + (("n",) if name == "paper_n5" else ()), all_dests, what,
                   CODE_OPTIONS)
    if name == "paper_n5":
        from .codes import paper_code_n5
        G = _fixed(args, paper_code_n5(), "paper_n5")
        return (lambda: G), 5
    n_value, n_name = _option(args, "n", CODE_DEFAULTS)
    n = _checks.integer(n_name, n_value, 1, hint=" (workers)")
    _checks.matrix_size(n_name, n, n)
    if name == "uncoded":
        from .codes import uncoded
        return (lambda: uncoded(n)), n
    if name == "bernoulli":
        from .codes import bernoulli
        r_value, r_name = _option(args, "r", CODE_DEFAULTS)
        r = check_redundancy(r_value, n, r_name)
        seed_value, seed_name = _option(args, "seed", CODE_DEFAULTS)
        seed = _checks.seed(seed_name, seed_value)
        return (lambda: bernoulli(seed, n, r)), n
    b_value, b_name = _option(args, "b", CODE_DEFAULTS)
    if name == "draco":
        from .codes import draco
        b = _checks.integer(b_name, b_value, 0, (n - 1) // 2, hint=f" (the DRACO layout needs 2b + 1 <= n = {n})")
        return (lambda: draco(n, b)), n
    n, b = check_nb(n, b_value, n_name, b_name)
    from .analysis.design import deterministic, repetition
    if name == "deterministic":
        return (lambda: deterministic(n, b, allow_idle=args.allow_idle)), n
    return (lambda: repetition(n, b)), n


def _fixed(args: argparse.Namespace, G: np.ndarray, what: str) -> np.ndarray:
    """A code of fixed size: an explicit ``--n`` must be its number of workers."""
    if args.n is not None and args.n != G.shape[0]:
        raise ValueError(f"--n: got {args.n}; {what} has n = {G.shape[0]} workers (leave --n out)")
    return G


def _verify_b(args: argparse.Namespace, n: int) -> int:
    value, name = _option(args, "b", CODE_DEFAULTS)
    return _checks.integer(name, value, 0, n - 1, hint=f" (Byzantine workers, fewer than the n = {n} workers)")


def _verifiable(G: np.ndarray) -> int | None:
    """The number of configurations exact verification of ``G`` evaluates, or None when it is
    more than :data:`jax_ec.analysis.verify.DEFAULT_MAX_CONFIGURATIONS`."""
    from .analysis.verify import DEFAULT_MAX_CONFIGURATIONS, configurations
    count = configurations(G)
    return count if count <= DEFAULT_MAX_CONFIGURATIONS else None


def _too_many(G: np.ndarray) -> str:
    from .analysis.verify import DEFAULT_MAX_CONFIGURATIONS, configurations
    groups = len(np.unique(G.T, axis=0))
    return (f"exact verification of this code ({groups} distinct columns) would evaluate "
            f"{float(configurations(G)):.3g} sign patterns up to symmetry, more than "
            f"2**{DEFAULT_MAX_CONFIGURATIONS.bit_length() - 1}")


# ---------------------------------------------------------------------------------------------
# The subcommands
# ---------------------------------------------------------------------------------------------


def _progress(items, desc: str):
    """``items`` with a progress bar on stderr when it is a terminal."""
    from tqdm import tqdm
    return tqdm(items, desc=desc, disable=None, leave=False, file=sys.stderr)


def _show(args: argparse.Namespace) -> None:
    from .analysis.verify import max_tolerance, tolerance_text
    from .codes import redundancy
    build, _ = _code(args)
    G = build()
    n, k = G.shape
    loads = G.sum(axis=1)
    if n <= MAX_PRINTED and k <= MAX_PRINTED:
        print("\n".join(" ".join(str(int(x)) for x in row) for row in G))
        load_text = f"loads {loads.tolist()}"
    else:
        print(f"(the {n} × {k} matrix is not printed: more than {MAX_PRINTED} rows or columns)")
        load_text = f"loads min {loads.min()}, mean {loads.mean():.4g}, max {loads.max()}"
    tolerance = (tolerance_text(max_tolerance(G)) if _verifiable(G) is not None
                 else f"not computed: {_too_many(G)}")
    print(f"\nn = {n}, k = {k}, redundancy r = {redundancy(G):.4g}, {load_text}, "
          f"largest perfectly tolerated: {tolerance}")


def _verify(args: argparse.Namespace) -> None:
    from .analysis import report
    build, n = _code(args)
    b = None if n is None else _verify_b(args, n)
    plot = _output(args)
    G = build()
    if b is None:
        b = _verify_b(args, G.shape[0])
    if _verifiable(G) is None:
        raise ValueError(f"code: {_too_many(G)}")
    print(report.verify_report(G, b))
    if plot is not None:
        report.plot_margin_histogram(plot, G, b)
        print(f"plot written to {plot}")


def _design(args: argparse.Namespace) -> None:
    from .analysis import report
    ns = [_checks.integer("--n", n, 1, hint=" (workers)") for n in args.n]
    if args.b is None:
        bs = [b for b in DESIGN_DEFAULT_BS if any(2 * b < n for n in ns)] or [0]
    else:
        bs = [_checks.integer("--b", b, 0, hint=" (Byzantine workers)") for b in args.b]
    for b in bs:
        if not any(2 * b < n for n in ns):
            raise ValueError(f"--b: got {b}; no --n admits it: a perfectly b-tolerant code needs b < n/2, "
                             f"and the largest --n is {max(ns)}")
    plot = _output(args)
    r_min = None
    if args.min:
        from .analysis.search import min_redundancy
        pairs = [(n, b) for n in ns for b in bs if 2 * b < n and n <= MIN_SEARCH_MAX_N]
        r_min = {(n, b): min_redundancy(n, b).redundancy for n, b in _progress(pairs, "exact r_min")}
    for line in report.design_rows(ns, bs, r_min=r_min):
        print(line, flush=True)
    if args.min and any(n > MIN_SEARCH_MAX_N for n in ns):
        print(f"r_min searched for n <= {MIN_SEARCH_MAX_N} only (the exact search grows as 2^n)")
    if plot is not None:
        report.plot_redundancy(plot, ns, tuple(bs), r_min=r_min)
        print(f"plot written to {plot}")


def _estimate_args(args: argparse.Namespace) -> dict:
    """Every estimate argument checked, defaults filled in."""
    from .analysis.bernoulli import _check_attack, _check_draw_size, _parse_sign_model, _resolve_b
    what = args.what
    reads = ESTIMATE_OPTIONS[what]
    _refuse_unused(args, reads, tuple(ESTIMATE_DEFAULTS) + ("b", "plot"), f"`codes estimate {what}`",
                   ESTIMATE_OPTIONS)
    if args.b is not None and args.b_fraction is not None:
        raise ValueError("--b: give either --b (a count) or --b-fraction (a fraction of n), not both")
    opt = {dest: _option(args, dest, ESTIMATE_DEFAULTS) for dest in ESTIMATE_DEFAULTS if dest in reads}
    out = {"what": what}
    value, name = opt["n"]
    out["ns"] = [_checks.integer(name, n, 2 if what == "smallest-p" else 1,
                                 hint=" (workers; sqrt(log n / n) is 0 at n = 1)" if what == "smallest-p"
                                 else " (workers)") for n in value]
    if "p" in opt:
        out["ps"] = [_checks.probability(opt["p"][1], p) for p in opt["p"][0]]
    if "b" in reads:
        fraction = None if args.b is not None else opt["b_fraction"][0]
        out["bs"] = [_resolve_b(n, args.b, fraction, names=("--b", opt["b_fraction"][1])) for n in out["ns"]]
        out["attack"] = _check_attack(opt["attack"][0], opt["attack"][1])
        _parse_sign_model(opt["sign_model"][0], opt["sign_model"][1])
        out["sign_model"] = opt["sign_model"][0]
    if "target" in opt:
        out["target"] = _checks.probability(opt["target"][1], opt["target"][0], open_ends=True)
    if "eps" in opt:
        out["eps"] = [_checks.number(opt["eps"][1], e, 0, low_open=True, hint=" (deviation ε)") for e in opt["eps"][0]]
    value, name = opt["draws"]
    out["draws"] = _checks.integer(name, value, 1 if what == "load" else 2, hint=" (code draws)")
    if "patterns" in opt:
        value, name = opt["patterns"]
        out["patterns"] = _checks.integer(name, value, 1, hint=" (sign patterns per draw)")
        for n in out["ns"]:
            _check_draw_size(n, n, out["patterns"], name="--n")
    else:
        for n in out["ns"]:
            _checks.matrix_size("--n", n, n)
    out["seed"] = _checks.seed(opt["seed"][1], opt["seed"][0])
    out["plot"] = _output(args)
    return out


def _estimate(args: argparse.Namespace) -> None:
    from .analysis import bernoulli as stats
    from .analysis import report
    a = _estimate_args(args)
    if a["what"] == "failure":
        rows = []
        settings = [(n, b, p) for n, b in zip(a["ns"], a["bs"]) for p in a["ps"]]
        for n, b, p in _progress(settings, "failure"):
            est = stats.failure_probability(a["seed"], n, p, b, attack=a["attack"], draws=a["draws"],
                                            patterns_per_draw=a["patterns"], sign_model=a["sign_model"])
            rows.append({"n": n, "p": p, "b": b, "attack": a["attack"], "estimate": est})
        print(report.estimate_table(rows))
    elif a["what"] == "smallest-p":
        ps = [stats.smallest_p(a["seed"], n, a["target"], b=b, attack=a["attack"], draws=a["draws"],
                               patterns_per_draw=a["patterns"], sign_model=a["sign_model"])
              for n, b in _progress(list(zip(a["ns"], a["bs"])), "smallest p")]
        print(report.smallest_p_table(a["ns"], ps))
        if a["plot"] is not None:
            report.plot_smallest_p(a["plot"], a["ns"], ps, title=f"target {a['target']}, attack {a['attack']}")
            print(f"plot written to {a['plot']}")
    else:
        settings = [(n, p) for n in a["ns"] for p in a["ps"]]
        for n, p in _progress(settings, "load"):
            ests = stats.load_deviation_curve(a["seed"], n, p, a["eps"], draws=a["draws"])
            print(report.load_deviation_table(n, p, a["eps"], ests), flush=True)
            if a["plot"] is not None:
                path = a["plot"]
                if len(settings) > 1:
                    path = path.with_name(f"{path.stem}_n{n}_p{p:g}{path.suffix}")
                report.plot_load_deviation(path, n, p, a["eps"], key=a["seed"], draws=a["draws"], estimates=ests)
                print(f"plot written to {path}", flush=True)


def run_codes(args: argparse.Namespace) -> int:
    """Run a ``codes`` subcommand; prints its table. Bad input raises ValueError (or
    FileNotFoundError) naming the flag, before any work."""
    {"show": _show, "verify": _verify, "design": _design, "estimate": _estimate}[args.codes_command](args)
    return 0
