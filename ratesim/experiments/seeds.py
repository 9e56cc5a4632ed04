"""Seeds of a sweep's replications, and their lineage.

Replication ``r`` of a sweep with root seed ``s`` runs every point with the same integer seed,
``seed_for(SeedSequence(s).spawn(R)[r])``: the first 64-bit word of the child's state, shifted
right by one bit so that it fits a signed 64-bit column (Parquet, pandas). Every point of one
replication therefore sees the same random streams (common random numbers: the same arrivals
when the traffic is the same), and replications are independent. The lineage recorded with each
run, ``(seed_entropy, seed_spawn_key)``, rebuilds the seed:
``seed_for(SeedSequence(seed_entropy, spawn_key=(seed_spawn_key,)))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DIRECT", "SeedPlan", "replication_seeds", "seed_for"]

#: ``seed_spawn_key`` of a run whose seed was used as given (not spawned from a root).
DIRECT = -1


@dataclass(frozen=True)
class SeedPlan:
    """The seed one replication passes to ``simulate``, and where it came from."""

    replication: int
    seed: int
    entropy: int
    spawn_key: int


def seed_for(seq: np.random.SeedSequence) -> int:
    """The non-negative 63-bit integer seed a ``SeedSequence`` stands for."""
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def replication_seeds(seed: int, replications: int) -> list[SeedPlan]:
    """One :class:`SeedPlan` per replication, from ``SeedSequence(seed).spawn(replications)``."""
    seed = _check_int("seed", seed, 0)
    replications = _check_int("replications", replications, 1)
    children = np.random.SeedSequence(seed).spawn(replications)
    return [
        SeedPlan(r, seed_for(child), seed, int(child.spawn_key[-1]))
        for r, child in enumerate(children)
    ]


def direct_seeds(seeds: list[int]) -> list[SeedPlan]:
    """Plans that pass ``seeds`` to ``simulate`` as they are (lineage: ``DIRECT``)."""
    return [
        SeedPlan(r, _check_int("seed", s, 0), _check_int("seed", s, 0), DIRECT)
        for r, s in enumerate(seeds)
    ]
