"""The fast engine: the event engine's run loop compiled with numba.

``simulate(scenario, engine="fast")`` runs this loop; ``engine="auto"`` (the default) runs it
whenever the scenario is one it supports (:func:`unsupported` gives the reason when not) and
the event engine otherwise.

It is the same discrete-event model as :func:`ratesim.engine.run_events`, not an
approximation: the same draws (made by the engine, per request, before the run), the same
events keyed ``(time, priority, sequence)`` exactly as the event engine keys them, processed in
the same order, through the same kernels (the algorithms' module-level functions, compiled by
``numba.njit``). So both engines return identical per-request outcomes, decision times, pool
waits and Redis queue samples for the same scenario and seed (``tests/test_fast_engine.py``
checks this on every built-in and on random scenarios).

The events it knows are all of the event engine's, keyed the same way:

* an arrival batch (every request arriving at one instant, in arrival order);
* a command reaching its Redis shard (FIFO per shard, Lindley's recursion), including commands
  whose caller already gave up (they still charge the state);
* a pooled connection handed to a waiting request, a pool-wait timeout, a request resuming at a
  later instant (a node layer after a global one, or after a failure mode decided), a local
  fallback deciding at a later instant;
* a failover's snapshot and restore of the Redis state (its clock step is a jump of the Redis
  clock; a script flush makes each node's next command pay the NOSCRIPT round trip);
* a concurrency wait timing out, a request entering and leaving the backend, and the slots and
  breaker passes it held being given back (a freed slot handed to the oldest waiter, whose walk
  through the layers then continues, in the event engine's order).

It models every scenario the schema accepts: clocks with offsets, drift, jumps and NTP slews
(node and Redis clocks, a failover's clock step a jump of the Redis clock), and limiter state of
any size (a state per (node, key) pair the run's requests carry, as the event engine creates a
key's state when first seen; no cap). :func:`unsupported` is kept for a layer whose algorithm
has no compiled kernel, which no built-in algorithm lacks.

One source per formula: what both runners compute is written once, in numba-compatible plain
Python, and compiled here (:mod:`ratesim.fast.kernels`) where the loop needs it: the
algorithms' kernels, the clock (:func:`ratesim.model.clock.clock_read`, slews included),
outage and partition lookups (:mod:`ratesim.model.faults`) and the backend slowdown
(:mod:`ratesim.model.backend`). The failover schedule (:mod:`ratesim.model.redis_server`) and
the end-of-run check (:mod:`ratesim.conservation`) are shared in Python; the oracle is one
compiled pass per layer (:func:`oracle_layer_rows`) whose plain-Python twin only the tests run.

Layout: everything lives in int64 numpy arrays (per-request columns, per-layer state tables laid
end to end, the event heap as one row per event; a sliding log's entry in its table is the
offset of a ring that grows in a pool, :mod:`ratesim.fast.logpool`), handed to the loop as one
:class:`~ratesim.fast.layout.World`, a ``NamedTuple`` whose fields the loop reads by name. The
loop runs in calls of at most one time chunk each, so that Python can show progress and grow the
event heap between calls.
"""

from .oracle import gap_finish, gap_fold, oracle_gap, oracle_layer_rows, window_max_sorted
from .run import run_fast
from .support import supports_layer, unsupported

__all__ = [
    "gap_finish",
    "gap_fold",
    "oracle_gap",
    "oracle_layer_rows",
    "run_fast",
    "supports_layer",
    "unsupported",
    "window_max_sorted",
]
