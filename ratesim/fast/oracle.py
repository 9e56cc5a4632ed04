"""The oracle's layer loop, compiled (see :func:`ratesim.oracle.run_oracle`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from .kernels import fill_tier_rows, rate_kernel

if TYPE_CHECKING:
    from ..compile import CompiledLayer
    from ..traffic import Arrivals


@numba.njit(cache=True)
def _oracle_layer(
    todo: Any,
    keys: Any,
    tier: Any,
    t_us: Any,
    cost: Any,
    kk: Any,
    pp: Any,
    size: int,
    n_keys: int,
    oks: Any,
    rems: Any,
) -> None:
    state = np.zeros(n_keys * size, dtype=np.int64)
    for j in range(todo.shape[0]):
        i = todo[j]
        s0 = keys[i] * size
        tr = tier[i]
        ok, rem, _, _ = rate_kernel(kk[tr], pp[tr], state[s0 : s0 + size], t_us[i], cost[i])
        oks[j] = ok
        rems[j] = rem


def oracle_layer(
    cl: CompiledLayer, todo: np.ndarray, arrivals: Arrivals
) -> tuple[np.ndarray, np.ndarray]:
    """One rate layer of the oracle (see :func:`ratesim.oracle.run_oracle`), compiled: the
    kernel over the requests ``todo`` (arrival order) on one shared table; returns the
    (allowed, remaining) of each as int64 arrays."""
    n_tiers = max(1, len(arrivals.tier_names))
    size = max(a.state_size for a in cl.algs)
    max_p = max(len(a.params) for a in cl.algs)
    kk = np.zeros(n_tiers, dtype=np.int64)
    pp = np.zeros((n_tiers, max_p), dtype=np.int64)
    fill_tier_rows(kk, pp, cl.algs)
    oks = np.zeros(len(todo), dtype=np.int64)
    rems = np.zeros(len(todo), dtype=np.int64)
    _oracle_layer(
        np.asarray(todo, dtype=np.int64),
        cl.keys,
        arrivals.tier.astype(np.int64),
        arrivals.time_us.astype(np.int64),
        arrivals.cost.astype(np.int64),
        kk,
        pp,
        size,
        cl.n_keys,
        oks,
        rems,
    )
    return oks, rems
