"""Events at a chosen instant and priority: the one scheduling primitive of the components.

SimPy orders its queue by ``(time, priority, insertion)``; ``Environment.schedule`` takes the
priority, and :class:`At` is the event that uses it, built the way SimPy builds its own
``Timeout``. Every component schedules through :func:`call_at`, with the priorities of
:mod:`ratesim.ordering`, so that whatever happens at one instant happens in the order both
runners agree on.

Time is integer microseconds of *true* time: the environment starts at ``0`` and every delay
is an ``int``, so ``env.now`` stays an exact integer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import simpy
from simpy.events import EventPriority


class At(simpy.Event):
    """An event processed at instant ``at`` (µs, ``>= env.now``) with ``priority`` (lower first
    among events of one instant), carrying ``value``."""

    def __init__(self, env: simpy.Environment, at: int, priority: int, value: Any = None) -> None:
        super().__init__(env)
        # Triggered from the start, exactly as simpy.Timeout does it.
        self._ok = True
        self._value = value
        env.schedule(self, EventPriority(priority), at - env.now)


class Call(At):
    """An :class:`At` event that runs ``fn(*args)`` when processed."""

    def __init__(
        self,
        env: simpy.Environment,
        at: int,
        priority: int,
        fn: Callable[..., object],
        args: tuple[Any, ...],
    ) -> None:
        super().__init__(env, at, priority)
        self.fn = fn
        self.args = args
        assert self.callbacks is not None
        self.callbacks.append(_run)


def _run(ev: simpy.Event) -> None:
    ev.fn(*ev.args)  # type: ignore[attr-defined]


def call_at(
    env: simpy.Environment, at: int, priority: int, fn: Callable[..., object], *args: Any
) -> Call:
    """Run ``fn(*args)`` at instant ``at`` (µs) with ``priority``."""
    return Call(env, at, priority, fn, args)


def now(env: simpy.Environment) -> int:
    """The current instant in integer µs (the components only ever schedule integer delays)."""
    return env.now  # type: ignore[return-value]


def now_or_at(
    env: simpy.Environment, at: int, priority: int, fn: Callable[..., object], *args: Any
) -> None:
    """Run ``fn(*args)`` now if ``at`` is the current instant, else at ``at`` with ``priority``.

    A step that falls on the current instant continues the step being processed rather than
    queueing behind other events of the instant: that is the rule both runners follow.
    """
    if at == env.now:
        fn(*args)
    else:
        call_at(env, at, priority, fn, *args)
