"""Where a sweep's runs execute: in this process, in a local process pool, or on Dask.

Every runner executes the same :func:`run_task` on the same :class:`Task` objects and hands the
rows back to the sweep, which orders them by task index: the table does not depend on the
runner, the number of workers or the order in which runs finish.

* ``"serial"`` - one after the other in this process (for debugging, and for metric callables
  that cannot be pickled);
* ``"local"`` - a pool of ``workers`` processes (default: the CPUs this process may use),
  started by a fork server (``spawn`` where there is none), never by forking this process
  (which may hold numba, threads or a Dask client);
  with one worker (or one run) the runs execute in this process, like ``"serial"``.
  Each worker loads the compiled code once, on start, by running a very short copy of the
  sweep's scenario (numba's on-disk cache makes that a load, not a compile, after the first
  time on a machine). Scripts that use it must guard their entry point with
  ``if __name__ == "__main__":``, as for any ``multiprocessing`` code;
* Dask - ``"dask://host:port"`` (a scheduler address) or a ``distributed.Client``: the runs are
  submitted to the cluster's workers, which must have ratesim installed. Needs the optional
  ``dask`` extra (``pip install 'ratesim[dask]'``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import numpy as np

from ..engine import simulate
from ..scenario import Scenario
from .metrics import MetricFn, standard_metrics

__all__ = ["DaskRunner", "LocalRunner", "RunFailed", "SerialRunner", "Task", "make_runner"]

#: Simulated seconds of the warm-up run each worker does on start.
WARM_UP_S = 0.05


@dataclass(frozen=True)
class Task:
    """One run: a (point, replication) of a sweep. ``index`` is its row in the sweep's table."""

    index: int
    scenario: Scenario
    seed: int
    engine: str
    metrics: tuple[MetricFn, ...] = ()


class RunFailed(RuntimeError):
    """A run raised; ``index`` is its task's row, ``__cause__`` the original exception."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(f"run {index} failed: {type(error).__name__}: {error}")
        self.index = index
        self.error = error


OnDone = Callable[[int, dict[str, Any]], None]


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"a metric value must be a number, string or boolean, got {value!r}")


def _extra_metrics(result: Any, metrics: Sequence[MetricFn], taken: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fn in metrics:
        values = fn(result)
        name = getattr(fn, "__qualname__", type(fn).__qualname__)
        if not isinstance(values, Mapping):
            raise TypeError(f"metric {name} returned {type(values).__name__}, not a dict")
        for key, value in values.items():
            if not isinstance(key, str) or key in taken or key in out:
                raise ValueError(f"metric {name}: column {key!r} is not a new column name")
            out[key] = _scalar(value)
    return out


def run_task(task: Task) -> dict[str, Any]:
    """Run one task: ``simulate`` then the metrics. Returns the row's outcome columns.

    ``engine`` is the engine that ran it; ``wall_s`` the seconds spent on the run (the
    simulation, its oracle and the metrics).
    """
    started = time.perf_counter()
    result = simulate(task.scenario, seed=task.seed, engine=task.engine)
    row = standard_metrics(result)
    extra = _extra_metrics(result, task.metrics, set(row) | {"wall_s", "engine"})
    row["wall_s"] = time.perf_counter() - started
    row.update(extra)
    row["engine"] = result.engine
    return row


def warm_up(scenario: Scenario | None, engine: str) -> None:
    """Load (or compile, the first time on a machine) the code the runs will call.

    A failure here is not reported: the real runs report it, with the point that failed.
    """
    if scenario is None:
        return
    short = scenario.model_copy(update={"duration_s": min(scenario.duration_s, WARM_UP_S)})
    try:
        result = simulate(short, seed=0, engine=engine)
        standard_metrics(result)
    except Exception:  # noqa: BLE001 - see the docstring: the runs report real errors
        return


class SerialRunner:
    """Runs the tasks one after the other in this process."""

    name = "serial"

    def run(self, tasks: Sequence[Task], warm: Scenario | None, on_done: OnDone) -> None:
        """Run ``tasks`` in order, calling ``on_done(index, row)`` after each."""
        del warm  # this process compiles on first use anyway
        for task in tasks:
            try:
                row = run_task(task)
            except Exception as exc:
                raise RunFailed(task.index, exc) from exc
            on_done(task.index, row)


def default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: Imported once by the fork server, so that each worker starts with them loaded.
PRELOAD = ["ratesim.experiments.runners", "ratesim.fast"]


def _mp_context() -> Any:
    """``forkserver`` where there is one (POSIX), else ``spawn``.

    Both start workers from a clean process, never by forking this one (which may hold numba,
    threads or a Dask client). The fork server imports ratesim once and is kept for the life of
    this process, so a worker, or a second sweep's pool, starts in a fraction of a second
    instead of re-importing everything.
    """
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return get_context("spawn")
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class LocalRunner:
    """Runs the tasks in a pool of ``workers`` local processes (see the module docstring)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")
        self.workers = workers or default_workers()

    def run(self, tasks: Sequence[Task], warm: Scenario | None, on_done: OnDone) -> None:
        """Run ``tasks`` in the pool, calling ``on_done(index, row)`` as each finishes."""
        if not tasks:
            return
        if min(self.workers, len(tasks)) == 1:
            # one worker: a process of its own would only add its start-up time
            SerialRunner().run(tasks, warm, on_done)
            return
        engine = tasks[0].engine
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)),
            mp_context=_mp_context(),
            initializer=warm_up,
            initargs=(warm, engine),
        )
        try:
            pending: dict[Future[dict[str, Any]], int] = {
                pool.submit(run_task, t): t.index for t in tasks
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    index = pending.pop(fut)
                    exc = fut.exception()
                    if exc is not None:
                        raise RunFailed(index, exc) from exc
                    on_done(index, fut.result())
        finally:
            # an error or an interrupt: drop the runs not started; finished ones are delivered
            pool.shutdown(wait=True, cancel_futures=True)


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "the Dask runner needs dask.distributed, which is not installed; "
            "install it with: pip install 'ratesim[dask]'"
        ) from None
    return distributed


