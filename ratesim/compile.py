"""A scenario made ready to run: per-request draws and the compiled policy.

Both runners (the SimPy components of :mod:`ratesim.des` and the compiled runner of
:mod:`ratesim.fast`) and the oracle start from these: :func:`draw_requests` makes every random
draw of a run beyond its arrivals, in the documented order (see :mod:`ratesim.engine`), and
:func:`compile_policy` turns each layer into algorithms per tier and dense per-request key ids.
"""

from __future__ import annotations

import copy
from array import array
from dataclasses import dataclass, field

import numpy as np

from .algorithms import Algorithm, shapes
from .model import counter, retry
from .model.clock import ms_to_us, s_to_us
from .model.cluster import shard_of
from .model.latency import (
    AnyLatency,
    SpikeSpec,
    apply_spikes,
    draws_per_sample,
    sample_us,
    sample_us_from,
)
from .model.node import NodeAssigner, assign_nodes, assign_nodes_live, user_hash
from .model.topology import epoch_at, epoch_counts, follow_params, slot_fills, slot_of
from .policy import (
    LayerSpec,
    build_local_algorithms,
    build_tier_algorithms,
    layer_applies,
    render_key,
    state_key_fields,
)
from .rng import Streams
from .scenario import Scenario, ScenarioError
from .traffic import Arrivals


@dataclass
class Draws:
    """Everything random about each request beyond its arrival (see the module docstring)."""

    node: np.ndarray  # (n,) int64
    lat_out_us: np.ndarray  # (n, G) int64
    lat_back_us: np.ndarray  # (n, G) int64
    service_us: np.ndarray  # (n, G) int64
    backend_us: np.ndarray  # (n,) int64 base backend service times (empty without a backend)


def draw_requests(scenario: Scenario, arrivals: Arrivals, streams: Streams) -> Draws:
    """Draw node, latencies and service times for every request, in the documented order."""
    n = len(arrivals)
    nodes = scenario.topology.nodes
    lb = scenario.topology.load_balancer
    if scenario.topology.changes:
        at_us, counts = scenario.topology.change_tables()
        node = assign_nodes_live(
            lb, arrivals.user, arrivals.time_us, nodes, at_us, counts, streams.get("nodes")
        )
    else:
        node = assign_nodes(lb, arrivals.user, nodes, streams.get("nodes"))
    g = sum(1 for layer in scenario.policy.layers if layer.scope == "global")
    if g == 0 or scenario.redis is None:
        z = np.zeros((n, 0), dtype=np.int64)
        out, back, svc = z, z, z
    else:
        lat = sample_us(scenario.network.latency, streams.get("latency"), n * g * 2)
        lat = lat.reshape(n, g, 2)
        if scenario.network.spikes:
            t = np.repeat(arrivals.time_us, g * 2).reshape(n, g, 2)
            lat = apply_spikes(scenario.network.spikes, t, lat)
        out, back = lat[:, :, 0].copy(), lat[:, :, 1].copy()
        svc = sample_us(scenario.redis.service_time, streams.get("service"), n * g).reshape(n, g)
    backend = np.zeros(0, dtype=np.int64)
    if scenario.backend is not None:
        backend = sample_us(scenario.backend.service_time, streams.get("backend"), n)
    return Draws(node, out, back, svc, backend)


