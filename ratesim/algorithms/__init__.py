"""Pure rate-limiting algorithms: frozen parameter objects plus integer kernels (no I/O).

See :mod:`ratesim.algorithms.base` for the contract every algorithm follows.
"""

from .base import Algorithm, Decision, cell_seconds
from .breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, state_name
from .bucketed import BucketedWindow, DoubleBufferedWindow
from .concurrency import ADMIT, HANDOFF, QUEUE, REJECT, ConcurrencyLimit
from .gcra import GCRA
from .sliding_log import SlidingWindowLog
from .token_bucket import TokenBucket
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
    "CircuitBreaker",
    "ConcurrencyLimit",
    "Decision",
    "DoubleBufferedWindow",
    "FixedWindow",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
    "cell_seconds",
]