class DaskRunner:
    """Runs the tasks on a Dask cluster: a scheduler address or a ``distributed.Client``."""

    name = "dask"

    def __init__(self, target: Any) -> None:
        self._distributed = _import_distributed()
        if isinstance(target, str):
            address = target.removeprefix("dask://")
            self.address: str | None = address if "://" in address else f"tcp://{address}"
            self.client: Any = None
        elif isinstance(target, self._distributed.Client):
            self.address, self.client = None, target
        else:
            raise ValueError(f"not a Dask scheduler address or Client: {target!r}")

    def run(self, tasks: Sequence[Task], warm: Scenario | None, on_done: OnDone) -> None:
        """Submit ``tasks`` to the cluster, calling ``on_done(index, row)`` as each finishes."""
        if not tasks:
            return
        dist = self._distributed
        client = self.client or dist.Client(self.address)
        try:
            client.run(warm_up, warm, tasks[0].engine)
            # pure=False: two runs with equal arguments are still two runs (each is timed)
            futures = {client.submit(run_task, t, pure=False): t for t in tasks}
            try:
                for fut in dist.as_completed(futures):
                    task = futures[fut]
                    if fut.status == "error":
                        exc = fut.exception()
                        raise RunFailed(task.index, exc) from exc
                    on_done(task.index, fut.result())
            finally:
                client.cancel(list(futures))
        finally:
            if self.client is None:
                client.close()


Runner = SerialRunner | LocalRunner | DaskRunner


def make_runner(runner: Any, workers: int | None) -> Runner:
    """The runner ``runner`` names: ``"local"``, ``"serial"``, ``"dask://host:port"`` or a
    ``distributed.Client``. Raises ``ValueError`` for anything else, ``ImportError`` (saying
    what to install) for Dask without dask.distributed."""
    if runner == "serial":
        if workers not in (None, 1):
            raise ValueError(
                f"workers={workers!r} needs runner='local'; 'serial' runs one at a time"
            )
        return SerialRunner()
    if runner == "local":
        return LocalRunner(workers)
    is_dask_text = isinstance(runner, str) and runner.startswith(("dask://", "tcp://", "tls://"))
    if is_dask_text or (not isinstance(runner, str) and hasattr(runner, "submit")):
        if workers is not None:
            raise ValueError(
                "workers= applies to runner='local'; a Dask cluster has its own workers"
            )
        return DaskRunner(runner)
    raise ValueError(
        f"runner must be 'local', 'serial', 'dask://host:port' or a distributed.Client, "
        f"got {runner!r}"
    )