class ChunkDrawer:
    """:func:`draw_requests` in consecutive pieces of a run's arrivals: ``draw(arrivals)``
    makes the draws of the next piece, and the pieces' draws concatenate (row by row) to the
    one call on the whole run, whatever the cuts.

    Each stream is read as the one call reads it, strictly in order: ``"nodes"`` through
    :class:`ratesim.model.node.NodeAssigner`; ``"latency"``, ``"service"`` and ``"backend"``
    through :func:`ratesim.model.latency.sample_us`, whose ``rng.random((m, k))`` turns each
    64-bit output into one double in row-major order, so ``m`` samples for the piece's ``n``
    requests (``m = n * G * 2``, ``n * G``, ``n``) are the next ``m`` of the one call; spikes
    are applied by each request's own arrival time. Retries (``scenario.clients``) draw from
    counters instead (:func:`draw_retries`), not from here.
    """

    def __init__(self, scenario: Scenario, streams: Streams) -> None:
        self.scenario = scenario
        topo = scenario.topology
        at_us, counts = topo.change_tables()
        if not topo.changes:
            counts = counts[:0]
        self._nodes = NodeAssigner(
            topo.load_balancer, topo.nodes, at_us, counts, streams.get("nodes")
        )
        self._g = sum(1 for layer in scenario.policy.layers if layer.scope == "global")
        self._redis = self._g > 0 and scenario.redis is not None
        self._lat = streams.get("latency") if self._redis else None
        self._svc = streams.get("service") if self._redis else None
        self._backend = streams.get("backend") if scenario.backend is not None else None

    def draw(self, arrivals: Arrivals) -> Draws:
        """The draws of the next ``len(arrivals)`` requests of the run (see the class)."""
        n, g = len(arrivals), self._g
        sc = self.scenario
        node = self._nodes.piece(arrivals.user, arrivals.time_us)
        if not self._redis:
            z = np.zeros((n, 0), dtype=np.int64)
            out, back, svc = z, z, z
        else:
            assert self._lat is not None and self._svc is not None and sc.redis is not None
            lat = _samples(sc.network.latency, self._lat, n * g * 2).reshape(n, g, 2)
            _spike_rows(sc.network.spikes, arrivals.time_us, lat)
            out, back = lat[:, :, 0].copy(), lat[:, :, 1].copy()
            svc = _samples(sc.redis.service_time, self._svc, n * g).reshape(n, g)
        backend = np.zeros(0, dtype=np.int64)
        if self._backend is not None:
            assert sc.backend is not None
            backend = _samples(sc.backend.service_time, self._backend, n)
        return Draws(node, out, back, svc, backend)


#: Samples drawn per ``sample_us`` call by :class:`ChunkDrawer` (consecutive calls give the
#: one call's values; the cap bounds the float temporaries of a big chunk to a few MB).
SAMPLE_BATCH = 1 << 18


def _samples(spec: AnyLatency, rng: np.random.Generator, m: int) -> np.ndarray:
    """``sample_us(spec, rng, m)``, made ``SAMPLE_BATCH`` samples at a time."""
    out = np.empty(m, dtype=np.int64)
    for lo in range(0, m, SAMPLE_BATCH):
        hi = min(lo + SAMPLE_BATCH, m)
        out[lo:hi] = sample_us(spec, rng, hi - lo)
    return out


def _spike_rows(spikes: list[SpikeSpec], time_us: np.ndarray, lat: np.ndarray) -> None:
    """:func:`ratesim.model.latency.apply_spikes` in place on ``lat`` (rows = requests at the
    sorted ``time_us``): each spike, in list order, on the rows its window holds only."""
    for spike in spikes:
        lo, hi = np.searchsorted(time_us, [s_to_us(spike.start_s), s_to_us(spike.end_s)])
        if hi > lo:
            rows = lat[lo:hi]
            rows[...] = np.rint(rows * spike.factor).astype(np.int64) + ms_to_us(spike.add_ms)


