"""Concurrency limit with a bounded wait queue (Sentinel thread grade, plus the seed's queue).

The seed's second layer is "50 in flight, queue wait <= 200 ms" (DIGEST.md row 6). With
``max_wait_s=0`` this is exactly Sentinel's thread-grade ``DefaultController``: a request passes
iff ``in_flight + 1 <= max_in_flight`` (semantics.md §4.2). With ``max_wait_s > 0`` a request that
finds every slot busy waits (up to ``max_wait_s``) for a slot instead of being rejected.

The state machine counts; the caller (the simulation) keeps the waiters. Division of labour:

* ``acquire`` returns :data:`ADMIT` (a slot is taken now), :data:`QUEUE` (the caller must park
  the request in its FIFO and schedule a timeout at ``now_us + max_wait_us``) or :data:`REJECT`.
* ``complete`` frees the slot of a finished request. If someone is queued it returns
  :data:`HANDOFF`: the slot passes straight to the oldest waiter (the caller wakes it; it is
  admitted at that instant), so ``in_flight`` does not change. Otherwise it returns
  :data:`RELEASE`.
* ``cancel_wait`` removes one waiter whose timeout fired (or whose client gave up): it returns
  :data:`CANCELLED`. Which waiter is the caller's business (FIFO order lives in the caller).

If a handoff and a timeout fall on the same instant, whichever the caller processes first wins;
the machine stays consistent either way (process completions first to honour "wait <=
max_wait" inclusively).

Kernel parameters ``p = (max_in_flight, max_wait_us, max_queue)`` with ``max_queue = -1`` for
"no bound on the number of waiters" (they are still bounded in time by ``max_wait_us``).

State (a list or an int64 array of :data:`STATE_SIZE` ints, indices are module constants)::

    IN_FLIGHT  requests holding a slot now
    QUEUED     requests waiting for a slot now
    ADMITTED   total admissions (ADMIT + HANDOFF), ever
    COMPLETED  total completions, ever
    REJECTED   total rejections, ever
    CANCELLED_WAITS  total waiters removed by cancel_wait, ever

Invariants (tested): ``0 <= in_flight <= max_in_flight``; ``0 <= queued <= max_queue`` (and
``queued == 0`` when ``max_wait_us == 0``); ``queued > 0`` implies ``in_flight ==
max_in_flight`` (a free slot is never left idle while someone waits, which also keeps arrivals
from overtaking waiters); conservation ``admitted == completed + in_flight``.

Time: the machine is time-free (``now_us`` is accepted so every kernel has the same shape and
for future use); waiting deadlines are the caller's. So a clock going backwards changes nothing.
Misuse (``complete`` with nothing in flight, ``cancel_wait`` with nobody queued) leaves the state
untouched: the kernels return :data:`INVALID`, the methods raise ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import MAX_EXACT_INT, State, check_now, require_int, seconds_to_us

#: acquire: the request was refused (all slots busy and no room, or no waiting allowed).
REJECT = 0
#: acquire: the request holds a slot from now on.
ADMIT = 1
#: acquire: the request must wait for a slot, at most ``max_wait_us``.
QUEUE = 2
#: complete: the freed slot went to the oldest waiter, who is admitted now.
HANDOFF = 3
#: complete: the slot is free (nobody was waiting).
RELEASE = 4
#: cancel_wait: one waiter left the queue.
CANCELLED = 5
#: complete / cancel_wait called when there was nothing to release; state unchanged.
INVALID = -1

CODE_NAMES: dict[int, str] = {
    REJECT: "REJECT",
    ADMIT: "ADMIT",
    QUEUE: "QUEUE",
    HANDOFF: "HANDOFF",
    RELEASE: "RELEASE",
    CANCELLED: "CANCELLED",
    INVALID: "INVALID",
}

IN_FLIGHT = 0
QUEUED = 1
ADMITTED = 2
COMPLETED = 3
REJECTED = 4
CANCELLED_WAITS = 5
STATE_SIZE = 6

#: ``max_queue`` value in the kernel parameters meaning "no bound on the number of waiters".
UNBOUNDED = -1


def concurrency_acquire(p: tuple[int, ...], state: State, now_us: int) -> int:
    """A request arrives at ``now_us``: returns ADMIT, QUEUE or REJECT and updates ``state``."""
    if state[IN_FLIGHT] < p[0]:
        state[IN_FLIGHT] += 1
        state[ADMITTED] += 1
        return ADMIT
    if p[1] > 0 and (p[2] < 0 or state[QUEUED] < p[2]):
        state[QUEUED] += 1
        return QUEUE
    state[REJECTED] += 1
    return REJECT


def concurrency_complete(p: tuple[int, ...], state: State, now_us: int) -> int:
    """A request holding a slot finished: returns HANDOFF, RELEASE or INVALID."""
    if state[IN_FLIGHT] <= 0:
        return INVALID
    state[COMPLETED] += 1
    if state[QUEUED] > 0:
        # The slot never becomes free: the oldest waiter takes it at this instant.
        state[QUEUED] -= 1
        state[ADMITTED] += 1
        return HANDOFF
    state[IN_FLIGHT] -= 1
    return RELEASE


def concurrency_cancel_wait(p: tuple[int, ...], state: State, now_us: int) -> int:
    """A waiter gave up (its ``max_wait_us`` elapsed): returns CANCELLED or INVALID."""
    if state[QUEUED] <= 0:
        return INVALID
    state[QUEUED] -= 1
    state[CANCELLED_WAITS] += 1
    return CANCELLED


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """At most ``max_in_flight`` requests at once; others wait up to ``max_wait_s`` or are rejected.

    ``max_wait_s`` (seconds, whole microseconds, >= 0): 0 means no queue at all (Sentinel thread
    grade). ``max_queue``: the most waiters at once (``None``: bounded only by time); must be
    ``None`` or 0 when ``max_wait_s`` is 0. See the module docstring for the protocol.
    """

    max_in_flight: int
    max_wait_s: float = 0.0
    max_queue: int | None = None
    _params: tuple[int, ...] = field(init=False, repr=False, compare=False, hash=False)

    name: ClassVar[str] = "concurrency"

    def __post_init__(self) -> None:
        require_int("max_in_flight", self.max_in_flight, minimum=1)
        # Upper bounds keep every count and deadline in int64 (numba) and below 2**53.
        if self.max_in_flight >= MAX_EXACT_INT:
            raise ValueError(f"max_in_flight must be below 2**53, got {self.max_in_flight!r}")
        wait_us = seconds_to_us("max_wait_s", self.max_wait_s, minimum_us=0)
        if wait_us >= MAX_EXACT_INT // 4:
            raise ValueError(f"max_wait_s must be below 2**51 us, got {self.max_wait_s!r} s")
        if self.max_queue is not None:
            require_int("max_queue", self.max_queue, minimum=0)
            if self.max_queue >= MAX_EXACT_INT:
                raise ValueError(f"max_queue must be below 2**53, got {self.max_queue!r}")
            if wait_us == 0 and self.max_queue > 0:
                raise ValueError(
                    f"max_queue={self.max_queue!r} needs max_wait_s > 0 "
                    f"(max_wait_s={self.max_wait_s!r} means nobody waits)"
                )
        queue = UNBOUNDED if self.max_queue is None else self.max_queue
        if wait_us == 0:
            queue = 0
        # Cached: the kernels are called once per request.
        object.__setattr__(self, "_params", (self.max_in_flight, wait_us, queue))

    @property
    def max_wait_us(self) -> int:
        """Longest wait for a slot, in microseconds (0: no waiting)."""
        return self._params[1]

    @property
    def params(self) -> tuple[int, ...]:
        """``(max_in_flight, max_wait_us, max_queue or -1)`` for the kernels."""
        return self._params

    @property
    def state_size(self) -> int:
        return STATE_SIZE

    def new_state(self) -> list[int]:
        """Nobody in flight, nobody waiting, all totals zero."""
        return [0] * STATE_SIZE

    def deadline_us(self, now_us: int) -> int:
        """When a request queued at ``now_us`` must be given up (call ``cancel_wait`` then)."""
        return check_now(now_us) + self.max_wait_us

    def acquire(self, state: State, now_us: int) -> int:
        """Run :func:`concurrency_acquire`; returns ADMIT, QUEUE or REJECT."""
        return concurrency_acquire(self._params, state, check_now(now_us))

    def complete(self, state: State, now_us: int) -> int:
        """Run :func:`concurrency_complete`; returns HANDOFF or RELEASE.

        Raises ``ValueError`` if nothing is in flight (a caller bug: completions must match
        admissions).
        """
        code = concurrency_complete(self._params, state, check_now(now_us))
        if code == INVALID:
            raise ValueError(f"state: complete() with in_flight={state[IN_FLIGHT]!r}")
        return code

    def cancel_wait(self, state: State, now_us: int) -> int:
        """Run :func:`concurrency_cancel_wait`; returns CANCELLED.

        Raises ``ValueError`` if nobody is queued.
        """
        code = concurrency_cancel_wait(self._params, state, check_now(now_us))
        if code == INVALID:
            raise ValueError(f"state: cancel_wait() with queued={state[QUEUED]!r}")
        return code
