"""The tables behind :mod:`ratesim.plots`: what each figure draws, as pandas DataFrames.

Every frame is indexed like ``Result.timeseries`` (bin start ``time_s``, seconds) and holds
counts per bin or shares (0..1), never rates: the plots divide by the bin width. Kept apart from
the drawing so a notebook can print or test the numbers a figure shows.

* :func:`oracle_gap_frame` - over-admitted / wrongly rejected requests per bin;
* :func:`oracle_gap_by_layer` - the same, split by the layer whose decision differed;
* :func:`remaining_share_frame` - the quota a layer's requests left, as a share of capacity;
* :func:`node_frame` - arrivals and admissions per gateway node per bin.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .outcomes import LOCAL_ALLOWED, LOCAL_REJECTED

__all__ = [
    "bin_width_s",
    "node_frame",
    "oracle_gap_by_layer",
    "oracle_gap_frame",
    "remaining_share_frame",
]


def bin_width_s(result: Any) -> float:
    """Width of one time-series bin in seconds (the scenario's ``interval_s``, else the index step)."""
    width = getattr(getattr(result, "scenario", None), "interval_s", None)
    if isinstance(width, int | float) and width > 0:
        return float(width)
    index = np.asarray(result.timeseries.index, dtype=float)
    if len(index) >= 2:
        return float(np.median(np.diff(index)))
    return 1.0


def _bins(result: Any, time_us: np.ndarray) -> np.ndarray:
    """The bin start (s) of each request time (µs), on the time series' grid."""
    width = bin_width_s(result)
    return np.floor(time_us.astype(float) / 1e6 / width) * width


def _oracle_of(result: Any) -> Any:
    oracle = getattr(result, "oracle", None)
    if oracle is None:
        raise ValueError("result.oracle is None: this run has no oracle to compare with")
    return oracle


def _aligned(req: pd.DataFrame, ref: pd.DataFrame) -> bool:
    """True when the oracle's rows are the run's arrivals in the same order."""
    return len(req) == len(ref) and np.array_equal(
        req["time_us"].to_numpy(), ref["time_us"].to_numpy()
    )


def oracle_gap_frame(result: Any) -> pd.DataFrame:
    """Over-admitted and wrongly rejected requests per time bin, against the oracle run.

    A request is *over-admitted* when the simulated system admits it and the oracle (perfect
    clocks, no latency, one global state) rejects it, *wrongly rejected* in the opposite case.
    Rows of ``result.requests`` and ``result.oracle.requests`` are matched by position (the
    oracle replays the same arrivals in the same order); if they do not line up, only the net
    difference of admissions per bin is available and it is split by sign.
    Returns counts (not rates) indexed like ``result.timeseries``.
    """
    oracle = _oracle_of(result)
    index = result.timeseries.index
    req, ref = result.requests, oracle.requests
    if _aligned(req, ref):
        mine = req["admitted"].to_numpy(dtype=bool)
        theirs = ref["admitted"].to_numpy(dtype=bool)
        bins = _bins(result, req["time_us"].to_numpy())
        frame = pd.DataFrame({"bin": bins, "over": mine & ~theirs, "wrong": ~mine & theirs})
        counts = frame.groupby("bin")[["over", "wrong"]].sum()
        counts = counts.reindex(np.asarray(index, dtype=float), fill_value=0)
        over, wrong = counts["over"].to_numpy(), counts["wrong"].to_numpy()
    else:
        net = result.timeseries["admitted"].to_numpy(dtype=np.int64) - oracle.timeseries[
            "admitted"
        ].reindex(index, fill_value=0).to_numpy(dtype=np.int64)
        over, wrong = np.clip(net, 0, None), np.clip(-net, 0, None)
    return pd.DataFrame(
        {"over_admitted": over.astype(np.int64), "wrongly_rejected": wrong.astype(np.int64)},
        index=index,
    )


def _layer_counts(bins: np.ndarray, layers: np.ndarray, mask: np.ndarray) -> pd.DataFrame:
    """Counts of ``mask`` per (bin, layer): a column per layer."""
    frame = pd.DataFrame({"bin": bins[mask], "layer": layers[mask].astype(str)})
    return frame.groupby(["bin", "layer"]).size().unstack("layer", fill_value=0)


def oracle_gap_by_layer(result: Any) -> pd.DataFrame | None:
    """Per layer and bin: ``over:<layer>``, ``wrong:<layer>`` and ``net:<layer>`` (counts).

    An over-admission is charged to the layer that rejects it in the oracle (the limit the
    system failed to apply), a wrong rejection to the layer that rejected it in the system;
    ``net`` is over minus wrong. Layers come from ``scenario.policy.layers`` when the result has
    one, else from the ``rejected_by`` values seen. ``None`` when the rows of the run and its
    oracle do not line up (then only :func:`oracle_gap_frame`'s totals are known).
    """
    oracle = _oracle_of(result)
    req, ref = result.requests, oracle.requests
    if not _aligned(req, ref):
        return None
    mine = req["admitted"].to_numpy(dtype=bool)
    theirs = ref["admitted"].to_numpy(dtype=bool)
    bins = _bins(result, req["time_us"].to_numpy())
    over = _layer_counts(bins, ref["rejected_by"].to_numpy(dtype=object), mine & ~theirs)
    wrong = _layer_counts(bins, req["rejected_by"].to_numpy(dtype=object), ~mine & theirs)
    policy = getattr(getattr(result, "scenario", None), "policy", None)
    names = [str(layer.name) for layer in getattr(policy, "layers", None) or ()]
    names += [str(n) for n in [*over.columns, *wrong.columns] if str(n) not in names]
    index = np.asarray(result.timeseries.index, dtype=float)
    cols: dict[str, np.ndarray] = {}
    for name in names:
        o = over[name].reindex(index, fill_value=0) if name in over else pd.Series(0, index)
        w = wrong[name].reindex(index, fill_value=0) if name in wrong else pd.Series(0, index)
        cols[f"over:{name}"] = o.to_numpy(dtype=np.int64)
        cols[f"wrong:{name}"] = w.to_numpy(dtype=np.int64)
        cols[f"net:{name}"] = cols[f"over:{name}"] - cols[f"wrong:{name}"]
    return pd.DataFrame(cols, index=result.timeseries.index)


def _layer_capacity(layer: Any, tier: str) -> int | None:
    """The capacity at rest of ``layer`` for a request of ``tier`` (``Decision.limit``);
    ``None`` for a guard (a concurrency limit, a circuit breaker), which reports no quota."""
    limit = getattr(layer.algorithm_for(tier).build(), "limit", None)
    return None if limit is None else int(limit)


def _local_capacity(layer: Any, tier: str, nodes: int) -> int:
    """The capacity of ``layer``'s node-local fallback limiter for ``tier``
    (:func:`ratesim.policy.build_local_algorithms`: scaled by ``local_share``, else 1/nodes)."""
    share = layer.local_share if layer.local_share is not None else 1.0 / nodes
    return int(layer.algorithm_for(tier).scaled(share).build().limit)


def remaining_share_frame(result: Any) -> pd.DataFrame:
    """Per layer and bin: the mean share (0..1) of its key's capacity that the requests the
    layer decided in the bin left, each request on its own key (its user's, its route's, the
    site's: whatever the layer's ``key`` template names) and divided by that key's capacity (its
    tier's, for a tiered layer; for a decision of a ``failure_mode="local"`` fallback, the
    node-local limiter's). 1 is an idle key, 0 an exhausted one; NaN where the layer decided
    nothing in the bin. Columns are layer names.

    Reads the per-request arrays of a :class:`~ratesim.results.Result` (``result.data``). A
    result without them falls back to the seed's ``bucket_remaining_gauge``
    (``remaining:<layer>``: the key of the bin's *last* request) divided by the layer's untiered
    capacity.
    """
    ts = result.timeseries
    layers = list(getattr(getattr(result.scenario, "policy", None), "layers", None) or ())
    data = getattr(result, "data", None)
    out: dict[str, np.ndarray] = {}
    if data is not None and layers:
        tiers = result.requests["tier"].astype(str).to_numpy()
        bins = _bins(result, result.requests["time_us"].to_numpy())
        index = np.asarray(ts.index, dtype=float)
        outcomes = getattr(data, "outcomes", None)
        nodes = int(getattr(getattr(result.scenario, "topology", None), "nodes", 1) or 1)
        for pos, layer in enumerate(layers):
            rem = np.asarray(data.remaining[:, pos], dtype=float)
            caps = {t: _layer_capacity(layer, t) for t in np.unique(tiers)}
            if None in caps.values():
                continue  # a guard: no quota to show
            cap = np.array([caps[t] for t in tiers], dtype=float)
            if outcomes is not None and layer.failure_mode == "local":
                # a node-local fallback decision reports its own limiter's remaining figure:
                # divide it by that limiter's capacity (the layer's, scaled by local_share)
                fallback = np.isin(outcomes[:, pos], (LOCAL_ALLOWED, LOCAL_REJECTED))
                local = {t: _local_capacity(layer, t, nodes) for t in np.unique(tiers)}
                cap = np.where(fallback, [local[t] for t in tiers], cap)
            share = rem / cap
            sel = rem >= 0  # -1: the layer gave no figure (never reached, failure mode)
            mean = pd.Series(share[sel]).groupby(bins[sel]).mean()
            out[str(layer.name)] = mean.reindex(index).to_numpy(dtype=float)
    else:
        by_name = {str(layer.name): layer for layer in layers}
        for col in ts.columns:
            if str(col).startswith("remaining:"):
                name = str(col)[len("remaining:") :]
                untiered = _layer_capacity(by_name[name], "") if name in by_name else None
                if untiered is not None:
                    out[name] = ts[col].to_numpy(dtype=float) / untiered
    return pd.DataFrame(out, index=ts.index)


def node_frame(result: Any) -> pd.DataFrame:
    """Arrivals and admissions per gateway node and bin: columns ``arrivals:<node>`` and
    ``admitted:<node>`` (counts), one pair per node that received any request."""
    req = result.requests
    bins = _bins(result, req["time_us"].to_numpy())
    frame = pd.DataFrame(
        {"bin": bins, "node": req["node"].to_numpy(), "admitted": req["admitted"].to_numpy()}
    )
    grouped = frame.groupby(["bin", "node"])["admitted"]
    arrivals = grouped.size().unstack("node", fill_value=0)
    admitted = grouped.sum().unstack("node", fill_value=0)
    index = np.asarray(result.timeseries.index, dtype=float)
    cols: dict[str, np.ndarray] = {}
    for node in sorted(arrivals.columns):
        cols[f"arrivals:{node}"] = arrivals[node].reindex(index, fill_value=0).to_numpy(np.int64)
        cols[f"admitted:{node}"] = admitted[node].reindex(index, fill_value=0).to_numpy(np.int64)
    return pd.DataFrame(cols, index=result.timeseries.index)
