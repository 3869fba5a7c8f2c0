"""Cells in worker processes on this machine: one spawned process per attempt at a cell, at most `workers` at once.

A process per attempt, rather than a pool that reuses its workers, tells which cell a dead worker was running, so
that only that cell is run again (a ProcessPoolExecutor fails every queued cell when one worker dies), and the driver
holds every worker it started, so that it can end them all when it is stopped. It costs one interpreter start per
cell: seconds, against a cell's minutes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from tqdm.auto import tqdm

from clgraft.config import RunConfig
from clgraft.sweeps.cells import RETRIES, CellArgs, Outcome, attempt, describe

_PR_SET_PDEATHSIG = 1
_GRACE_S = 10.0
"""How long a worker asked to stop (SIGTERM) has before it is killed (SIGKILL)."""


def _die_with(parent: int) -> None:
    """Have Linux send this worker SIGTERM when the driver dies, even of SIGKILL (prctl PR_SET_PDEATHSIG), so that no
    worker trains on for nobody; exit at once if the driver is gone already. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _exit(signum: int, frame: object) -> None:
    """SIGTERM in a worker: unwind, so that what the cell holds is let go on the way out (its temp files removed,
    its run folder's lock released)."""
    raise SystemExit(128 + signum)


def _worker(conn: Connection, config: dict, args: CellArgs, parent: int) -> None:
    """A worker process: one attempt at one cell, its Outcome sent to the driver. SIGINT is ignored: Ctrl-C reaches
    the whole process group, and the driver, not each worker, decides what stops (it ends its workers itself). Once
    SIGTERM has unwound the cell, the worker leaves without the interpreter's teardown (seconds of garbage collection
    with torch loaded); its progress bars get a thread lock, as a multiprocessing one would outlive it as a
    "leaked semaphore"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit)
    _die_with(parent)
    tqdm.set_lock(threading.RLock())
    try:
        conn.send(attempt(config, args))
    except SystemExit as e:
        os._exit(e.code)


def _death(process: BaseProcess) -> str:
    """Why a worker ended without an outcome, in words: the signal that killed it, or its exit code."""
    code = process.exitcode
    if code is not None and code < 0:
        return f"its worker was killed by {signal.Signals(-code).name}"
    return f"its worker exited with code {code} before finishing"


def _end(processes: list[BaseProcess]) -> None:
    """Stop the workers still running: SIGTERM, a grace period, then SIGKILL; wait for each, so none outlives the
    driver. A killed cell leaves only what its atomic writes finished; a rerun resumes from there."""
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(_GRACE_S)
        if p.is_alive():
            p.kill()
            p.join()


def run_local(
    todo: list[RunConfig], args: CellArgs, workers: int, echo: Callable[[str], None], retries: int = RETRIES
) -> Iterator[Outcome]:
    """Each cell's Outcome as it ends. A cell whose worker dies is queued again, up to `retries` more times, then
    reported failed with the reason; the other cells go on. Closing the iterator (a signal, the sweep stopping on a
    full disk) ends every worker before it returns."""
    context = get_context("spawn")
    queue = deque((config, 0) for config in todo)
    running: dict[Connection, tuple[BaseProcess, RunConfig, int]] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                config, tries = queue.popleft()
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(target=_worker, args=(writer, config.model_dump(), args, os.getpid()))
                process.start()
                writer.close()  # the worker holds the only writer: its death reads as end of file
                running[reader] = (process, config, tries)
            for reader in wait(list(running)):
                process, config, tries = running.pop(reader)
                outcome = _receive(reader, process)
                if outcome is not None:
                    yield outcome
                elif tries < retries:
                    echo(f"cell {describe(config)}: {_death(process)}; running it again ({tries + 2} of {retries + 1})")
                    queue.append((config, tries + 1))
                else:
                    yield Outcome(config, failure=f"{_death(process)}, {retries + 1} times")
    finally:
        _end([process for process, _, _ in running.values()])


def _receive(reader: Connection, process: BaseProcess) -> Outcome | None:
    """The Outcome a worker sent, once it has exited; None when it died before sending one."""
    try:
        outcome = reader.recv()
    except EOFError:
        outcome = None
    reader.close()
    process.join(_GRACE_S)
    _end([process])
    return outcome
