"""Per-purpose random streams derived from one seed.

Every random quantity of a run is drawn from the stream named for its purpose ("arrivals",
"users", "nodes", "latency", "service", ...). Streams are independent of each other and of the
order in which they are first asked for, so adding a new purpose never changes the draws of an
existing one, and a second engine can reproduce a run from the same seed.
"""

from __future__ import annotations

import zlib

import numpy as np


def purpose_key(purpose: str) -> int:
    """A stable 32-bit integer for a purpose name (``hash()`` is salted per process)."""
    return zlib.crc32(purpose.encode("utf-8"))


class Streams:
    """Named, independent ``numpy.random.Generator`` streams from one integer seed."""

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self._streams: dict[str, np.random.Generator] = {}

    def get(self, purpose: str) -> np.random.Generator:
        """The generator for ``purpose`` (created on first use, then reused)."""
        gen = self._streams.get(purpose)
        if gen is None:
            seq = np.random.SeedSequence(self.seed, spawn_key=(purpose_key(purpose),))
            gen = np.random.Generator(np.random.PCG64(seq))
            self._streams[purpose] = gen
        return gen

    def fresh(self, purpose: str) -> np.random.Generator:
        """A new generator for ``purpose`` starting from its first draw (for replays)."""
        seq = np.random.SeedSequence(self.seed, spawn_key=(purpose_key(purpose),))
        return np.random.Generator(np.random.PCG64(seq))
