"""Outcome codes: what one layer did with one request (int8 in every runner's output).

The lowest module of the simulation: the runners, the oracle, the replay on a real store and
the results all use these codes, and none of them owns them.
"""

NOT_REACHED = 0
ALLOWED = 1
REJECTED = 2
SHADOW_REJECTED = 3
FAIL_OPEN = 4
FAIL_CLOSED = 5
LOCAL_ALLOWED = 6
LOCAL_REJECTED = 7

#: Outcome names, indexed by code (the categories of the ``layer:<name>`` columns).
OUTCOMES = (
    "not_reached",
    "allowed",
    "rejected",
    "shadow_rejected",
    "fail_open",
    "fail_closed",
    "local_allowed",
    "local_rejected",
)
