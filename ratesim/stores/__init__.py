"""Stores run an algorithm on keyed state: in memory, or on a real Redis."""

from .memory import MemoryStore

__all__ = ["MemoryStore"]
