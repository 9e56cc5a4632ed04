"""The oracle: the intended policy, ideally executed, over a run's own arrivals.

What ``Result.oracle`` and ``Result.vs_oracle`` compare a run against (see :func:`run_oracle`).
"""

from __future__ import annotations

from collections.abc import Callable
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
    from .fast import oracle_layer

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
        layer_loop: Callable[[CompiledLayer, np.ndarray, Arrivals], tuple[Any, Any]]
        layer_loop = oracle_layer if compiled else _oracle_layer
        oks, rems = layer_loop(cl, todo, arrivals)
        ok = np.array(oks, dtype=bool)
        remaining[todo, pos] = rems
        outcomes[todo, pos] = np.where(
            ok, ALLOWED, SHADOW_REJECTED if cl.spec.mode == "shadow" else REJECTED
        )
        if cl.spec.mode != "shadow":
            rejected_by[todo[~ok]] = pos
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
