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


def check_attempts(
    attempt: np.ndarray,
    origin: np.ndarray,
    time_us: np.ndarray,
    decided_us: np.ndarray,
    rejected_by: np.ndarray,
) -> None:
    """With clients that retry: every user request ends with exactly one final outcome.

    Rows are attempts (``attempt``: 1 for a first try; ``origin``: the row of the user request
    it belongs to). Raise ``AssertionError("conservation violated: ...")`` unless each user
    request's attempts are numbered ``1 .. k`` with no gap or repeat, the first attempt is its
    own origin, every retry arrives after (strictly) the decision of the attempt before it, and
    only the last attempt can be admitted: then the last attempt's decision is the user
    request's one final outcome, and every attempt has its one decision (checked by
    :func:`check_conservation`)."""
    n = len(attempt)
    if n == 0:
        return
    wrong: list[str] = []
    rows = np.arange(n)
    first = attempt == 1
    if (attempt < 1).any() or (first != (origin == rows)).any():
        wrong.append("a first attempt that is not its own origin, or an attempt numbered < 1")
    if (origin < 0).any() or (origin >= n).any() or (attempt[np.clip(origin, 0, n - 1)] != 1).any():
        wrong.append("an origin that is not a first attempt")
    order = np.lexsort((attempt, origin))
    o, a = origin[order], attempt[order]
    same = o[1:] == o[:-1]
    if a[0] != 1 or (a[1:][same] != a[:-1][same] + 1).any() or (a[1:][~same] != 1).any():
        wrong.append("a user request whose attempts are not numbered 1 .. k")
    prev, nxt = order[:-1][same], order[1:][same]
    if (time_us[nxt] <= decided_us[prev]).any():
        wrong.append("a retry arriving before the decision of the attempt it follows")
    if (rejected_by[prev] < 0).any():
        wrong.append("a retry of an admitted attempt")
    if wrong:
        raise AssertionError("conservation violated: " + "; ".join(wrong))
