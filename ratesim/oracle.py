"""The oracle: the intended policy, ideally executed, over a run's own arrivals.

What ``Result.oracle`` and ``Result.vs_oracle`` compare a run against (see :func:`run_oracle`),
whole or batch by batch (:class:`OracleStream`, the same rows; the gap streamed is
:mod:`ratesim.oracle_stream`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .compile import CompiledLayer
from .outcomes import ALLOWED, REJECTED, SHADOW_REJECTED
from .policy import BACKEND_KINDS
from .results import RunData
from .traffic import Arrivals


def run_oracle(arrivals: Arrivals, layers: list[CompiledLayer], compiled: bool = True) -> RunData:
    """The intended policy, ideally executed (what ``Result.oracle`` compares against).

    Every layer - node-scoped or global - is evaluated on one shared state table, at true time,
    with zero latency, no pool, no timeouts and no faults, requests in arrival order, each
    through all its layers before the next. A node-scoped layer therefore acts in the oracle as
    if the whole site were one node: the oracle is the limit the policy *says*, and the gap
    shows how far the distributed deployment strays from it. Concurrency and circuit-breaker
    layers guard the backend's capacity rather than a rate: with no backend in the ideal world
    they pass everything in the oracle.

    Each layer has its own state table and sees, in arrival order, exactly the requests that
    no earlier enforce layer rejected, so the loop runs layer by layer (same kernel calls in
    the same order per table as request by request, without per-request dispatch). That loop
    is :func:`ratesim.fast.oracle_layer`, compiled by numba, with a state for each key the
    layer's requests carry (no size limit). ``compiled=False`` runs its plain-Python twin
    instead, the reference the tests hold it to (``tests/test_fast_engine.py``);
    :func:`ratesim.replay.replay_policy` is the same semantics on a real store.
    """
    if compiled:
        stream = OracleStream(layers, len(arrivals.tier_names))
        return stream.step(arrivals, layers)
    n = len(arrivals)
    n_layers = len(layers)
    outcomes = np.zeros((n, n_layers), dtype=np.int8)
    remaining = np.full((n, n_layers), -1, dtype=np.int64)
    rejected_by = np.full(n, -1, dtype=np.int16)
    for pos, cl in enumerate(layers):
        live = rejected_by < 0
        if cl.applies_np is not None:
            live &= cl.applies_np
        todo = np.flatnonzero(live)
        if cl.spec.algorithm.kind in BACKEND_KINDS:
            outcomes[todo, pos] = ALLOWED  # capacity guards, not rate limits: see docstring
            continue
        oks, rems = _oracle_layer(cl, todo, arrivals)
        _set_layer(cl, pos, todo, np.array(oks, dtype=bool), rems, outcomes, remaining, rejected_by)
    return _oracle_data(arrivals, outcomes, remaining, rejected_by)


def _set_layer(
    cl: CompiledLayer,
    pos: int,
    todo: np.ndarray,
    ok: np.ndarray,
    rems: Any,
    outcomes: np.ndarray,
    remaining: np.ndarray,
    rejected_by: np.ndarray,
) -> None:
    """Layer ``pos``'s decisions ``ok`` / ``rems`` on the rows ``todo`` written to the tables."""
    remaining[todo, pos] = rems
    outcomes[todo, pos] = np.where(
        ok, ALLOWED, SHADOW_REJECTED if cl.spec.mode == "shadow" else REJECTED
    )
    if cl.spec.mode != "shadow":
        rejected_by[todo[~ok]] = pos


def _oracle_data(
    arrivals: Arrivals, outcomes: np.ndarray, remaining: np.ndarray, rejected_by: np.ndarray
) -> RunData:
    """The oracle's RunData: no latency, one node, no pool, no Redis."""
    n = len(arrivals)
    return RunData(
        arrivals=arrivals,
        node=np.zeros(n, dtype=np.int64),
        outcomes=outcomes,
        remaining=remaining,
        decided_us=arrivals.time_us.copy(),
        rejected_by=rejected_by,
        pool_wait_us=np.zeros(n, dtype=np.int64),
        depth_t_us=np.zeros(0, dtype=np.int64),
        depth=np.zeros(0, dtype=np.int64),
    )


