"""Stores run an algorithm on keyed state: in memory, or on a real Redis."""

from .memory import MemoryStore
from .redis_store import RedisStore, ReorderedError

__all__ = ["MemoryStore", "RedisStore", "ReorderedError"]
