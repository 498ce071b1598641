"""Command line: ``jax-ec run [CONFIG] [--out DIR] [--trials T] [--set key=value ...] [--fresh]``.

A multi-process run (one process per host, :mod:`jax_ec.distributed`) adds ``--coordinator HOST:PORT
--num-processes N --process-id I`` to every process's command, or ``--distributed`` where the
cluster's scheduler tells JAX.

Exit codes: 0 success, 2 bad input (config, flags, files, a results folder in use or holding
another config's results, a checkpoint of another config), 3 a diverging run (NaN/Inf parameters
or metric; the last finite checkpoint is kept), 4 a multi-process run that lost a process or could
not start (134, ``SIGABRT``, where JAX's runtime ends the process itself; the same command on every
process resumes), 130 / 143 stopped by Ctrl-C / ``SIGTERM`` (the running group's progress saved;
the same command resumes).
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
    multi = run.add_argument_group(
        "multi-process runs", "one process per host, each started with the same command and its own --process-id; "
        "process 0 writes the results (resuming needs OUT on a filesystem every process reads)")
    multi.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                       help="process 0's address and a free port, the same for every process "
                            "(default: $JAX_COORDINATOR_ADDRESS)")
    multi.add_argument("--num-processes", metavar="N", default=None,
                       help="number of processes of the run (default: $JAX_NUM_PROCESSES)")
    multi.add_argument("--process-id", metavar="I", default=None,
                       help="this process's index, 0..N-1 (default: $JAX_PROCESS_ID)")
    multi.add_argument("--distributed", action="store_true",
                       help="join a multi-process run whose coordinator, size and process id JAX reads from the "
                            "cluster's scheduler where not given (SLURM, Open MPI, Cloud TPU, Kubernetes)")
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
            from .distributed import cluster_from_flags
            cluster = cluster_from_flags(args.coordinator, args.num_processes, args.process_id, args.distributed)
            cfg, _ = load_config(args.config, args.overrides, args.trials)
            if args.smoke:
                cfg = smoke_config(cfg)
        except (ConfigError, FileNotFoundError) as exc:
            print(f"jax-ec: error: {exc}", file=sys.stderr)
            return 2
        if cluster is None:
            return _run(args, cfg, argv)
        return _run_distributed(args, cfg, argv, cluster)
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


def _run(args: argparse.Namespace, cfg, argv: list[str] | None, process: int = 0) -> int:
    """``jax-ec run`` once the flags and the config are read (``process``: this process's index in a
    multi-process run; only process 0 shows progress and the summary)."""
    from .experiment import DivergenceError, run_experiment
    from .interrupt import Interrupted, exit_status
    from .runtime import use_host_cores
    use_host_cores()   # the CPU's cores as devices: runtime.mesh.trials auto spreads trials over them
    try:
        command = shlex.join(["jax-ec", *(sys.argv[1:] if argv is None else argv)])
        result = run_experiment(cfg, args.out, progress_bar=not args.no_progress and process == 0,
                                resume=args.resume, fresh=not args.resume, wait=args.wait, command=command)
    except DivergenceError as exc:
        print(f"jax-ec: error: {exc}", file=sys.stderr)
        return 3
    except Interrupted as stop:
        print(f"jax-ec: {stop.message}", file=sys.stderr)
        return exit_status(stop.signum)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"jax-ec: error: {exc}", file=sys.stderr)
        return 2
    if process == 0:
        print(result.table())
        print(f"\nresults written to {result.out_dir}/ (metrics.csv, summary.csv, curves.png, run.json)")
    else:
        print(f"jax-ec: process {process} done; process 0 wrote the results to {result.out_dir}/")
    return 0


def _run_distributed(args: argparse.Namespace, cfg, argv: list[str] | None, cluster) -> int:
    """:func:`_run` as one process of a multi-process run. A process that fails leaves at once
    (the others stop on losing it, :mod:`jax_ec.distributed`); a collective that fails because
    another process is gone ends this one with one line."""
    import jax
    from .distributed import DistributedError, LOST_PEER_EXIT, initialize, leave, report_lost_peer
    try:
        initialize(cluster)   # before use_host_cores() and anything else that touches JAX's backends
    except ConfigError as exc:
        print(f"jax-ec: error: {exc}", file=sys.stderr)
        return 2
    except DistributedError as exc:
        print(f"jax-ec: error: {exc}", file=sys.stderr)
        leave(LOST_PEER_EXIT)
    try:
        status = _run(args, cfg, argv, jax.process_index())
    except jax.errors.JaxRuntimeError as exc:
        report_lost_peer(exc)
    except KeyboardInterrupt:
        print("jax-ec: interrupted", file=sys.stderr)
        leave(130)
    except Exception:   # a bug: its traceback, then leave rather than wait for the others at JAX's shutdown
        import traceback
        traceback.print_exc()
        leave(1)
    if status != 0:
        leave(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
