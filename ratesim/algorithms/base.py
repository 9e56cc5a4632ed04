"""The contract every rate-limiting algorithm follows.

An algorithm is two things:

* a **frozen parameter object** (a subclass of :class:`Algorithm`), validated on construction,
  hashable, so it can key a store's state;
* a **kernel**: a module-level plain function ``kernel(p, state, now_us, cost)`` that reads
  and updates ``state`` in place and returns ``(allowed, remaining, retry_after_us,
  reset_after_us)`` as four ints (``allowed`` is 0 or 1). Two optional trailing arguments,
  ``p0`` and ``s0`` (default 0), say where the parameters start in ``p`` and the state in
  ``state``: the compiled runner hands every kernel its whole parameter and state tables with
  offsets (a view per call costs numba reference counting, measured), the stores and the event
  engine call ``kernel(p, state, now_us, cost)``.

The kernel is the single source of truth. It touches only integers, tuples of integers and an
indexable, mutable sequence of integers (``state``): a Python ``list`` in the memory store and
the event engine, a numpy ``int64`` array in the numba-compiled fast engine. So a kernel must not
use dicts, objects, floats, ``len(state)`` tricks that differ between lists and arrays, or
Python-only builtins beyond ``min``/``max``/``abs``. Integer division uses ``//`` on
non-negative operands only (Python floors, C truncates: they agree only there).

State conventions:

* ``new_state()`` is the state of a key that has never been seen (``absent``). It is what a
  store hands the kernel for a missing key, and what the kernel itself treats as "nothing
  recorded".
* ``expires_at_us(state)`` is the earliest time from which the state decides exactly as an
  absent key would (for any later ``now_us``). Stores use it for garbage collection only: a store
  keeps a key for a grace period beyond this instant so that a clock that steps backwards a
  little still finds the state it wrote (see :mod:`ratesim.stores.memory`).

Times are integer microseconds (``*_us``). ``retry_after_us`` is ``-1`` when the request was
allowed, or when it can never be allowed (cost above capacity).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt

US_PER_S = 1_000_000
#: Largest integer a double (Lua's only number type) holds exactly; all state stays below it.
MAX_EXACT_INT = 2**53

#: Largest ``|now_us|`` accepted: durations are bounded below 2**51 us, so every sum a kernel forms
#: stays below 2**53 (exact in Lua) and far from int64 overflow (numba). 2**52 us is the year 2112.
MAX_ABS_NOW_US = 2**52

#: Counts a kernel compares with a sum stay below this: kernels reject ``cost > limit`` before
#: forming ``count + cost``, which then stays below 2 * 2**52 = 2**53 (exact in Lua).
MAX_LIMIT = 2**52
#: Integers of state one key may hold: 8 MiB as int64, about 40 MiB as Python ints.
MAX_STATE_INTS_PER_KEY = 2**20
#: Buckets of a bucket ring: a rejected request in a BucketedWindow costs ``buckets**2`` steps.
MAX_BUCKETS = 1024

State = MutableSequence[int] | npt.NDArray[np.int64]
#: A kernel's integer parameters: the algorithm's tuple, or a table of them (with an offset).
Params = tuple[int, ...] | npt.NDArray[np.int64]
Kernel = Callable[..., tuple[int, int, int, int]]


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one ``acquire``.

    ``limit`` is the algorithm's capacity at rest (redis-cell: ``max_burst + 1``),
    ``remaining`` what is left after this request, ``retry_after_us`` how long until this
    request could pass (``-1`` when allowed or never), ``reset_after_us`` how long until the key
    is back to full capacity. ``outcome`` says who decided: ``"limiter"`` for the algorithm
    itself, or the failure path of a store (``"fail_open"``, ``"fail_closed"``, ``"drift"``,
    ``"local"``) when the algorithm could not be asked.

    Store failures (``RedisStore``) also say why and whether the request counted: ``error`` is
    the kind of store error behind a failure-mode decision (``"timeout"``, ``"busy"``, ...; empty
    otherwise) and ``charged`` whether the request ran on the store's state: ``"yes"`` (it ran;
    every limiter decision), ``"no"`` (it certainly did not run) or ``"unknown"`` (it was sent
    but its reply was lost, so it may have run). See ``docs/guides/redis.md``.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after_us: int
    reset_after_us: int
    outcome: str = "limiter"
    error: str = ""
    charged: str = "yes"

    def throttle_reply(self) -> tuple[int, int, int, int, int]:
        """The 5-integer ``CL.THROTTLE`` reply with redis-cell v0.4+ rounding.

        ``[limited, limit, remaining, retry_after_s, reset_after_s]``; durations are ceiled at
        millisecond granularity (a sub-millisecond remainder is dropped), ``-1`` stays ``-1``.
        """
        return (
            0 if self.allowed else 1,
            self.limit,
            self.remaining,
            cell_seconds(self.retry_after_us),
            cell_seconds(self.reset_after_us),
        )


def cell_seconds(duration_us: int) -> int:
    """redis-cell v0.4+ rounding of a duration to whole seconds (``-1`` passes through).

    ``secs = trunc(d)``, plus one if the sub-second *millisecond* part is non-zero:
    2.0004 s -> 2, 2.001 s -> 3, 0.0005 s -> 0.
    """
    if duration_us < 0:
        return -1
    secs, rest_us = divmod(duration_us, US_PER_S)
    return secs + (1 if rest_us // 1000 > 0 else 0)


def require_int(
    name: str, value: object, *, minimum: int | None = None, below: int | None = None
) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` naming the parameter and the bound
    (``minimum <= value < below``)."""
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if below is not None and value >= below:
        shown = f"2**{below.bit_length() - 1}" if below & (below - 1) == 0 else f"{below}"
        raise ValueError(f"{name} must be below {shown}, got {value!r}")
    return value


