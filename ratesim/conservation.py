"""The conservation check both runners end with: every arrival decided once, nothing left over."""

from __future__ import annotations

import numpy as np


def check_conservation(
    n: int, arrived: int, done: int, decided_us: np.ndarray, leftovers: dict[str, int]
) -> None:
    """Raise ``AssertionError("conservation violated: ...")`` unless all ``n`` arrivals arrived
    and were decided (``decided_us``, µs, has no ``-1`` left) and every count in ``leftovers``
    (what must be back to zero once the run is over, by name: e.g. ``"pool connections"``,
    ``"backend in flight"``, ``"held slots"``, ``"concurrency waiters"``) is zero; the message
    names everything that is wrong."""
    wrong: list[str] = []
    undecided = int((np.asarray(decided_us) < 0).sum()) if len(decided_us) else 0
    if arrived != n or done != n or undecided:
        wrong.append(
            f"{n} arrivals, {arrived} arrived, {done} decided ({arrived - done} in flight, "
            f"{undecided} without a decision time)"
        )
    wrong += [f"{count} {name} left" for name, count in leftovers.items() if count]
    if wrong:
        raise AssertionError("conservation violated: " + "; ".join(wrong))
