"""Command line: ``jax-ec run [CONFIG] [--out DIR] [--trials T] [--set key=value ...] [--fresh]``.

Exit codes: 0 success, 2 bad input (config, flags, files, a results folder in use or holding
another config's results, a checkpoint of another config), 3 a diverging run (NaN/Inf parameters
or metric; the last finite checkpoint is kept), 130 / 143 stopped by Ctrl-C / ``SIGTERM`` (the
running group's progress saved; the same command resumes).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from .cli_codes import OneLineErrorParser, _integer, add_codes_parser, run_codes
from .config import ConfigError, load_config, smoke_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="jax-ec", description="Election-coded SignSGD simulator (JAX).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    run = sub.add_parser("run", help="run an experiment config (default: the paper's Amazon setting)")
    run.add_argument("config", nargs="?", default=None, help="YAML config (default: the packaged Amazon job)")
    run.add_argument("--out", default=None, help="results folder (default: the config's out_dir)")
    run.add_argument("--trials", type=_integer, default=None, help="trials per scheme (overrides the config)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set optim.lr=1e-4 --set schemes.2.r=3")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--smoke", action="store_true",
                     help="run the config's smoke form: 2 trials, 2 steps, tiny models (checks it end to end)")
    restart = run.add_mutually_exclusive_group()
    restart.add_argument("--resume", dest="resume", action="store_true", default=True,
                         help="(default) continue an interrupted run of the same config from OUT/checkpoints/; "
                              "refuses checkpoints of another config")
    restart.add_argument("--fresh", dest="resume", action="store_false",
                         help="start from step 0: delete the checkpoints in OUT/.jax_ec/ and, once this run "
                              "finishes, replace the results OUT holds, even of another config")
    run.add_argument("--wait", action="store_true",
                     help="if another run is using OUT, wait for it to finish instead of stopping")
    add_codes_parser(sub)
    rep = sub.add_parser("report", help="markdown table and plots from one or more result folders")
    rep.add_argument("folders", nargs="+", help="result folders written by `jax-ec run`")
    rep.add_argument("--out", default="report/report.md", help="markdown file (plots go beside it)")
    rep.add_argument("--target", type=float, default=None, help="metric target (default: each run's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:   # Ctrl-C outside a run's safe points (start-up, codes, report): nothing to save
        print("jax-ec: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        try:
            if args.trials is not None and args.trials < 1:
                raise ConfigError(f"--trials: got {args.trials}; expected an integer >= 1")
            cfg, _ = load_config(args.config, args.overrides, args.trials)
            if args.smoke:
                cfg = smoke_config(cfg)
            from .experiment import DivergenceError, run_experiment
            from .interrupt import Interrupted, exit_status
            from .runtime import use_host_cores
            use_host_cores()   # the CPU's cores as devices: runtime.mesh.trials auto spreads trials over them
            try:
                command = shlex.join(["jax-ec", *(sys.argv[1:] if argv is None else argv)])
                result = run_experiment(cfg, args.out, progress_bar=not args.no_progress, resume=args.resume,
                                        fresh=not args.resume, wait=args.wait, command=command)
            except DivergenceError as exc:
                print(f"jax-ec: error: {exc}", file=sys.stderr)
                return 3
            except Interrupted as stop:
                print(f"jax-ec: {stop.message}", file=sys.stderr)
                return exit_status(stop.signum)
        except (ConfigError, FileNotFoundError) as exc:
            print(f"jax-ec: error: {exc}", file=sys.stderr)
            return 2
        print(result.table())
        print(f"\nresults written to {result.out_dir}/ (metrics.csv, summary.csv, curves.png, run.json)")
    elif args.command == "codes":
        try:
            return run_codes(args)
        except (ValueError, FileNotFoundError) as exc:
            print(f"jax-ec: error: {exc}", file=sys.stderr)
            return 2
    elif args.command == "report":
        from .report import write_report
        try:
            out = write_report(args.folders, args.out, args.target)
        except (FileNotFoundError, ValueError) as exc:
            print(f"jax-ec: error: {exc}", file=sys.stderr)
            return 2
        print(out.read_text())
        print(f"report written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
