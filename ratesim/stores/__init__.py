"""Stores run an algorithm on keyed state: in memory, or on a real Redis.

Both follow one key rule, :func:`normalize_key`: a key is a ``str`` or an ``int`` (formatted
with ``str()``, so ``777`` and ``"777"`` are one key), and must be text that encodes as UTF-8.
"""

from ._keys import normalize_key
from ._redis_errors import ERROR_KINDS
from .memory import MemoryStore
from .redis_store import RedisStore, ReorderedError

__all__ = ["ERROR_KINDS", "MemoryStore", "RedisStore", "ReorderedError", "normalize_key"]
