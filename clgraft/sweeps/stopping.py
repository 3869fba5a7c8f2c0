"""Stopping a sweep on request: SIGTERM (a scheduler, `kill`, a machine shutting down) or SIGINT (Ctrl-C) raises
Stopped in the driver wherever it is, so that it ends its workers, says what finished and what is left, and exits
non-zero — instead of dying alone and leaving its workers training, or waiting for every queued cell."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from clgraft.errors import Stopped

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_deferred: list[int | None] = []
"""While a `deferred()` block runs: one entry, the signal that arrived in it (None until one does)."""


def _stop(signum: int, frame: object) -> None:
    """The handler: ignore further signals (the sweep is already winding down; a second Ctrl-C must not cut the
    ending of its workers short), then raise Stopped — or, inside a `deferred()` block, note it for the block's end."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if _deferred:
        _deferred[0] = signum
        return
    raise Stopped(signum)


@contextmanager
def deferred() -> Iterator[None]:
    """Around a call into native code that checks for signals itself and breaks when a handler raises inside it
    (Ray's `ray.wait` turns the exception into a SystemError): a signal is raised as Stopped when the call returns."""
    _deferred.append(None)
    try:
        yield
    finally:
        signum = _deferred.pop()
    if signum is not None:
        raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block SIGTERM and SIGINT raise Stopped; the previous handlers are back afterwards. Python delivers
    signals to the main thread only, so elsewhere (a sweep started from a thread of the Python API) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
