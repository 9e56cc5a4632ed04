"""``MemoryStore``: run any algorithm on keyed state held in a Python dict.

Idle keys are garbage collected: a key whose state decides like an absent key
(``limiter.expires_at_us(state) <= now_us``) is dropped once it has been so for ``grace_us``.
The grace exists because time going backwards is normal here: nodes with skewed clocks share one
store, and a lagging node must still find the state a leading node wrote. With the default grace
(60 s) decisions never depend on collection unless clocks disagree by more than a minute.
Collection is amortised: every ``gc_every`` acquisitions the store sweeps the next
``2 * gc_every`` keys, so the sweep outruns even traffic where every request brings a new key
(a sweep of only one key per request would let dead keys pile up without bound).

Keys follow the rule of :func:`~ratesim.stores.normalize_key`, shared with ``RedisStore``: a
``str`` or an ``int`` (``777`` and ``"777"`` are one key), text that encodes as UTF-8.
"""

from __future__ import annotations

from typing import Any

from ..algorithms.base import Algorithm, Decision, State, check_cost, check_now, require_int
from ._keys import normalize_key

DEFAULT_GRACE_US = 60_000_000


class MemoryStore:
    """In-process keyed state for any :class:`~ratesim.algorithms.base.Algorithm`.

    ``acquire(limiter, key, now_us, cost=1) -> Decision``. State is keyed by the pair
    ``(limiter, normalize_key(key))``, so one store can hold several limiters; a key that is not
    a ``str`` or an ``int``, or text with a lone surrogate, is a ``ValueError``.
    """

    def __init__(self, *, grace_us: int = DEFAULT_GRACE_US, gc_every: int = 4096) -> None:
        require_int("grace_us", grace_us, minimum=0)
        require_int("gc_every", gc_every, minimum=1)
        self.grace_us = grace_us
        self.gc_every = gc_every
        self._state: dict[tuple[Algorithm, str], State] = {}
        self._ops = 0
        self._sweep_iter: Any = None

    def acquire(self, limiter: Algorithm, key: object, now_us: int, cost: int = 1) -> Decision:
        """Ask ``limiter`` about one request of ``cost`` for ``key`` at ``now_us`` (microseconds)."""
        now_us = check_now(now_us)
        cost = check_cost(cost)
        slot = (limiter, normalize_key(key))
        state = self._state.get(slot)
        if state is None:
            state = limiter.new_state()
            self._state[slot] = state
        allowed, remaining, retry_after_us, reset_after_us = limiter.kernel(
            limiter.params, state, now_us, cost
        )
        self._ops += 1
        if self._ops % self.gc_every == 0:
            self.collect(now_us, budget=2 * self.gc_every)
        return Decision(bool(allowed), limiter.limit, remaining, retry_after_us, reset_after_us)

    def state_of(self, limiter: Algorithm, key: object) -> State | None:
        """The live state of ``key`` (``None`` when absent); for inspection and tests."""
        return self._state.get((limiter, normalize_key(key)))

    def reset(self, limiter: Algorithm, key: object) -> None:
        """Forget ``key`` (like ``DEL`` on Redis)."""
        self._state.pop((limiter, normalize_key(key)), None)

    def collect(self, now_us: int, budget: int | None = None) -> int:
        """Drop keys idle for longer than the grace; look at most ``budget`` keys (None: all).

        Returns the number of keys dropped.
        """
        horizon = check_now(now_us) - self.grace_us
        if budget is None:
            dead = [k for k, s in self._state.items() if k[0].expires_at_us(s) <= horizon]
        else:
            dead = []
            if self._sweep_iter is None:
                self._sweep_iter = iter(list(self._state.keys()))
            for _ in range(budget):
                k = next(self._sweep_iter, None)
                if k is None:
                    self._sweep_iter = None
                    break
                s = self._state.get(k)
                if s is not None and k[0].expires_at_us(s) <= horizon:
                    dead.append(k)
        for k in dead:
            del self._state[k]
        return len(dead)

    def __len__(self) -> int:
        return len(self._state)
