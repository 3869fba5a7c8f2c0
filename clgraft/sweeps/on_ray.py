"""Cells as Ray tasks, each reserving as many CPUs as it runs torch threads; outcomes come back to the driver.

Ray runs a task again when its worker process or node dies (`max_retries`); a cell that died more often than that is
reported failed. Stopping the sweep cancels its tasks, killing their workers, and shuts down a Ray instance the sweep
started itself.
"""

from __future__ import annotations

from collections.abc import Iterator

from clgraft.config import RunConfig
from clgraft.errors import ClgraftError
from clgraft.sweeps.cells import RETRIES, CellArgs, Outcome, attempt
from clgraft.sweeps.stopping import deferred

_POLL_S = 1.0
"""How long the driver waits on Ray at a time: a signal is acted on when a wait returns."""


def start_ray(address: str | None, cores: int) -> bool:
    """Connect to the Ray cluster at `address`, or start a local instance on this machine's cores; True when this
    call started it (then the sweep shuts it down at its end). Ray installs its own SIGTERM handler here, so the
    sweep's are installed after this call."""
    try:
        import ray
    except ImportError as e:
        raise ClgraftError("--backend ray needs Ray: pip install 'clgraft[ray]'") from e
    if ray.is_initialized():
        return False
    ray.init(address=address, num_cpus=None if address else cores, include_dashboard=False, log_to_driver=False)
    return True


def run_on_ray(todo: list[RunConfig], args: CellArgs, started: bool, retries: int = RETRIES) -> Iterator[Outcome]:
    """Each cell's Outcome as its task ends. Closing the iterator cancels the tasks not finished (force: their
    workers are killed) and shuts down a local instance this sweep `started`."""
    import ray

    remote = ray.remote(num_cpus=args[-1], max_retries=retries)(attempt)
    pending: dict = {}
    try:
        with deferred():
            for config in todo:
                pending[remote.remote(config.model_dump(), args)] = config
        while pending:
            with deferred():
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_S)
            for ref in ready:
                config = pending.pop(ref)
                try:
                    with deferred():
                        outcome = ray.get(ref)
                except ray.exceptions.WorkerCrashedError:
                    outcome = Outcome(config, failure=f"its Ray worker died, {retries + 1} times")
                except ray.exceptions.RayError as e:
                    why = (str(e).strip().splitlines() or [""])[0]
                    outcome = Outcome(config, failure=f"Ray: {type(e).__name__}: {why}")
                yield outcome
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
