"""The ordering rule at one instant: every event of a run is keyed ``(time, priority, seq)``.

Both runners key their events the same way, so they process them in the same order:

* ``PRIO_FAILOVER``: a failover's snapshot and restore come first at their instant;
* ``PRIO_RELEASE``: then pooled connections handed back to a waiting request;
* ``PRIO_ARRIVAL``: then the arrivals of that instant, in arrival order;
* then every per-request event, ordered by ``(request index, layer position)``: priority
  ``i * PRIO_STRIDE + pos``, the backend's entry and completion of request ``i`` at
  ``i * PRIO_STRIDE + PRIO_BACKEND`` (``+ 1``);
* ``PRIO_TICK``: progress ticks last; they change nothing.

``seq`` (the order events were scheduled in) only separates events that are interchangeable:
two releases of one node's connections, say. A user's own SimPy events at SimPy's priorities
(``URGENT`` = 0, ``NORMAL`` = 1) sort among request 0's events; components never rely on them.
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
