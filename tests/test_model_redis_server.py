"""The Redis model's shared pieces: the failover schedule (ratesim.model.redis_server)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.model.faults import FailoverSpec
from ratesim.model.redis_server import RESTORE, SNAPSHOT, failover_schedule, queue_depths


def test_failover_schedule_is_snapshot_then_restore_in_order_of_instant() -> None:
    fos = [
        FailoverSpec(at_s=0.5, lost_writes_ms=100),
        FailoverSpec(at_s=0.2, lost_writes_ms=300),  # its snapshot would be before 0: at 0
        FailoverSpec(at_s=0.5),  # same instant as the first: listed order kept
    ]
    assert failover_schedule(fos) == [
        (0, SNAPSHOT, 1),
        (200_000, RESTORE, 1),
        (400_000, SNAPSHOT, 0),
        (500_000, RESTORE, 0),
        (500_000, SNAPSHOT, 2),
        (500_000, RESTORE, 2),
    ]
    assert failover_schedule([]) == []
    assert (SNAPSHOT, RESTORE) == (0, 1)


def test_failover_schedule_on_sorted_failovers_is_the_event_engines_posting_order() -> None:
    fos = sorted(
        [FailoverSpec(at_s=0.3, lost_writes_ms=5), FailoverSpec(at_s=0.1, lost_writes_ms=50)],
        key=lambda f: f.at_us,
    )
    posted = []
    for j, f in enumerate(fos):  # what run_events posts, verbatim
        posted.append((max(0, f.at_us - f.lost_writes_us), SNAPSHOT, j))
        posted.append((f.at_us, RESTORE, j))
    assert failover_schedule(fos) == posted


def _naive_depths(at: list[int], fin: list[int], shard: list[int] | None) -> list[int]:
    """Commands of the same shard listed before each command and not finished by its arrival,
    plus later ones finished by then never count: the definition, counted one by one."""
    out = []
    for k in range(len(at)):
        same = [j for j in range(len(at)) if shard is None or shard[j] == shard[k]]
        ahead = [j for j in same if j < k]
        finished = [j for j in same if fin[j] <= at[k]]
        out.append(len(ahead) - len(finished))
    return out


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 60), st.integers(0, 2)), max_size=40
    ),
    sharded=st.booleans(),
    disorder=st.booleans(),
)
def test_queue_depths_merge_equals_the_definition(
    steps: list[tuple[int, int, int]], sharded: bool, disorder: bool
) -> None:
    """Lindley logs (arrivals non-decreasing, FIFO finishes per shard) go through the compiled
    merge; a shuffled log (arrivals out of order) through the binary search: both equal the
    definition counted by hand."""
    at, fin, shard = [], [], []
    t = 0
    busy = [0, 0, 0]
    for gap, service, s in steps:
        t += gap
        s = s if sharded else 0
        busy[s] = max(busy[s], t) + service
        at.append(t)
        fin.append(busy[s])
        shard.append(s)
    if disorder:
        at = at[::-1]
    sh = shard if sharded else None
    got = queue_depths(at, fin, sh).tolist()
    assert got == _naive_depths(at, fin, sh)
