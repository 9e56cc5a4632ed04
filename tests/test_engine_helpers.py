"""Shared helpers for the simulation tests: hand-made arrivals, small scenarios, conservation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ratesim.model.backend import BackendSpec
from ratesim.model.latency import ConstantLatency
from ratesim.policy import LayerSpec, PolicySpec
from ratesim.results import Result
from ratesim.scenario import NetworkSpec, RedisSpec, Scenario, TopologySpec
from ratesim.traffic import Arrivals, PoissonTraffic, PopulationSpec


def make_arrivals(
    times_us: Sequence[int] | np.ndarray,
    users: Sequence[int] | np.ndarray | None = None,
    tiers: Sequence[int] | np.ndarray | None = None,
    tier_names: tuple[str, ...] = ("silver",),
    route_names: tuple[str, ...] = ("/",),
) -> Arrivals:
    """Arrivals at the given true times (µs), user 0 / tier 0 / route 0 / cost 1 by default."""
    t = np.asarray(times_us, dtype=np.int64)
    n = len(t)
    z = np.zeros(n, dtype=np.int64)
    return Arrivals(
        time_us=t,
        user=z if users is None else np.asarray(users, dtype=np.int64),
        tier=z if tiers is None else np.asarray(tiers, dtype=np.int64),
        route=z,
        cost=np.ones(n, dtype=np.int64),
        abusive=np.zeros(n, dtype=bool),
        tier_names=tier_names,
        route_names=route_names,
    )


def make_scenario(
    layers: list[LayerSpec],
    *,
    nodes: int = 1,
    duration_s: float = 1.0,
    latency_ms: float = 0.0,
    service_ms: float = 0.0,
    topology: dict[str, Any] | None = None,
    network: dict[str, Any] | None = None,
    redis: dict[str, Any] | None = None,
    population: PopulationSpec | None = None,
    rate_per_s: float = 100.0,
    backend: BackendSpec | None = None,
) -> Scenario:
    """A small scenario: constant latency and service time unless overridden."""
    topo = {"nodes": nodes, **(topology or {})}
    net = {"latency": ConstantLatency(ms=latency_ms), **(network or {})}
    red = {"service_time": ConstantLatency(ms=service_ms), **(redis or {})}
    return Scenario(
        name="test",
        duration_s=duration_s,
        topology=TopologySpec(**topo),
        network=NetworkSpec(**net),
        redis=RedisSpec(**red),
        policy=PolicySpec(layers=layers),
        traffic=PoissonTraffic(rate_per_s=rate_per_s),
        population=population or PopulationSpec(users=10),
        backend=backend,
    )


REJECTING = {"rejected", "fail_closed", "local_rejected"}


def check_conservation(r: Result) -> None:
    """Every arrival has exactly one final outcome, consistent across every view."""
    req = r.requests
    n = len(r.data.arrivals)
    assert len(req) == n
    assert r.totals["arrivals"] == n
    assert r.totals["admitted"] + r.totals["rejected"] == n
    assert (req["admitted"] == req["rejected_by"].isna()).all()
    assert (req["latency_us"] >= 0).all()
    names = r.layer_names
    for pos, name in enumerate(names):
        col = req[f"layer:{name}"].astype(str)
        here = req["rejected_by"] == name
        assert col[here].isin(REJECTING).all()
        later = names[pos + 1 :]
        for other in later:
            assert (req.loc[here, f"layer:{other}"] == "not_reached").all()
    ts = r.timeseries
    assert int(ts["arrivals"].sum()) == n
    assert int(ts["admitted"].sum()) == r.totals["admitted"]
    rejected_cols = sum(int(ts[f"rejected:{name}"].sum()) for name in names)
    assert rejected_cols == r.totals["rejected"]
    assert int(r.summary["rejected"].sum()) == r.totals["rejected"]