def seconds_to_us(name: str, seconds: float, *, minimum_us: int = 1) -> int:
    """Convert a duration in seconds to whole microseconds, refusing nonsense.

    Raises ``ValueError`` naming ``name`` when the value is not a finite number, is below
    ``minimum_us`` once converted, or is not a whole number of microseconds.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {seconds!r}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {seconds!r}")
    exact_us = seconds * US_PER_S
    us = round(exact_us)
    # Tolerate float representation error only (0.1 s is 100000.00000000001 us), not 0.4 us.
    if abs(us - exact_us) > max(1e-6, 1e-12 * abs(exact_us)):
        raise ValueError(f"{name} must be a whole number of microseconds, got {seconds!r} s")
    if us < minimum_us:
        raise ValueError(f"{name} must be at least {minimum_us} us, got {seconds!r} s")
    return us


def check_now(now_us: object) -> int:
    """Validate a timestamp: an integer number of microseconds, ``|now_us| < 2**52``.

    Any sign is fine (time is relative). Floats are refused: they would silently lose exactness.
    """
    if isinstance(now_us, np.integer):
        now_us = int(now_us)
    if isinstance(now_us, bool) or not isinstance(now_us, int):
        raise ValueError(f"now_us must be an integer number of microseconds, got {now_us!r}")
    if not -MAX_ABS_NOW_US < now_us < MAX_ABS_NOW_US:
        raise ValueError(f"now_us must lie within +-2**52 us (year 2112), got {now_us!r}")
    return now_us


def check_cost(cost: object) -> int:
    """Validate a request cost: a non-negative integer (0 is a peek where supported)."""
    return require_int("cost", cost, minimum=0)


class Algorithm(ABC):
    """Base class of all keyed, rate-type algorithms (everything but concurrency/breaker).

    Subclasses are ``@dataclass(frozen=True)``; they set ``name`` and implement the abstract
    members. ``params`` is the tuple of ints the kernel receives.
    """

    name: ClassVar[str]

    @property
    @abstractmethod
    def params(self) -> tuple[int, ...]:
        """Integer parameters handed to the kernel (units in the subclass docstring)."""

    @property
    @abstractmethod
    def kernel(self) -> Kernel:
        """The module-level step function (see the module docstring)."""

    @property
    @abstractmethod
    def state_size(self) -> int:
        """Number of integers in this algorithm's state."""

    @property
    @abstractmethod
    def limit(self) -> int:
        """Capacity at rest, reported as ``Decision.limit``."""

    def new_state(self) -> list[int]:
        """State of a key never seen before (all zeros unless a subclass says otherwise)."""
        return [0] * self.state_size

    @abstractmethod
    def expires_at_us(self, state: State) -> int:
        """Earliest time from which ``state`` decides as an absent key would."""

    def step(self, state: State, now_us: int, cost: int = 1) -> Decision:
        """Run the kernel on ``state`` (mutated in place) and wrap the result."""
        now_us = check_now(now_us)
        cost = check_cost(cost)
        allowed, remaining, retry_after_us, reset_after_us = self.kernel(
            self.params, state, now_us, cost
        )
        return Decision(
            bool(allowed), self.limit, int(remaining), int(retry_after_us), int(reset_after_us)
        )


@dataclass(frozen=True, slots=True)
class CachedParamsAlgorithm(Algorithm):
    """An :class:`Algorithm` whose kernel ``params`` are computed once, in ``__post_init__``.

    Stores read ``params`` on every decision, so recomputing it there would sit in the hot path.
    The cache is no dataclass field that counts: it is left out of ``__init__``, ``repr``,
    equality and hashing, so instances with equal fields stay equal and hash equal. Subclasses
    validate their fields in ``__post_init__``, then call :meth:`_cache_params`.
    """

    _params: tuple[int, ...] = field(init=False, repr=False, compare=False, hash=False)

    def _cache_params(self, params: tuple[int, ...]) -> None:
        # The dataclass is frozen; object.__setattr__ fills the cache once, at construction.
        object.__setattr__(self, "_params", params)

    @property
    def params(self) -> tuple[int, ...]:
        return self._params


class WindowAlgorithm(CachedParamsAlgorithm):
    """A window limiter whose kernel ``params`` start ``(limit, window_us, ...)``.

    Subclasses declare the ``limit`` and ``window_s`` (seconds) dataclass fields themselves, so
    that their constructor signatures stay theirs.
    """

    __slots__ = ()

    @property
    def window_us(self) -> int:
        """Window length in microseconds (``params[1]``, cached)."""
        return self._params[1]