class OracleStream:
    """:func:`run_oracle`, batch by batch: each rate layer's state table (and its sliding
    logs' pool) carried from one batch of consecutive rows to the next, so the oracle's rows of
    a run cut in batches anywhere (empty ones, inside one instant) are those of the whole run.

    The oracle has no latency, so a batch's decisions are final at once. A layer's table is
    indexed by the run-wide key id (``CompiledLayer.keys``, ``n_keys`` run-constant): ``n_keys
    * state ints`` int64 zeros, whose pages the OS only maps once a key of them is written.
    Raise ``ValueError`` for a layer with no compiled kernel (none among the built-ins)."""

    def __init__(self, layers: list[CompiledLayer], n_tiers: int) -> None:
        from .fast import supports_layer
        from .fast.kernels import fill_tier_rows
        from .fast.logpool import first_rings, new_pools, table_size

        self._tables: list[tuple[np.ndarray, np.ndarray, int, np.ndarray, Any] | None] = []
        for cl in layers:
            if cl.spec.algorithm.kind in BACKEND_KINDS:
                self._tables.append(None)
                continue
            if not supports_layer(cl):
                raise ValueError(f"layer {cl.spec.name!r}: no compiled kernel for its algorithm")
            size = max(table_size(a) for a in cl.algs)
            max_p = max(len(a.params) for a in cl.algs)
            kk = np.zeros(max(1, n_tiers), dtype=np.int64)
            pp = np.zeros((max(1, n_tiers), max_p), dtype=np.int64)
            fill_tier_rows(kk, pp, cl.algs)
            state = np.zeros(cl.n_keys * size, dtype=np.int64)
            # a first ring for some keys; the pool doubles when it needs more
            logs = new_pools(first_rings(min(cl.n_keys, 1024), list(cl.algs)), 0, 0)
            self._tables.append((kk, pp, size, state, logs))

    def step(self, arrivals: Arrivals, layers: list[CompiledLayer]) -> RunData:
        """The oracle's rows for the batch ``arrivals`` (the run's next rows), ``layers``'
        per-request arrays cut to the same rows; the tables move on past it."""
        from .fast.oracle import oracle_layer_rows

        n = len(arrivals)
        outcomes = np.zeros((n, len(layers)), dtype=np.int8)
        remaining = np.full((n, len(layers)), -1, dtype=np.int64)
        rejected_by = np.full(n, -1, dtype=np.int16)
        # no copy of a column already int64 and contiguous (``astype`` made one per batch);
        # the tier codes kept narrow (int8: the pass is compiled for it), not widened per batch
        tier = np.ascontiguousarray(arrivals.tier)
        t_us = np.ascontiguousarray(arrivals.time_us, dtype=np.int64)
        cost = np.ascontiguousarray(arrivals.cost, dtype=np.int64)
        every = np.zeros(0, dtype=np.bool_)
        for pos, cl in enumerate(layers):
            table = self._tables[pos]
            applies = every if cl.applies_np is None else np.asarray(cl.applies_np, dtype=np.bool_)
            if table is None:
                live = rejected_by < 0
                if len(applies):
                    live &= applies
                outcomes[live, pos] = ALLOWED  # capacity guards, not rate limits: see run_oracle
                continue
            kk, pp, size, state, logs = table
            oracle_layer_rows(
                pos, cl.spec.mode == "shadow", applies, np.ascontiguousarray(cl.keys, dtype=np.int64),
                tier, t_us, cost, kk, pp, size, state, logs, outcomes, remaining, rejected_by,
            )  # fmt: skip
        return _oracle_data(arrivals, outcomes, remaining, rejected_by)


def _oracle_layer(
    cl: CompiledLayer, todo_np: np.ndarray, arrivals: Arrivals
) -> tuple[list[int], list[int]]:
    """One rate layer's kernel over the requests ``todo_np`` (arrival order) on one shared
    table, in plain Python: the (allowed, remaining) of each. The compiled oracle's reference
    twin, for the tests (``run_oracle(..., compiled=False)``)."""
    todo: list[int] = todo_np.tolist()
    t_arr: list[int] = arrivals.time_us.tolist()
    tier_of: list[int] = arrivals.tier.tolist()
    cost_of: list[int] = arrivals.cost.tolist()
    algs = cl.algs
    kern = [a.kernel for a in algs]
    par = [a.params for a in algs]
    keys: list[int] = cl.keys.tolist()
    states: list[Any] = [None] * cl.n_keys
    oks = [0] * len(todo)
    rems = [0] * len(todo)
    if all(a == algs[0] for a in algs):
        # one algorithm for every tier: no per-request tier dispatch
        kn, pr, alg = kern[0], par[0], algs[0]
        for j, i in enumerate(todo):
            k = keys[i]
            st = states[k]
            if st is None:
                st = states[k] = alg.new_state()
            oks[j], rems[j], _, _ = kn(pr, st, t_arr[i], cost_of[i])
        return oks, rems
    for j, i in enumerate(todo):
        tr = tier_of[i]
        k = keys[i]
        st = states[k]
        if st is None:
            st = states[k] = algs[tr].new_state()
        oks[j], rems[j], _, _ = kern[tr](par[tr], st, t_arr[i], cost_of[i])
    return oks, rems
