"""The ordering rule at one instant: every event of a run is keyed ``(time, priority, seq)``.

Both runners key their events the same way, so they process them in the same order:

* ``PRIO_FAILOVER``: a failover's snapshot and restore come first at their instant;
* ``PRIO_RELEASE``: then pooled connections handed back to a waiting request;
* ``PRIO_ARRIVAL``: then the arrivals of that instant, in arrival order;
* then every per-request event, ordered by ``(request index, layer position)``: priority
  ``i * PRIO_STRIDE + pos``, the backend's entry and completion of request ``i`` at
  ``i * PRIO_STRIDE + PRIO_BACKEND`` (``+ 1``);
* ``PRIO_TICK``: progress ticks last; they change nothing.

The SimPy components (:mod:`ratesim.des`) key request events at ``PRIO_REQUESTS + i *
PRIO_STRIDE + pos`` (:func:`request_priority`): the same order among themselves, with SimPy's
own priorities ``URGENT`` (0) and ``NORMAL`` (1) - a user process's timeouts and starts, the
decisions handed to it - between the arrivals and every request's events.

``seq`` (the order events were scheduled in) only separates events that are interchangeable:
two releases of one node's connections, say.
"""

#: Requests' events are prioritised by ``index * PRIO_STRIDE + layer position``.
PRIO_STRIDE = 64
#: Backend entry / completion of request ``i``: ``i * PRIO_STRIDE + PRIO_BACKEND (+ 1)``.
PRIO_BACKEND = PRIO_STRIDE - 2
#: At most this many layers, so a request's priorities stay below the next request's.
MAX_LAYERS = PRIO_BACKEND
PRIO_FAILOVER = -3
PRIO_RELEASE = -2
PRIO_ARRIVAL = -1
#: Progress-bar ticks come after everything else at their instant and change nothing.
PRIO_TICK = 2**62
#: Later than any simulated instant.
NEVER_US = 2**63
#: Where the components' request priorities start (after SimPy's URGENT and NORMAL).
PRIO_REQUESTS = 2


def request_priority(i: int, pos: int) -> int:
    """The components' priority of request ``i``'s event at layer position ``pos`` (or at
    ``PRIO_BACKEND`` / ``PRIO_BACKEND + 1`` for its backend entry / completion)."""
    return PRIO_REQUESTS + i * PRIO_STRIDE + pos
