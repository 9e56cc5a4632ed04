"""Requests: what a client asks the gateway, what it is told, and the table of every request.

Rows ``0 .. n-1`` of a :class:`RequestTable` are the scenario's arrivals, with their draws
made before the run (:func:`ratesim.compile.draw_requests`); a request a process of the user's
hands to :meth:`ratesim.des.Gateway.handle` becomes the next row, with its draws made then,
one request at a time, from streams of its own (``"client:*"``), so that it shuffles none of
the scenario's draws. A retry of the scenario's clients (:mod:`ratesim.des.clients`) becomes
the next row too (:meth:`RequestTable.add_retry`), with draws by (request, attempt)
(:func:`ratesim.compile.draw_retries`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..compile import CompiledLayer, Draws, draw_retries, key_ids
from ..model.cluster import shard_of
from ..model.latency import apply_spikes, sample_us
from ..policy import layer_applies, render_key
from ..rng import Streams
from ..scenario import Scenario
from ..traffic import Arrivals


@dataclass(frozen=True)
class Request:
    """A request from a client: ``user`` code, ``tier`` and ``route`` names (from the
    scenario's population; empty: the first), and its ``cost`` in tokens (>= 1)."""

    user: int
    tier: str = ""
    route: str = ""
    cost: int = 1


class Decision(NamedTuple):
    """What the gateway answered, at ``decided_us`` (µs of true time)."""

    admitted: bool
    #: The rejecting layer's name (``None``: admitted).
    rejected_by: str | None
    decided_us: int
    #: When the rejecting layer says to retry, µs after the decision (0 if admitted, -1 never).
    retry_after_us: int
    #: The request's row in the request table (``World.data_rows`` maps it to the data's).
    row: int


class RequestTable:
    """Per-request inputs (arrival, node, draws, key ids) and outputs, as lists by row."""

    def __init__(
        self,
        scenario: Scenario,
        arrivals: Arrivals,
        draws: Draws,
        layers: list[CompiledLayer],
        seed: int,
    ) -> None:
        n = len(arrivals)
        self.scenario = scenario
        self.arrivals = arrivals
        self.layers = layers
        self.t: list[int] = arrivals.time_us.tolist()
        self.node: list[int] = draws.node.tolist()
        self.tier: list[int] = arrivals.tier.tolist()
        self.cost: list[int] = arrivals.cost.tolist()
        g = draws.lat_out_us.shape[1]
        self.out_us: list[list[int]] = [draws.lat_out_us[:, k].tolist() for k in range(g)]
        self.back_us: list[list[int]] = [draws.lat_back_us[:, k].tolist() for k in range(g)]
        self.service_us: list[list[int]] = [draws.service_us[:, k].tolist() for k in range(g)]
        self.backend_us: list[int] = draws.backend_us.tolist()
        self.keys: list[list[int]] = [cl.keys.tolist() for cl in layers]
        self.applies: list[list[bool] | None] = [
            None if cl.applies_np is None else cl.applies_np.tolist() for cl in layers
        ]
        self.shard: list[list[int]] = [
            list(cl.shard) if cl.shard is not None else [] for cl in layers
        ]
        # outputs
        self.outcome: list[list[int]] = [[0] * n for _ in layers]
        self.remaining: list[list[int]] = [[-1] * n for _ in layers]
        self.decided: list[int] = [-1] * n
        self.rejected_by: list[int] = [-1] * n
        self.pool_wait: list[int] = [0] * n
        self.held: list[int] = [0] * n  # µs held by shaping layers (ratesim.algorithms.shaping)
        self.retry_after: dict[int, int] = {}
        #: Each row's attempt (1: a first try) and the row of the user request it retries
        #: (its own row for a first try).
        self.attempt: list[int] = [1] * n
        self.origin: list[int] = list(range(n))
        # what requests added during the run need: their own columns and key tables
        self.added: dict[str, list[Any]] = {
            "time_us": [],
            "user": [],
            "tier": [],
            "route": [],
            "abusive": [],
        }
        self._dense: list[dict[int, int]] | None = None
        self._n_keys = [cl.n_keys for cl in layers]
        self._streams = Streams(seed)
        self._seed = seed

    def __len__(self) -> int:
        return len(self.t)

    def add(self, req: Request, now: int, node: int) -> int:
        """Append ``req``, arriving at ``now`` (µs) on ``node``; returns its row."""
        arr = self.arrivals
        tier = _code(req.tier, arr.tier_names, "tier")
        route = _code(req.route, arr.route_names, "route")
        if req.cost < 1:
            raise ValueError(f"Request.cost must be >= 1, got {req.cost}")
        i = len(self.t)
        for name, v in (("time_us", now), ("user", req.user), ("tier", tier), ("route", route)):
            self.added[name].append(v)
        self.added["abusive"].append(False)
        self.attempt.append(1)
        self.origin.append(i)
        self.t.append(now)
        self.node.append(node)
        self.tier.append(tier)
        self.cost.append(req.cost)
        self._draw(now)
        self._place(req, tier, route)
        self._outputs()
        return i

    def add_retry(self, origin: int, attempt: int, now: int) -> int:
        """Append attempt ``attempt`` of user request ``origin`` (a scenario row), arriving at
        ``now`` (µs): its user, tier, route, cost and keys are the origin's; returns its row."""
        arr = self.arrivals
        i = len(self.t)
        user = int(arr.user[origin])
        d = draw_retries(
            self.scenario,
            self._seed,
            np.array([origin]),
            np.array([attempt]),
            np.array([now]),
            np.array([i]),
            np.array([user]),
        )
        for name, v in (
            ("time_us", now),
            ("user", user),
            ("tier", self.tier[origin]),
            ("route", int(arr.route[origin])),
            ("abusive", bool(arr.abusive[origin])),
        ):
            self.added[name].append(v)
        self.attempt.append(attempt)
        self.origin.append(origin)
        self.t.append(now)
        self.node.append(int(d.node[0]))
        self.tier.append(self.tier[origin])
        self.cost.append(self.cost[origin])
        for k in range(len(self.out_us)):
            self.out_us[k].append(int(d.lat_out_us[0, k]))
            self.back_us[k].append(int(d.lat_back_us[0, k]))
            self.service_us[k].append(int(d.service_us[0, k]))
        if len(d.backend_us):
            self.backend_us.append(int(d.backend_us[0]))
        for pos in range(len(self.layers)):
            self.keys[pos].append(self.keys[pos][origin])
            ap = self.applies[pos]
            if ap is not None:
                ap.append(ap[origin])
            if self.shard[pos]:
                self.shard[pos].append(self.shard[pos][origin])
        self._outputs()
        return i

    def _outputs(self) -> None:
        """The output columns of a new row, not decided yet."""
        for pos in range(len(self.layers)):
            self.outcome[pos].append(0)
            self.remaining[pos].append(-1)
        self.decided.append(-1)
        self.rejected_by.append(-1)
        self.pool_wait.append(0)
        self.held.append(0)

    def _draw(self, now: int) -> None:
        sc = self.scenario
        g = len(self.out_us)
        if g:
            lat = sample_us(sc.network.latency, self._streams.get("client:latency"), 2 * g)
            if sc.network.spikes:
                lat = apply_spikes(sc.network.spikes, np.full(2 * g, now, dtype=np.int64), lat)
            assert sc.redis is not None
            svc = sample_us(sc.redis.service_time, self._streams.get("client:service"), g)
            for k in range(g):
                self.out_us[k].append(int(lat[2 * k]))
                self.back_us[k].append(int(lat[2 * k + 1]))
                self.service_us[k].append(int(svc[k]))
        if sc.backend is not None:
            self.backend_us.append(
                int(sample_us(sc.backend.service_time, self._streams.get("client:backend"), 1)[0])
            )

    def _place(self, req: Request, tier: int, route: int) -> None:
        """Key id, applicability and shard of the new row for every layer."""
        arr = self.arrivals
        if self._dense is None:
            self._dense = []
            for cl in self.layers:
                raw = key_ids(cl.spec, arr)
                self._dense.append(dict(zip(raw.tolist(), cl.keys.tolist(), strict=True)))
        one = Arrivals(
            np.zeros(1, dtype=np.int64),
            np.array([req.user]),
            np.array([tier]),
            np.array([route]),
            np.ones(1, dtype=np.int64),
            np.zeros(1, dtype=bool),
            arr.tier_names,
            arr.route_names,
        )
        shards = self.scenario.redis.shards if self.scenario.redis is not None else 1
        for pos, cl in enumerate(self.layers):
            raw_key = int(key_ids(cl.spec, one)[0])
            dense = self._dense[pos]
            if raw_key not in dense:
                dense[raw_key] = self._n_keys[pos]
                self._n_keys[pos] += 1
            self.keys[pos].append(dense[raw_key])
            ap = self.applies[pos]
            if ap is not None:
                ap.append(layer_applies(cl.spec, arr.route_names[route]))
            if cl.spec.scope == "global":
                tag = render_key(cl.spec.key, req.user, req.tier, req.route)
                if tag == "*":
                    tag = cl.spec.name
                self.shard[pos].append(
                    shard_of(f"rl:{{{tag}}}:{cl.spec.name}", shards) if shards > 1 else 0
                )

    def all_arrivals(self) -> tuple[Arrivals, np.ndarray | None]:
        """Every request's arrival, sorted by time (stable), and the order of the rows in it
        (``None``: no request was added, rows are as they are)."""
        arr = self.arrivals
        if not self.added["time_us"]:
            return arr, None
        cols = {
            "time_us": np.concatenate([arr.time_us, self.added["time_us"]]),
            "user": np.concatenate([arr.user, self.added["user"]]),
            "tier": np.concatenate([arr.tier, self.added["tier"]]),
            "route": np.concatenate([arr.route, self.added["route"]]),
            "cost": np.asarray(self.cost, dtype=np.int64),
            "abusive": np.concatenate([arr.abusive, np.array(self.added["abusive"], dtype=bool)]),
        }
        order = np.argsort(cols["time_us"], kind="stable")
        return Arrivals(
            **{name: c[order] for name, c in cols.items()},
            tier_names=arr.tier_names,
            route_names=arr.route_names,
            user_names=arr.user_names,
        ), order


def _code(name: str, names: tuple[str, ...], what: str) -> int:
    if not name:
        return 0
    if name not in names:
        raise ValueError(f"Request.{what} {name!r} is not one of the scenario's: {names}")
    return names.index(name)
