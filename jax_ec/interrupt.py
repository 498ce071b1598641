"""Stop requests (Ctrl-C, ``SIGTERM``) turned into a stop at the next safe point.

A run checks :func:`requested` at its safe points: between two compiled calls of the training loop
(every call ends on a step boundary, with a consistent state), before compiling a group and between
groups. When a stop was requested it saves the running group's state (:mod:`jax_ec.checkpoint`), so
that no more than the steps of the call in flight are lost, and raises :class:`Interrupted`.

:func:`stop_requests` installs the handlers for the duration of a run (main thread only; the
previous handlers are restored afterwards). The first ``SIGINT`` or ``SIGTERM`` only records the
request, so that the process never unwinds in the middle of a compilation or a device call; a
second one ends the process at once (``os._exit``, exit status ``128 + signal``), losing what was
computed since the last checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

__all__ = ["Interrupted", "stop_requests", "requested", "check", "exit_status"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: int | None = None


class Interrupted(KeyboardInterrupt):
    """A run stopped at a safe point on request.

    ``signum``: the signal; ``message``: one line for the user (what finished, what was saved and
    how to resume).
    """

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum, self.message = signum, message


def exit_status(signum: int) -> int:
    """The shell's status for a process stopped by ``signum``: ``128 + signum`` (130 for Ctrl-C)."""
    return 128 + int(signum)


def requested() -> int | None:
    """The signal of a pending stop request, or ``None``."""
    return _requested


def check(message: str) -> None:
    """Raise :class:`Interrupted` with ``message`` when a stop was requested."""
    if _requested is not None:
        raise Interrupted(_requested, message)


def _handler(signum: int, frame) -> None:
    global _requested
    name = signal.Signals(signum).name
    if _requested is not None:
        # A second request: stop now, without unwinding through a compilation or a device call.
        os.write(2, f"\njax-ec: {name} again: stopped at once; the work since the last checkpoint is lost\n".encode())
        os._exit(exit_status(signum))
    _requested = signum
    os.write(2, f"\njax-ec: {name}: stopping at the next safe point and saving progress "
                f"(send it again to stop at once)\n".encode())


@contextlib.contextmanager
def stop_requests() -> Iterator[None]:
    """Within the block, ``SIGINT``/``SIGTERM`` request a stop (:func:`requested`) instead of
    raising; outside the main thread it changes nothing."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    _requested = None
    for s in _SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        _requested = None
        sys.stderr.flush()
