"""The oracle's layer loop, compiled (see :func:`ratesim.oracle.run_oracle`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from .kernels import fill_tier_rows, rate_kernel
from .support import supports_layer

if TYPE_CHECKING:
    from ..compile import CompiledLayer
    from ..traffic import Arrivals


@numba.njit(cache=True)
def _oracle_layer(
    todo: Any,
    slot: Any,
    tier: Any,
    t_us: Any,
    cost: Any,
    kk: Any,
    pp: Any,
    size: int,
    n_slots: int,
    oks: Any,
    rems: Any,
) -> None:
    """Request ``todo[j]`` on the state of its key, ``slot[j]`` (of ``n_slots``, zeros first)."""
    state = np.zeros(n_slots * size, dtype=np.int64)
    width = pp.shape[1]
    pf = pp.reshape(-1)
    for j in range(todo.shape[0]):
        i = todo[j]
        tr = tier[i]
        ok, rem, _, _ = rate_kernel(kk[tr], pf, tr * width, state, slot[j] * size, t_us[i], cost[i])
        oks[j] = ok
        rems[j] = rem


def oracle_layer(
    cl: CompiledLayer, todo: np.ndarray, arrivals: Arrivals
) -> tuple[np.ndarray, np.ndarray]:
    """One rate layer of the oracle (see :func:`ratesim.oracle.run_oracle`), compiled: the
    kernel over the requests ``todo`` (arrival order) on one shared table; returns the
    (allowed, remaining) of each as int64 arrays.

    Only the keys of ``todo`` get a state (a slot each, in key order), so the table holds at
    most one state per request whatever the number of keys. Raise ``ValueError`` for a layer
    with no compiled kernel (:func:`ratesim.fast.supports_layer`; none among the built-ins)."""
    if not supports_layer(cl):
        raise ValueError(f"layer {cl.spec.name!r}: no compiled kernel for its algorithm")
    todo = np.asarray(todo, dtype=np.int64)
    uniq, slot = np.unique(cl.keys[todo], return_inverse=True)
    n_tiers = max(1, len(arrivals.tier_names))
    size = max(a.state_size for a in cl.algs)
    max_p = max(len(a.params) for a in cl.algs)
    kk = np.zeros(n_tiers, dtype=np.int64)
    pp = np.zeros((n_tiers, max_p), dtype=np.int64)
    fill_tier_rows(kk, pp, cl.algs)
    oks = np.zeros(len(todo), dtype=np.int64)
    rems = np.zeros(len(todo), dtype=np.int64)
    _oracle_layer(
        todo,
        slot.astype(np.int64).reshape(-1),
        arrivals.tier.astype(np.int64),
        arrivals.time_us.astype(np.int64),
        arrivals.cost.astype(np.int64),
        kk,
        pp,
        size,
        len(uniq),
        oks,
        rems,
    )
    return oks, rems