def draw_retries(
    scenario: Scenario,
    seed: int,
    origin: np.ndarray,
    attempt: np.ndarray,
    time_us: np.ndarray,
    row: np.ndarray,
    user: np.ndarray,
) -> Draws:
    """The draws of retries: attempt ``attempt[j]`` (>= 2) of user request ``origin[j]``,
    arriving at ``time_us[j]`` as row ``row[j]`` of the run's request table, for ``user[j]``.

    Every number comes from :mod:`ratesim.model.counter` keyed by (seed, origin, attempt,
    stream, k), so it is the same whatever else retried and in whichever order the retries
    were made; the first attempts keep :func:`draw_requests`' draws. Per retry:

    * node: :func:`_retry_nodes` (a position among the nodes live at the retry's arrival,
      then the node there);
    * latencies: ``STREAM_LATENCY``, sample ``j = 2 * g + d`` (global layer ``g`` in policy
      order, ``d`` 0 out / 1 back) from numbers ``j * k .. j * k + k - 1`` (``k`` the spec's
      uniforms per sample), spikes applied by the retry's arrival time;
    * Redis service times: ``STREAM_SERVICE``, sample ``g`` from numbers ``g * k ..``;
    * backend base service time: ``STREAM_BACKEND``, numbers ``0 .. k - 1``.
    """
    m = len(origin)
    node = _retry_nodes(scenario, seed, origin, attempt, time_us, row, user)

    def samples(spec: object, stream: int, count: int) -> np.ndarray:
        k = draws_per_sample(spec)  # type: ignore[arg-type]
        out = np.zeros((m, count), dtype=np.int64)
        for j in range(count):
            u = np.empty((m, k), dtype=np.float64)
            for c in range(k):
                u[:, c] = counter.uniforms(seed, origin, attempt, stream, j * k + c)
            out[:, j] = sample_us_from(spec, u)  # type: ignore[arg-type]
        return out

    g = sum(1 for layer in scenario.policy.layers if layer.scope == "global")
    if g == 0 or scenario.redis is None:
        z = np.zeros((m, 0), dtype=np.int64)
        out, back, svc = z, z, z
    else:
        lat = samples(scenario.network.latency, counter.STREAM_LATENCY, 2 * g)
        if scenario.network.spikes:
            t = np.repeat(np.asarray(time_us, dtype=np.int64), 2 * g).reshape(m, 2 * g)
            lat = apply_spikes(scenario.network.spikes, t, lat)
        out, back = lat[:, 0::2].copy(), lat[:, 1::2].copy()
        svc = samples(scenario.redis.service_time, counter.STREAM_SERVICE, g)
    backend = np.zeros(0, dtype=np.int64)
    if scenario.backend is not None:
        backend = samples(scenario.backend.service_time, counter.STREAM_BACKEND, 1)[:, 0]
    return Draws(node, out, back, svc, backend)


def _retry_nodes(
    scenario: Scenario,
    seed: int,
    origin: np.ndarray,
    attempt: np.ndarray,
    time_us: np.ndarray,
    row: np.ndarray,
    user: np.ndarray,
) -> np.ndarray:
    """The node (slot) each retry arrives on: :func:`ratesim.model.retry.retry_position` among
    the nodes live at its arrival (``round_robin``: ``row % live``; ``random``:
    ``floor(u * live)``, ``u`` = number 0 of ``STREAM_NODE``; ``hash_user``: the user's hash
    mod ``live``), then :func:`ratesim.model.topology.slot_of` (the compiled runner does the
    same, from :func:`retry_node_tables`)."""
    lb = LB_CODES[scenario.topology.load_balancer]
    at_us, live, keys, slot = retry_node_tables(scenario)
    u = counter.uniforms(seed, origin, attempt, counter.STREAM_NODE, 0)
    hashes = user_hash(np.asarray(user, dtype=np.int64))
    out = np.empty(len(origin), dtype=np.int64)
    for j in range(len(origin)):
        e = epoch_at(int(time_us[j]), at_us)
        p = retry.retry_position(lb, int(row[j]), int(hashes[j]), float(u[j]), int(live[e]))
        out[j] = slot_of(keys, slot, len(live), e, p)
    return out


