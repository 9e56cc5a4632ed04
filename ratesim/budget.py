"""Is a run small enough to start? ``check_run_size(scenario)`` answers before anything is drawn.

A scenario whose every field is in its domain (:mod:`ratesim.bounds`) can still describe a run
no machine can hold (a flash crowd peaking at 10**9 requests per second), or one whose events
reach past the time range the kernels keep exact (a day-long Redis service time behind a
thousand queued commands). :func:`check_run_size` estimates three things from the scenario
alone and raises :class:`~ratesim.scenario.ScenarioError` with the number and how to reduce it:

* **requests**: the expected arrivals ``m`` (the traffic's cumulative rate at ``duration_s``; an
  MMPP at its highest rate; a trace: its row count), taken as ``m + 10 sqrt(m) + 10`` so that a
  Poisson count exceeds it with probability below 1e-20;
* **memory**: ``BASE_BYTES + requests * (BYTES_PER_REQUEST + layers * BYTES_PER_REQUEST_LAYER)`` (measured on
  both engines, end to end through ``ratesim run``, with a margin) + users + limiter state
  (keys x integers per key x 8 bytes, per node for node-scoped layers and local fallbacks, per
  failover snapshot for global ones) + time-series bins; refused above the memory budget:
  ``max_bytes``, else the environment variable ``RATESIM_MAX_MEMORY`` (bytes, or with a suffix
  ``K``, ``M``, ``G``, ``T``), else 80 % of the machine's memory (its cgroup limit, if lower);
* **event horizon**: the latest true instant an event can have (derivation in
  :mod:`ratesim.bounds`), refused at ``2**49`` µs or more.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .bounds import MAX_HORIZON_US
from .model.latency import max_sample_ms, max_spiked_ms
from .policy import LayerSpec
from .scenario import Scenario, ScenarioError
from .traffic import MMPPTraffic, TraceTraffic
from .traffic.intensity import PeriodicRate, PiecewiseLinearRate, intensity_of

__all__ = [
    "BYTES_PER_CHUNK_REQUEST",
    "BYTES_PER_REQUEST",
    "BYTES_PER_REQUEST_LAYER",
    "RunSize",
    "check_run_size",
    "check_stream_size",
    "estimate_run_size",
    "estimate_stream_size",
    "memory_budget",
]

#: Peak bytes per request with no layer, and per request and layer (measured: about 320 and 70
#: through ``ratesim run`` on 10**6 requests, either engine).
BYTES_PER_REQUEST = 400
BYTES_PER_REQUEST_LAYER = 100
#: A trace row while it is parsed (text cells as Python strings).
BYTES_PER_TRACE_ROW = 300
#: Population arrays per user (weights, their cumulative sum, tier, scraper flag).
BYTES_PER_USER = 48
#: One integer of limiter state (int64 in the fast engine, a list slot in the event engine).
BYTES_PER_STATE_INT = 8
#: Time-series bytes per bin: a few run-wide columns plus four per layer, with temporaries.
BYTES_PER_BIN = 8 * 16
BYTES_PER_BIN_LAYER = 8 * 8
#: The interpreter with numpy, pandas, numba and the compiled engine loaded (measured: 275 MB).
BASE_BYTES = 300 * 10**6
#: Budget when the machine's memory cannot be read.
FALLBACK_BUDGET = 8 * 2**30
ENV_BUDGET = "RATESIM_MAX_MEMORY"


class RunSize:
    """What :func:`estimate_run_size` found: requests, bytes and the event horizon (µs), each
    with a short account of where it comes from."""

    def __init__(self) -> None:
        self.requests = 0.0
        self.requests_from = ""
        self.bytes = 0.0
        self.bytes_parts: dict[str, float] = {}
        self.horizon_us = 0.0
        self.horizon_parts: dict[str, float] = {}


def _human_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def memory_budget() -> int:
    """The memory budget in bytes (see the module docstring for where it comes from)."""
    text = os.environ.get(ENV_BUDGET, "").strip()
    if text:
        factors = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        factor = factors.get(text[-1].upper(), 1)
        number = text[:-1] if factor != 1 else text
        try:
            value = float(number) * factor
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ScenarioError(
                f"{ENV_BUDGET}={text!r} is not a memory size (give bytes, or a number with K, M, "
                "G or T, e.g. 16G)"
            )
        return int(value)
    return _machine_memory()


def _machine_memory() -> int:
    total: int | None = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total or int(limit), int(limit))
    except OSError:
        pass
    return int(0.8 * total) if total else FALLBACK_BUDGET


def _trace_rows(traffic: TraceTraffic) -> int:
    """The number of rows in a trace file (Parquet: its metadata; CSV: its line count)."""
    path = Path(traffic.path)
    try:
        if traffic.format == "parquet" or path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return int(pq.read_metadata(path).num_rows)
        from .traffic.trace import _open_binary

        lines = 0
        with _open_binary(path) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                lines += block.count(b"\n")
        return lines + 1
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"{path}: cannot read the trace: {exc}") from None


def _requests(scenario: Scenario, size: RunSize) -> float:
    traffic = scenario.traffic
    duration = scenario.duration_s
    if isinstance(traffic, TraceTraffic):
        size.requests_from = f"the rows of {traffic.path}"
        return float(_trace_rows(traffic))
    if isinstance(traffic, MMPPTraffic):
        size.requests_from = f"an MMPP at its highest rate for {duration:g} s"
        mean = max(traffic.rates_per_s) * duration
    else:
        size.requests_from = f"{traffic.kind} traffic over {duration:g} s"
        mean = intensity_of(traffic).cumulative(duration)
    # A Poisson count exceeds m + 10 sqrt(m) + 10 with probability below 1e-20.
    return (mean + 10.0 * math.sqrt(mean) + 10.0) * _attempts(scenario)


def _attempts(scenario: Scenario) -> int:
    """The most attempts a user request can make (1 without clients that retry)."""
    clients = scenario.clients
    if clients is None or not clients.any_retries:
        return 1
    return max(p.max_attempts for p in [clients, *clients.tiers.values()])


def _keys(layer: LayerSpec, scenario: Scenario, requests: float) -> float:
    """Distinct state keys a layer can have (at most one per request)."""
    from .policy import state_key_fields

    if isinstance(scenario.traffic, TraceTraffic):
        return requests
    pop = scenario.population
    sizes = {"user": pop.users, "tier": len(pop.tiers), "route": len(pop.routes)}
    keys = 1.0
    for field in state_key_fields(layer):
        keys *= sizes[field]
    return min(keys, requests)


def _state_ints(scenario: Scenario, requests: float) -> float:
    nodes = scenario.topology.slots
    failovers = len(scenario.redis.failovers) if scenario.redis is not None else 0
    total = 0.0
    for layer in scenario.policy.layers:
        per_key = max(layer.algorithm_for(t).build().state_size for t in ["", *layer.tiers])
        copies = nodes if layer.scope == "node" else 1 + failovers
        if layer.scope == "global" and layer.failure_mode == "local":
            copies += nodes
        total += _keys(layer, scenario, requests) * per_key * copies
    return total


def _memory(scenario: Scenario, size: RunSize) -> None:
    n = size.requests
    layers = len(scenario.policy.layers)
    parts = size.bytes_parts
    parts["interpreter and libraries"] = float(BASE_BYTES)
    parts["requests"] = n * (BYTES_PER_REQUEST + layers * BYTES_PER_REQUEST_LAYER)
    if isinstance(scenario.traffic, TraceTraffic):
        parts["trace parsing"] = n * BYTES_PER_TRACE_ROW
    else:
        parts["users"] = float(scenario.population.users * BYTES_PER_USER)
    parts["limiter state"] = _state_ints(scenario, n) * BYTES_PER_STATE_INT
    bins = math.ceil(scenario.duration_us / scenario.interval_us)
    parts["time series"] = float(bins) * (BYTES_PER_BIN + layers * BYTES_PER_BIN_LAYER)
    size.bytes = sum(parts.values())


def _horizon(scenario: Scenario, size: RunSize) -> None:
    """The latest true instant (µs) an event can have; see :mod:`ratesim.bounds`."""
    parts = size.horizon_parts
    parts["duration_s"] = float(scenario.duration_us)
    layers = scenario.policy.layers
    global_layers = [la for la in layers if la.scope == "global"]
    redis = scenario.redis
    if global_layers and redis is not None:
        net = scenario.network
        lat_us = max_spiked_ms(net.latency, net.spikes) * 1e3
        svc_us = max_sample_ms(redis.service_time) * 1e3
        parts["network.pool_max_wait_ms"] = net.pool_max_wait_ms * 1e3
        # Per global layer: the caller waits at most its timeout; latencies and a service time
        # on top cover a refused reply's round trip and a script reload (NOSCRIPT).
        parts["global layers' timeouts and round trips"] = sum(
            la.timeout_ms * 1e3 + 3 * lat_us + svc_us for la in global_layers
        )
        commands = size.requests * len(global_layers) + scenario.topology.nodes * len(
            redis.failovers
        )
        # One FIFO thread per shard: a command may wait for every earlier command's service.
        parts["Redis queue (commands x largest redis.service_time)"] = commands * svc_us
    waits = [la.algorithm.max_wait_s * 1e6 for la in layers if la.algorithm.kind == "concurrency"]
    parts["concurrency max_wait_s"] = float(sum(waits))
    backend = scenario.backend
    if backend is not None:
        base_us = max_sample_ms(backend.service_time) * 1e3
        # Every request may be in flight at once: the load factor slows each by that count.
        slowdown = 1.0 + backend.load_factor * max(size.requests - 1, 0) / backend.servers
        parts["backend service (largest service_time x load slowdown)"] = base_us * slowdown
    retries = _attempts(scenario) - 1
    if retries:
        assert scenario.clients is not None
        # each retry waits at most the longest wait, then makes the whole path again
        path_us = sum(parts.values()) - parts["duration_s"]
        wait_us = scenario.clients.longest_wait_ms() * 1e3 + 1
        parts["clients' retries (max_attempts - 1) x (wait + path)"] = retries * (wait_us + path_us)
    size.horizon_us = sum(parts.values())


def estimate_run_size(scenario: Scenario) -> RunSize:
    """Requests, peak memory (bytes) and event horizon (µs) of a run of ``scenario``."""
    size = RunSize()
    size.requests = _requests(scenario, size)
    _memory(scenario, size)
    _horizon(scenario, size)
    return size


def _largest(parts: dict[str, float]) -> str:
    name, value = max(parts.items(), key=lambda kv: kv[1])
    return f"{name}: {value:.3g}"


def _over_budget(size: RunSize, budget: int) -> str:
    """The clause of a too-large message: the estimate, the budget and the largest part."""
    part, value = max(size.bytes_parts.items(), key=lambda kv: kv[1])
    return (
        f"need about {_human_bytes(size.bytes)} of memory, more than the budget of "
        f"{_human_bytes(budget)} (the {part} take {_human_bytes(value)})"
    )


def check_run_size(scenario: Scenario, *, max_bytes: int | None = None) -> None:
    """Raise :class:`ScenarioError` when a run of ``scenario`` is too large to start.

    Too large: its estimated memory exceeds ``max_bytes`` (default :func:`memory_budget`), or its
    events could reach ``2**49`` µs of true time. The message gives the estimate, its largest
    part and how to reduce it. Reads nothing but the scenario (and a trace's row count).
    """
    size = estimate_run_size(scenario)
    budget = memory_budget() if max_bytes is None else max_bytes
    name = scenario.name
    if size.bytes > budget:
        raise ScenarioError(
            f"scenario {name!r} is too large to run: about {size.requests:.3g} requests "
            f"({size.requests_from}) {_over_budget(size, budget)}. "
            "Lower the traffic rates, duration_s, users or limits (or raise interval_s for the "
            f"time series); the budget is set by {ENV_BUDGET} (e.g. {ENV_BUDGET}=32G)."
        )
    if size.horizon_us >= MAX_HORIZON_US:
        raise ScenarioError(
            f"scenario {name!r} cannot run: its events could reach {size.horizon_us:.3g} us of "
            f"simulated time, at or beyond 2**49 us ({MAX_HORIZON_US:.3g} us), past which clock "
            f"readings leave the range the kernels keep exact (largest part, "
            f"{_largest(size.horizon_parts)} us). Shorten the service times, latencies, "
            "timeouts or waits, or send fewer requests."
        )


#: Bytes per request of a chunk in a streamed run (``ratesim.chunks``): its arrivals (41 B),
#: draws (8 B node + 24 B per global layer) and per-layer columns (8 B key, 8 B shard, 1 B
#: mask), counted with the whole run's margin as the runner's tables and temporaries come on
#: top; the whole-run figures above are used for it.
BYTES_PER_CHUNK_REQUEST = BYTES_PER_REQUEST


def _peak_rate(scenario: Scenario) -> float:
    """The highest arrival rate (per s) the synthetic traffic reaches at any instant."""
    traffic = scenario.traffic
    if isinstance(traffic, MMPPTraffic):
        return float(max(traffic.rates_per_s))
    rate = intensity_of(traffic)  # type: ignore[arg-type]
    table = rate.table if isinstance(rate, PeriodicRate) else rate  # a period repeats its table
    assert isinstance(table, PiecewiseLinearRate)
    starts = table.start_rate
    ends = starts[:-1] + table.slope[:-1] * (table.knots_s[1:] - table.knots_s[:-1])
    return float(max(starts.max(), ends.max() if len(ends) else 0.0))


def estimate_stream_size(scenario: Scenario, chunk_us: int) -> RunSize:
    """:func:`estimate_run_size` for a run streamed in time chunks of ``chunk_us`` µs: the
    requests (and their bytes) are those of the busiest chunk (the peak rate over
    ``chunk_us``, with the same Poisson margin, at most the run's), while the limiter state
    (bounded by the keys, not the chunk), the users, the time series and the event horizon
    stay the whole run's. A trace is read whole: its rows count whole."""
    whole = estimate_run_size(scenario)
    size = RunSize()
    size.horizon_us, size.horizon_parts = whole.horizon_us, whole.horizon_parts
    if isinstance(scenario.traffic, TraceTraffic):
        size.requests, size.requests_from = whole.requests, whole.requests_from
    else:
        mean = _peak_rate(scenario) * chunk_us / 1e6
        chunk = (mean + 10.0 * math.sqrt(mean) + 10.0) * _attempts(scenario)
        size.requests = min(chunk, whole.requests)
        size.requests_from = (
            f"the busiest chunk of {chunk_us} us (the peak rate, {_peak_rate(scenario):.6g}/s)"
        )
    layers = len(scenario.policy.layers)
    parts = dict(whole.bytes_parts)
    parts["requests"] = size.requests * (BYTES_PER_CHUNK_REQUEST + layers * BYTES_PER_REQUEST_LAYER)
    parts["limiter state"] = _state_ints(scenario, whole.requests) * BYTES_PER_STATE_INT
    size.bytes_parts = parts
    size.bytes = sum(parts.values())
    return size


def check_stream_size(scenario: Scenario, chunk_us: int, *, max_bytes: int | None = None) -> None:
    """:func:`check_run_size` for a run streamed in chunks of ``chunk_us`` µs (integer >= 1):
    raise :class:`ScenarioError` when what one chunk holds plus the run's live state
    (:func:`estimate_stream_size`) exceeds the memory budget, or the event horizon reaches
    ``2**49`` µs. The whole-run check is unchanged; use this one for a streamed run only."""
    if isinstance(chunk_us, bool) or not isinstance(chunk_us, int) or chunk_us < 1:
        raise ScenarioError(f"chunk_us must be an integer >= 1 (microseconds), got {chunk_us!r}")
    size = estimate_stream_size(scenario, chunk_us)
    budget = memory_budget() if max_bytes is None else max_bytes
    if size.bytes > budget:
        raise ScenarioError(
            f"scenario {scenario.name!r} is too large to stream with chunk_us = {chunk_us}: "
            f"about {size.requests:.3g} requests in a chunk ({size.requests_from}) and the "
            f"run's limiter state {_over_budget(size, budget)}. "
            "Use a shorter chunk_us, or lower the traffic rates, users or limits; the budget "
            f"is set by {ENV_BUDGET} (e.g. {ENV_BUDGET}=32G)."
        )
    if size.horizon_us >= MAX_HORIZON_US:
        check_run_size(scenario, max_bytes=2**62)  # the whole run's horizon message
