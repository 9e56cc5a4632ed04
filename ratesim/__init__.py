"""ratesim: simulate API-gateway rate limiting, then run the same policies on a real Redis."""

from .algorithms import (
    GCRA,
    BucketedWindow,
    CircuitBreaker,
    ConcurrencyLimit,
    Decision,
    DoubleBufferedWindow,
    FixedWindow,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from .stores import MemoryStore

__version__ = "0.1.0"

__all__ = [
    "GCRA",
    "BucketedWindow",
    "CircuitBreaker",
    "ConcurrencyLimit",
    "Decision",
    "DoubleBufferedWindow",
    "FixedWindow",
    "MemoryStore",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
]
