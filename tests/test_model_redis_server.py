"""The Redis model's shared pieces: the failover schedule (ratesim.model.redis_server)."""

from __future__ import annotations

from ratesim.model.faults import FailoverSpec
from ratesim.model.redis_server import RESTORE, SNAPSHOT, failover_schedule


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
