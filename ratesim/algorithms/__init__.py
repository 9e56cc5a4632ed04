"""Pure rate-limiting algorithms: frozen parameter objects plus integer kernels (no I/O).

See :mod:`ratesim.algorithms.base` for the contract every algorithm follows.
"""

from .base import Algorithm, Decision, cell_seconds
from .breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, state_name
from .bucketed import BucketedWindow, DoubleBufferedWindow
from .calendar_window import CalendarWindow, CountingFixedWindow
from .concurrency import ADMIT, HANDOFF, QUEUE, REJECT, ConcurrencyLimit
from .gcra import GCRA
from .nginx_leaky import NginxLeakyBucket
from .pacer import UniformPacer
from .reserve_bucket import ReserveTokenBucket
from .shaping import shapes, shaping_delay_us
from .sliding_log import SlidingWindowLog
from .token_bucket import TokenBucket
from .warm_up import WarmUpBucket
from .window_counter import FixedWindow, SlidingWindowCounter

__all__ = [
    "ADMIT",
    "CLOSED",
    "HALF_OPEN",
    "HANDOFF",
    "OPEN",
    "QUEUE",
    "REJECT",
    "state_name",
    "GCRA",
    "Algorithm",
    "BucketedWindow",
    "CalendarWindow",
    "CountingFixedWindow",
    "CircuitBreaker",
    "ConcurrencyLimit",
    "Decision",
    "DoubleBufferedWindow",
    "FixedWindow",
    "NginxLeakyBucket",
    "ReserveTokenBucket",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
    "UniformPacer",
    "WarmUpBucket",
    "cell_seconds",
    "shapes",
    "shaping_delay_us",
]