def retry_node_tables(
    scenario: Scenario,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(at_us, live, keys, slot)``: the node schedule's change instants, each epoch's live
    count and :func:`ratesim.model.topology.slot_fills`' tables (one epoch without changes)."""
    topo = scenario.topology
    at_us, counts = topo.change_tables()
    keys, slot = slot_fills(topo.nodes, counts)
    return at_us, epoch_counts(topo.nodes, counts), keys, slot


#: The load balancers' codes (:func:`ratesim.model.retry.retry_position`).
LB_CODES = {
    "round_robin": retry.LB_ROUND_ROBIN,
    "random": retry.LB_RANDOM,
    "hash_user": retry.LB_HASH_USER,
}


@dataclass
class CompiledClients:
    """The scenario's clients ready to run: a policy row per tier code (``table``, the
    ``CL_*`` columns of :mod:`ratesim.model.retry`, µs) and, for the retry budget, the user
    requests' arrival times by tier (``first_t[t_off[c]:t_off[c + 1]]``, sorted, tier ``c``)."""

    table: np.ndarray  # (tiers, CL_COLS) int64
    first_t: np.ndarray  # (n,) int64
    t_off: np.ndarray  # (tiers + 1,) int64
    seed: int

    def requests_by(self, tier: int, t_us: int) -> int:
        """How many of ``tier``'s user requests arrived at or before ``t_us``."""
        lo, hi = int(self.t_off[tier]), int(self.t_off[tier + 1])
        return int(np.searchsorted(self.first_t[lo:hi], t_us, side="right"))


def compile_clients(scenario: Scenario, arrivals: Arrivals, seed: int) -> CompiledClients | None:
    """The clients of ``scenario`` for its ``arrivals`` (``None``: no client ever retries)."""
    spec = scenario.clients
    if spec is None or not spec.any_retries:
        return None
    names = arrivals.tier_names or ("",)
    table = np.full((len(names), retry.CL_COLS), -1, dtype=np.int64)
    for c, name in enumerate(names):
        pol = spec.policy_of(name)
        for col, reaction in ((retry.CL_REJECT, pol.on_reject), (retry.CL_ERROR, pol.on_error)):
            table[c, col : col + 3] = _reaction_row(reaction)
        table[c, retry.CL_MAX_ATTEMPTS] = pol.max_attempts
        table[c, retry.CL_BUDGET] = -1 if pol.budget_pct is None else pol.budget_pct
        table[c, retry.CL_DEADLINE] = -1 if pol.deadline_ms is None else ms_to_us(pol.deadline_ms)
    order = np.argsort(arrivals.tier, kind="stable")
    counts = np.bincount(arrivals.tier.astype(np.int64), minlength=len(names))
    t_off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    first_t = np.ascontiguousarray(arrivals.time_us[order], dtype=np.int64)
    return CompiledClients(table, first_t, t_off, seed)


def _reaction_row(r: object) -> tuple[int, int, int]:
    """(kind, p1, p2) of a retry reaction, in µs (see :func:`ratesim.model.retry.wait_us`)."""
    from .clients import BackoffRetry, FixedRetry, ImmediateRetry, RetryAfterRetry

    if isinstance(r, ImmediateRetry):
        return retry.RK_IMMEDIATE, 0, 0
    if isinstance(r, FixedRetry):
        return retry.RK_FIXED, ms_to_us(r.delay_ms), 0
    if isinstance(r, RetryAfterRetry):
        return retry.RK_RETRY_AFTER, ms_to_us(r.fallback_ms), ms_to_us(r.max_wait_ms)
    if isinstance(r, BackoffRetry):
        return retry.RK_BACKOFF, ms_to_us(r.base_ms), ms_to_us(r.cap_ms)
    return retry.RK_NONE, 0, 0


def key_ids(layer: LayerSpec, arrivals: Arrivals) -> np.ndarray:
    """An int64 state key per request for ``layer`` (requests with the same key share state).

    Tiers with their own parameters get their own state, as if the tier were part of the key.
    """
    fields = set(state_key_fields(layer))
    n_t = max(1, len(arrivals.tier_names))
    n_r = max(1, len(arrivals.route_names))
    k = np.zeros(len(arrivals), dtype=np.int64)
    if "user" in fields:
        k += arrivals.user.astype(np.int64) * (n_t * n_r)
    if "tier" in fields:
        k += arrivals.tier.astype(np.int64) * n_r
    if "route" in fields:
        k += arrivals.route.astype(np.int64)
    return k


def shards_of(layer: LayerSpec, arrivals: Arrivals, keys: np.ndarray, shards: int) -> np.ndarray:
    """The Redis shard of each request's key: ``key_slot`` of ``rl:{<tag>}:<layer>`` where the
    hash tag is the rendered key (or the layer name for ``"*"``)."""
    if shards == 1 or len(arrivals) == 0:
        return np.zeros(len(arrivals), dtype=np.int64)
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    out = np.empty(len(uniq), dtype=np.int64)
    for j, i in enumerate(first):
        tag = render_key(
            layer.key,
            int(arrivals.user[i]),
            arrivals.tier_names[arrivals.tier[i]] if arrivals.tier_names else "",
            arrivals.route_names[arrivals.route[i]] if arrivals.route_names else "",
        )
        if tag == "*":
            tag = layer.name
        out[j] = shard_of(f"rl:{{{tag}}}:{layer.name}", shards)
    return out[inverse.reshape(-1)]


@dataclass
class CompiledLayer:
    """A layer ready to run: algorithms per tier code, per-request key ids and applicability.

    ``keys[i]`` (int64) is a dense key id in ``0 .. n_keys - 1`` (requests with the same id
    share state), so state tables can be lists (or array rows) indexed by id.
    ``applies_np[i]`` says whether the layer applies to request ``i`` (``None``: to all).
    A ``local_share: follow`` layer has ``follow[e][tier]``: its algorithm in epoch ``e`` of
    the node schedule (its refill shared over that epoch's live nodes), and ``follow_at_us``
    the schedule's change instants (:func:`ratesim.model.topology.epoch_at`).
    """

    spec: LayerSpec
    algs: list[Algorithm]
    local_algs: list[Algorithm] | None
    keys: np.ndarray
    n_keys: int
    applies_np: np.ndarray | None
    shard: array[int] | None
    gidx: int
    follow: list[list[Algorithm]] | None = None
    follow_at_us: np.ndarray | None = None
    #: per tier code: the layer holds a request its algorithm admits with a delay (an
    #: enforcing layer whose algorithm shapes, ``ratesim.algorithms.shaping``); ``local_holds``
    #: the same for its local fallback
    holds: list[bool] = field(default_factory=list)
    local_holds: list[bool] = field(default_factory=list)

    def node_algorithm(self, tier: int, t_us: int) -> Algorithm:
        """The algorithm a node layer runs for ``tier`` at true time ``t_us`` (µs)."""
        if self.follow is None:
            return self.algs[tier]
        assert self.follow_at_us is not None
        return self.follow[epoch_at(t_us, self.follow_at_us)][tier]


def compile_policy(scenario: Scenario, arrivals: Arrivals) -> list[CompiledLayer]:
    """Build every layer's algorithms and per-request keys/shards for ``arrivals``."""
    shards = scenario.redis.shards if scenario.redis is not None else 1
    out = layer_templates(scenario, arrivals.tier_names or ("",))
    for cl in out:
        layer = cl.spec
        keys = key_ids(layer, arrivals)
        cl.applies_np = applies_of(layer, arrivals)
        if layer.scope == "global":
            cl.shard = _q(shards_of(layer, arrivals, keys, shards))
        cl.n_keys, cl.keys = dense_codes(keys)
    return out


def dense_codes(keys: np.ndarray) -> tuple[int, np.ndarray]:
    """``(len(u), inverse)`` of ``u, inverse = np.unique(keys, return_inverse=True)`` (int64
    ``keys``, 1-D; ``inverse`` int64): each key's rank among the distinct keys.

    Keys are codes of users, tiers and routes, so they span little more than the requests:
    then a presence table and its running count give the ranks in two linear passes instead
    of a sort (at most about 9 bytes per possible key; a wider span falls back to the sort)."""
    n = len(keys)
    if n == 0:
        return 0, np.zeros(0, dtype=np.int64)
    lo = int(keys.min())
    span = int(keys.max()) - lo + 1
    if span > 2 * n + 65_536:
        uniq, inverse = np.unique(keys, return_inverse=True)
        return len(uniq), inverse.reshape(-1).astype(np.int64)
    offset = keys - lo
    present = np.zeros(span, dtype=np.bool_)
    present[offset] = True
    rank = np.cumsum(present, dtype=np.int64)
    return int(rank[-1]), rank[offset] - 1


def layer_templates(scenario: Scenario, tier_names: tuple[str, ...]) -> list[CompiledLayer]:
    """Every layer's run-constant part (algorithms per tier code, local fallbacks, the global
    layer index, ``follow`` tables, ``holds``), its per-request arrays still empty (``keys``
    of length 0, ``n_keys`` 0, ``applies_np`` and ``shard`` ``None``)."""
    out = []
    g = 0
    for layer in scenario.policy.layers:
        try:
            algs = build_tier_algorithms(layer, tier_names)
            local = (
                build_local_algorithms(layer, tier_names, scenario.topology.nodes)
                if layer.scope == "global" and layer.failure_mode == "local"
                else None
            )
        except (ValueError, TypeError) as exc:
            raise ScenarioError(f"layer {layer.name!r}: cannot build its algorithm: {exc}") from exc
        gidx = -1
        if layer.scope == "global":
            gidx = g
            g += 1
        empty = np.zeros(0, dtype=np.int64)
        cl = CompiledLayer(layer, algs, local, empty, 0, None, None, gidx)
        if layer.local_share == "follow":
            _follow(cl, scenario, tier_names)
        enforce = layer.mode == "enforce"
        cl.holds = [enforce and shapes(a) for a in algs]
        cl.local_holds = [enforce and shapes(a) for a in local or ()]
        out.append(cl)
    return out


def applies_of(layer: LayerSpec, arrivals: Arrivals) -> np.ndarray | None:
    """Whether ``layer`` applies to each request (booleans; ``None``: to every request)."""
    if layer.routes is None:
        return None
    codes = [c for c, r in enumerate(arrivals.route_names) if layer_applies(layer, r)]
    return np.isin(arrivals.route, codes)


def can_hold(layers: list[CompiledLayer]) -> bool:
    """Whether a layer of the run can hold a request (shaping, :attr:`CompiledLayer.holds`):
    then the runners report ``RunData.held_us``."""
    return any(any(cl.holds) or any(cl.local_holds) for cl in layers)


def _follow(cl: CompiledLayer, scenario: Scenario, tier_names: tuple[str, ...]) -> None:
    """Give a ``local_share: follow`` layer its algorithm per epoch and tier (the refill of
    each shared over the epoch's live nodes, :func:`ratesim.model.topology.follow_params`)."""
    at_us, counts = scenario.topology.change_tables()
    rates = [float(cl.spec.algorithm_for(t).rate) for t in tier_names]  # type: ignore[attr-defined]
    cl.follow = []
    for members in epoch_counts(scenario.topology.nodes, counts):
        row = []
        for alg, rate in zip(cl.algs, rates, strict=True):
            shared = copy.copy(alg)
            # the same bucket with its refill shared: only the cached kernel parameters differ
            shared._cache_params(follow_params(alg.params, rate, int(members)))  # type: ignore[attr-defined]
            row.append(shared)
        cl.follow.append(row)
    cl.follow_at_us = at_us


def _q(values: np.ndarray) -> array[int]:
    """``values`` as a flat ``array('q')`` (items read back as Python ints)."""
    out = array("q")
    out.frombytes(np.ascontiguousarray(values, dtype=np.int64).tobytes())
    return out
