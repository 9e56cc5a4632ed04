"""ratesim: simulate API-gateway rate limiting, then run the same policies on a real Redis."""

from . import scenarios
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
from .engine import simulate
from .policy import LayerSpec, PolicySpec
from .replay import CompareReport, compare, replay
from .results import Result
from .scenario import Scenario, ScenarioError, load_scenario
from .stores import MemoryStore, RedisStore

__version__ = "0.1.0"

__all__ = [
    "GCRA",
    "BucketedWindow",
    "CircuitBreaker",
    "ConcurrencyLimit",
    "Decision",
    "DoubleBufferedWindow",
    "FixedWindow",
    "LayerSpec",
    "MemoryStore",
    "PolicySpec",
    "RedisStore",
    "CompareReport",
    "Result",
    "Scenario",
    "ScenarioError",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
    "compare",
    "load_scenario",
    "replay",
    "scenarios",
    "simulate",
]


def __getattr__(name: str) -> object:
    # matplotlib is slow to import: load the plotting module only when it is asked for (and
    # the experiments and validate, which pull in the runners and scipy, likewise).
    if name in ("plots", "experiments", "validate"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ratesim' has no attribute {name!r}")
