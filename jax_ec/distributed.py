"""Joining a multi-process run (``jax.distributed``): one process per host, every one running the
same config, together one ``jax.devices()`` that ``runtime.mesh`` spans (:mod:`jax_ec.sharding`).

A process learns where the coordinator is (process 0, which hosts JAX's coordination service), how
many processes the run has and which one it is from :func:`cluster_from_flags`: the flags
``--coordinator HOST:PORT --num-processes N --process-id I`` (all three or none), the environment
variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` in their place,
or ``--distributed``: whatever is not given, JAX detects from the cluster's scheduler (SLURM, Open
MPI, Cloud TPU, Kubernetes; ``jax.distributed.initialize()`` without arguments). :func:`initialize`
joins the run; it must come before any JAX backend starts. On the CPU the processes exchange arrays
with gloo over TCP (``jax_cpu_collectives_implementation``).

Every process computes its devices' trials; the results are gathered to every process and process
0 alone writes the results folder and the checkpoints (:mod:`jax_ec.experiment`), so a resumed run
needs the results folder on a filesystem every process reads.

A process that dies ends the run: the others stop at their next exchange with it (a failed
collective: one line, :func:`report_lost_peer`, exit status :data:`LOST_PEER_EXIT`), or when JAX's
distributed runtime ends them itself (it loses the coordination service with process 0, or the
service misses a process's heartbeats for :data:`HEARTBEAT_TIMEOUT_S` seconds; exit status 134,
``SIGABRT``). The runtime's own log lines would then fill the terminal: in a multi-process run the
C++ side's standard error passes through a small helper process (:func:`_guard_stderr`) that
forwards it until the runtime reports a failure, then keeps it back and, if the process ends
without saying why, prints the same one line in its place. Python's own output is not affected.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import jax

from .config import ConfigError

__all__ = ["Cluster", "DistributedError", "cluster_from_flags", "initialize", "leave", "report_lost_peer",
           "ENV_COORDINATOR", "ENV_NUM_PROCESSES", "ENV_PROCESS_ID", "INIT_TIMEOUT_S", "HEARTBEAT_TIMEOUT_S",
           "LOST_PEER_EXIT"]

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"   # also read by jax.distributed.initialize itself
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"

INIT_TIMEOUT_S = 300
"""Seconds a process waits for every other process to join (JAX's default)."""
HEARTBEAT_TIMEOUT_S = 20
"""Seconds without a heartbeat (sent by a background thread of JAX's runtime, whatever the process
computes) after which the coordination service counts a process as dead and the others stop."""
LOST_PEER_EXIT = 4
"""Exit status of a process whose run lost another process (or could not reach the coordinator)."""

_FLAGS = ("--coordinator", "--num-processes", "--process-id")
_ENVS = (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)
_here = "this process"   # "process I of N" once joined


class DistributedError(RuntimeError):
    """The processes of a run could not start or go on together (one line for the user)."""


@dataclass(frozen=True)
class Cluster:
    """Where this process stands in a multi-process run. ``None`` fields (only with ``detect``)
    are left to JAX's cluster detection."""
    coordinator: str | None
    num_processes: int | None
    process_id: int | None
    detect: bool = False

    def describe(self) -> str:
        """``process I of N`` (``?`` for a value JAX is left to detect)."""
        return (f"process {'?' if self.process_id is None else self.process_id} of "
                f"{'?' if self.num_processes is None else self.num_processes}")


def _coordinator(text: str, name: str) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{name}: got {text!r}; expected HOST:PORT, the address of process 0 and a free port in "
                          "1..65535 that every process uses, e.g. host0:1234")
    return f"{host}:{int(port)}"


def _count(text: str, name: str, low: int, high: int | None, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value >= high):
        raise ConfigError(f"{name}: got {text!r}; expected {what}")
    return value


