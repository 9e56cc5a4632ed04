"""A three-stage pipeline for the bounded runner (:mod:`ratesim.fast.bounded`): the next step's
inputs are made on one background thread while the caller decides the current step, and the
released rows of earlier steps are folded on another, each stage in its own order.

Results do not depend on thread timing: each stage runs its work strictly in order on one
thread (the inputs' random streams are read by the generating thread only, every fold by the
folding thread only, in submission order), and a job is handed copies of the rows it reads,
never the tables the loop goes on writing. Memory stays bounded: one step is made ahead, and
at most :data:`MAX_PENDING` fold jobs wait or run; the caller blocks beyond that.

An exception on either thread is raised again in the caller, the original exception object
(``Future.result``), at the latest by :meth:`Pipeline.drain`. With ``threads=False`` every
stage runs inline in the caller, in the same order: the sequential reference.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")

#: Fold jobs queued or running at once (each holds a copy of one step's released rows).
MAX_PENDING = 2

_END = object()


class Pipeline:
    """The generating and folding threads of one bounded run (a context manager).

    ``threads``: run the stages on background threads (else inline, in the caller)."""

    def __init__(self, threads: bool) -> None:
        self.threads = threads
        self._gen: ThreadPoolExecutor | None = None
        self._fold: ThreadPoolExecutor | None = None
        self._jobs: deque[Future[None]] = deque()
        if threads:
            self._gen = ThreadPoolExecutor(1, thread_name_prefix="ratesim-gen")
            self._fold = ThreadPoolExecutor(1, thread_name_prefix="ratesim-fold")

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # on an error, queued folds are dropped (their results would be discarded anyway)
        for pool in (self._gen, self._fold):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=exc is not None)

    def ahead(self, items: Iterable[T]) -> Iterator[T]:
        """``items`` in order, the next one made on the generating thread while the caller
        works on the current one."""
        it = iter(items)
        if self._gen is None:
            yield from it
            return
        fut = self._gen.submit(next, it, _END)
        held: list[T] = []  # this frame keeps no reference to an item it has handed out
        while True:
            item = fut.result()
            if item is _END:
                return
            fut = self._gen.submit(next, it, _END)
            held.append(item)  # type: ignore[arg-type]
            del item
            yield held.pop()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` after every job submitted before it (on the folding thread; inline
        without threads), waiting first while :data:`MAX_PENDING` jobs are in flight."""
        if self._fold is None:
            job()
            return
        self._jobs.append(self._fold.submit(job))
        while len(self._jobs) > MAX_PENDING or (self._jobs and self._jobs[0].done()):
            self._jobs.popleft().result()

    def drain(self) -> None:
        """Wait for every submitted job (raising the first error)."""
        while self._jobs:
            self._jobs.popleft().result()


__all__ = ["MAX_PENDING", "Pipeline"]