def cluster_from_flags(coordinator: str | None = None, num_processes: str | None = None,
                       process_id: str | None = None, detect: bool = False,
                       environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The multi-process run this process joins, from the command line's flags (strings, as typed)
    and, for a flag not given, its environment variable; ``None`` for a single-process run.

    Without ``detect`` (``--distributed``) the three values come together or not at all. Raises
    :class:`ConfigError` (one line naming the flag or variable, the value and what is allowed).
    """
    environ = os.environ if environ is None else environ
    given: list[tuple[str, str] | None] = []
    for flag, env, value in zip(_FLAGS, _ENVS, (coordinator, num_processes, process_id)):
        if value is not None:
            given.append((flag, value))
        elif environ.get(env, "").strip():
            given.append((env, environ[env]))
        else:
            given.append(None)
    if not detect and not any(given):
        return None
    if not detect and not all(given):
        have = ", ".join(f"{g[0]} {g[1]!r}" for g in given if g)
        missing = _FLAGS[[g is None for g in given].index(True)]
        raise ConfigError(f"{missing}: missing (given: {have}); --coordinator, --num-processes and --process-id "
                          f"go together (or {', '.join(_ENVS)}), or use --distributed where the cluster's scheduler "
                          "(SLURM, Open MPI, Cloud TPU) tells JAX")
    address = _coordinator(given[0][1], given[0][0]) if given[0] else None
    count = (_count(given[1][1], given[1][0], 1, None, "an integer >= 1, the number of processes of the run")
             if given[1] else None)
    index = None
    if given[2]:
        bound = f"an integer in [0, {count}) (the number of processes)" if count is not None else "an integer >= 0"
        index = _count(given[2][1], given[2][0], 0, count, bound)
    return Cluster(address, count, index, detect)


# The helper that stands between the C++ runtime's standard error and the terminal (see the module
# docstring). It forwards whole lines: only C++ and signal handlers write to the descriptor (Python's
# sys.stderr goes to the terminal directly). A line from JAX's distributed runtime (coordination
# service, client, preemption manager, gloo) at warning level or above means the run is failing:
# from the first, everything else is kept back. Control lines from this process start with NUL.
_GUARD = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
LOG = re.compile(rb"^[WEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ ([\w.]+):\d+\] ")
RUNTIME = (b"coordination", b"preemption", b"client", b"distributed", b"gloo", b"pjrt")
here, failing, fatal, reported, rest = sys.argv[1], False, None, False, b""
def emit(data):
    os.write(1, data)
while True:
    chunk = os.read(0, 1 << 16)
    if not chunk:
        break
    *lines, rest = (rest + chunk).split(b"\n")
    for line in lines:
        if line.startswith(b"\0jax-ec:"):
            key, _, value = line[8:].partition(b"=")
            here = value.decode() if key == b"here" else here
            reported = reported or key == b"reported"
            continue
        m = LOG.match(line)
        if m and (line[:1] == b"F" or any(k in m.group(1).lower() for k in RUNTIME)):
            failing = True
        if fatal is None and (b"Terminating process because" in line or line.startswith(b"terminate called")):
            fatal = line.split(b"absl::Status: ", 1)[-1][:300].decode(errors="replace").strip().rstrip(":")
        if not failing:
            emit(line + b"\n")
if rest and not failing:
    emit(rest)
if fatal is not None and not reported:
    emit(("jax-ec: error: %s: another process of the run stopped or cannot be reached (JAX's distributed runtime "
          "ended this one: %s); see its output; rerun every process with the same command to resume from the last "
          "checkpoint\n" % (here, fatal)).encode())
"""
_guarded = False


def _guard_stderr(here: str) -> None:
    """Route file descriptor 2 (the C++ runtime's standard error) through the helper ``_GUARD``;
    ``sys.stderr`` keeps writing to the terminal directly. Once per process; where the helper
    cannot start, standard error stays as it is."""
    global _guarded
    if _guarded:
        return
    import subprocess
    sys.stderr.flush()
    terminal = os.dup(2)
    read, write = os.pipe()
    try:
        subprocess.Popen([sys.executable, "-S", "-c", _GUARD, here], stdin=read, stdout=terminal,
                         stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    except OSError:
        os.close(terminal)
        return
    finally:
        os.close(read)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                           errors="backslashreplace")
    os.dup2(write, 2)
    os.close(write)
    _guarded = True


def _tell_guard(key: str, value: str = "") -> None:
    if _guarded:
        try:
            os.write(2, f"\0jax-ec:{key}={value}\n".encode())
        except OSError:
            pass


def initialize(cluster: Cluster) -> None:
    """Join the multi-process run (``jax.distributed.initialize``), gloo collectives on the CPU.

    Call before any JAX backend starts (before :func:`jax_ec.runtime.use_host_cores`, which only
    sets the CPU's device count). Raises :class:`ConfigError` when ``--distributed`` finds no
    cluster to read the missing values from, :class:`DistributedError` when the processes do not
    all join within :data:`INIT_TIMEOUT_S` seconds.
    """
    try:
        if jax.config.jax_cpu_collectives_implementation is None:   # no cross-process CPU collectives by default
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:   # a jax without the option
        pass
    _guard_stderr(cluster.describe())
    try:
        jax.distributed.initialize(coordinator_address=cluster.coordinator, num_processes=cluster.num_processes,
                                   process_id=cluster.process_id, initialization_timeout=INIT_TIMEOUT_S,
                                   heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
    except (ValueError, TypeError) as exc:
        if cluster.detect:
            raise ConfigError(f"--distributed: JAX found no cluster to read the coordinator, the number of processes "
                              f"and this process's id from (SLURM, Open MPI, Cloud TPU, Kubernetes) ({_first_line(exc)}); "
                              "give --coordinator, --num-processes and --process-id") from None
        raise
    except jax.errors.JaxRuntimeError as exc:
        raise DistributedError(f"{cluster.describe()} could not join the run at "
                               f"{cluster.coordinator or 'the detected coordinator'} ({_first_line(exc)}); start "
                               f"every process of the run within {INIT_TIMEOUT_S} s of each other, with the same "
                               "--coordinator and --num-processes") from None
    global _here
    _here = cluster.describe()
    try:   # the values JAX settled on, detected or given (jax.process_index() would start the backends)
        from jax._src.distributed import global_state
        _here = f"process {global_state.process_id} of {global_state.num_processes}"
    except (ImportError, AttributeError):
        pass
    _tell_guard("here", _here)


def _first_line(exc: Any, limit: int = 300) -> str:
    text = " ".join(str(exc).split("\n")[:1]).strip() or type(exc).__name__
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def leave(status: int) -> NoReturn:
    """End this process of a multi-process run now with ``status`` (its message printed), flushing
    its output but without waiting at JAX's shutdown barrier for processes that may never arrive
    (the others see it leave and stop in turn)."""
    _tell_guard("reported")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def report_lost_peer(detail: Any) -> NoReturn:
    """One line on stderr: the run lost another process (``detail``: what was seen, e.g. the failed
    collective's error); then :func:`leave` with :data:`LOST_PEER_EXIT`."""
    _tell_guard("reported")
    print(f"jax-ec: error: {_here}: another process of the run stopped or cannot be reached ({_first_line(detail)}); "
          "see its output; rerun every process with the same command to resume from the last checkpoint",
          file=sys.stderr, flush=True)
    leave(LOST_PEER_EXIT)
