"""Running a scenario: ``simulate(scenario, seed=None, progress=False, *, engine="auto")``.

Two runners give the very same run, request by request:

* ``engine="event"``: the SimPy components of :mod:`ratesim.des` (gateway and nodes, pools,
  network, Redis, guards, backend, traffic), built from the scenario and run - the reference,
  written for clarity;
* ``engine="fast"``: the compiled runner of :mod:`ratesim.fast` (numba), the same model as one
  compiled event loop, for speed;
* ``engine="auto"`` (the default): the compiled runner whenever it models the scenario.

Both start from the same pieces (:mod:`ratesim.compile`): the arrivals, the per-request draws
and the compiled policy; both key every event by :mod:`ratesim.ordering`'s rule and call the
same formulas of :mod:`ratesim.model` and the algorithms' kernels; both return a
:class:`~ratesim.results.RunData`, wrapped in a :class:`~ratesim.results.Result` with the
oracle (:mod:`ratesim.oracle`) computed on demand.

What is modelled (all times integer microseconds of *true* time) is described module by module
in :mod:`ratesim.des`; in short: arrivals routed by the load balancer (``round_robin``:
request ``i`` goes to node ``i % N``; ``random``: stream ``"nodes"``; ``hash_user``); node
layers on the node's own state at the node's clock; global layers as one command each to the
Redis shard owning the key, over one pooled connection per request, with a decision timeout
and a failure mode (``open``, ``closed``, ``local``) when the reply is late or a fault (a
refused or black-holed shard, a partition) means none comes - the command still charges the
state when it executes; failovers restoring older state, stepping the Redis clock and flushing
scripts; concurrency and breaker layers in front of a backend slowed by load.

Random draws, all at generation time, per request in arrival order, from per-purpose
:class:`ratesim.rng.Streams` (so either runner reproduces the very same run from the seed):

1. traffic: ``generate_arrivals`` (streams ``"arrivals"``, ``"users"``, ``"routes"``,
   ``"population"``, ``"trace_jitter"``);
2. ``"nodes"`` (``random`` load balancer only): ``integers(0, N, size=n)``;
3. ``"latency"``: ``sample_us(network.latency, rng, n * G * 2)`` reshaped ``(n, G, 2)``:
   request-major, then global layer in policy order, then out / back; spikes are applied by the
   request's arrival time (:func:`ratesim.model.latency.apply_spikes`);
4. ``"service"``: ``sample_us(redis.service_time, rng, n * G)`` reshaped ``(n, G)``;
5. ``"backend"`` (scenarios with a backend only): ``sample_us(backend.service_time, rng, n)``,
   each admitted request's base service time (slowed by load, see
   :mod:`ratesim.model.backend`).

``G`` is the number of global layers; draws are made for every (request, global layer) pair
whether or not the request reaches that layer, so no draw depends on a decision. Requests that
a user's own SimPy process adds (``Gateway.handle``) draw from streams ``"client:*"``.

``ratesim.engine`` keeps its public names as a stable import path (``simulate``,
``run_events``, ``run_oracle``, ``compile_policy``, ``draw_requests``, ``Draws``,
``CompiledLayer``, the ``PRIO_*`` constants).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from .aggregates import RunAggregates
from .budget import check_run_size
from .chunks import Chunk
from .compile import (
    CompiledLayer,
    Draws,
    can_hold,
    compile_policy,
    draw_requests,
    key_ids,
    shards_of,
)
from .des.world import run_world
from .oracle import run_oracle
from .oracle_stream import OracleGapConsumer, RowConsumer
from .ordering import (
    MAX_LAYERS,
    PRIO_ARRIVAL,
    PRIO_BACKEND,
    PRIO_FAILOVER,
    PRIO_RELEASE,
    PRIO_STRIDE,
)
from .results import Result, RunData
from .rng import Streams
from .sampling import RowSample, resolve_requests, sample_rows, take_rows
from .scenario import Scenario, ScenarioError, load_scenario
from .traffic import Arrivals, generate_arrivals

__all__ = [
    "ENGINES",
    "PRIO_ARRIVAL",
    "PRIO_BACKEND",
    "PRIO_FAILOVER",
    "PRIO_RELEASE",
    "PRIO_STRIDE",
    "CompiledLayer",
    "Draws",
    "compile_policy",
    "draw_requests",
    "key_ids",
    "run_events",
    "run_oracle",
    "shards_of",
    "simulate",
]

#: The engines ``simulate`` knows ("auto": the fast one when it models the scenario).
ENGINES = ("auto", "event", "fast")


def run_events(
    scenario: Scenario,
    arrivals: Arrivals,
    draws: Draws,
    layers: list[CompiledLayer],
    progress: bool = False,
    *,
    seed: int | None = None,
) -> RunData:
    """Run the scenario's world as the SimPy components of :mod:`ratesim.des` and return the
    raw per-request outcomes (conservation checked); ``seed`` (default: the scenario's) keys
    the draws made during the run (retries, a user process's requests)."""
    if len(layers) > MAX_LAYERS:
        raise ScenarioError(f"policy.layers: at most {MAX_LAYERS} layers, got {len(layers)}")
    return run_world(scenario, arrivals, draws, layers, progress, seed)


def simulate(
    scenario: Scenario | str | Path,
    seed: int | None = None,
    progress: bool = False,
    *,
    engine: str = "auto",
    arrivals: Arrivals | None = None,
    requests: str = "all",
    sinks: Sequence[RowConsumer] = (),
) -> Result:
    """Run ``scenario`` and return its :class:`~ratesim.results.Result`.

    ``scenario`` is a :class:`~ratesim.scenario.Scenario`, the name of a built-in scenario, or
    the path of a YAML file. ``seed=None`` uses ``scenario.seed``. ``engine``: ``"event"`` (the
    SimPy components), ``"fast"`` (the compiled runner; a :class:`ScenarioError` names what it
    does not model) or ``"auto"`` (the compiled runner when it models the scenario, else the
    components; ``Result.engine`` says which ran - the run is the same). ``arrivals`` replaces
    the generated traffic (the other draws still come from the seed's streams), for tests and
    parity checks. ``requests``: which per-request rows the Result keeps, ``"all"``,
    ``"sample"``, ``"none"`` or ``"auto"`` (:mod:`ratesim.sampling`; ``Result.requests_kind``
    says which); the aggregates and the oracle gap are exact whichever it is (the compiled
    runner folds them as it runs). With ``"sample"`` or ``"none"`` on the fast engine (and no
    clients that retry) the run's request tables are bounded (:mod:`ratesim.fast.bounded`):
    memory does not grow with the run's length beyond its arrivals and draws.
    ``sinks``: row consumers (:class:`ratesim.oracle_stream.RowConsumer`, e.g.
    :class:`ratesim.sinks.ParquetSink`) handed every row once, in arrival order (a bounded
    run: chunk by chunk; else the finished run as one batch; not with clients that retry).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    resolve_requests(requests, 0)  # a bad value fails before the run
    if isinstance(scenario, str | Path):
        scenario = _resolve(scenario)
    if not isinstance(scenario, Scenario):
        raise ValueError(f"scenario must be a ratesim Scenario, got {type(scenario).__name__}")
    try:
        scenario = Scenario.model_validate(scenario.model_dump())
    except ValueError as exc:
        raise ScenarioError(f"scenario {scenario.name!r} cannot run: {exc}") from None
    seed = scenario.seed if seed is None else seed
    if arrivals is None and _streams_inputs(scenario, engine, requests):
        return _simulate_streamed(scenario, seed, engine, requests, progress, sinks)
    streams = Streams(seed)
    if arrivals is None:
        check_run_size(scenario)
        arrivals = generate_arrivals(
            scenario.traffic, scenario.population, scenario.duration_us, streams
        )
    layers = compile_policy(scenario, arrivals)  # draws nothing: the draw order is unchanged
    engine = _pick_engine(scenario, layers, engine)
    kind = resolve_requests(requests, len(arrivals))
    if engine == "fast" and kind != "all" and not _retries(scenario):
        return _simulate_bounded(scenario, seed, arrivals, layers, streams, kind, progress, sinks)
    agg = None if kind == "all" else RunAggregates(scenario)
    # the draws go straight in, so that the run can free them once converted
    draws = draw_requests(scenario, arrivals, streams)
    if engine == "fast":
        from .fast import run_fast

        data = run_fast(scenario, arrivals, draws, layers, progress, seed=seed, fold=agg)
    else:
        data = run_events(scenario, arrivals, draws, layers, progress, seed=seed)
        if agg is not None:
            agg.fold_run_data(data)
    if sinks:
        _feed_whole(data, layers, sinks)
    result = Result(
        scenario, seed, data, oracle_fn=_oracle_of(scenario, data, layers), engine=engine
    )
    if agg is None:
        return result
    return _kept_rows(result, agg, kind)


def _pick_engine(scenario: Scenario, layers: list[CompiledLayer], engine: str) -> str:
    """The engine that runs: ``"fast"`` when asked for or ``"auto"`` and it models the
    scenario; ``"auto"`` falls back to ``"event"`` with a warning naming why."""
    if engine == "event":
        return engine
    from .fast import unsupported

    reason = unsupported(scenario, layers)
    if reason is None:
        return "fast"
    if engine == "fast":
        raise ScenarioError(
            f"scenario {scenario.name!r}: the fast engine does not model {reason}; "
            "use engine='event' (or 'auto')"
        )
    warnings.warn(
        f"scenario {scenario.name!r} runs on the event engine: the compiled runner "
        f"does not model {reason}",
        stacklevel=3,
    )
    return "event"


#: ``requests="auto"`` streams the run's inputs too (never holding its whole arrivals) when the
#: expected arrivals (:func:`ratesim.budget.estimate_run_size`) exceed this many times
#: ``AUTO_ALL_ROWS``; nearer the threshold the arrivals are made whole and counted, so
#: ``"auto"`` resolves by the exact row count.
STREAM_AUTO_FACTOR = 4


def _streams_inputs(scenario: Scenario, engine: str, requests: str) -> bool:
    """Whether the run is fed chunk by chunk from :func:`ratesim.chunks.iter_chunks` (no
    whole arrivals or draws): the fast engine, no clients that retry, no rows kept whole."""
    if engine == "event" or _retries(scenario) or requests == "all":
        return False
    if requests != "auto":
        return requests in ("sample", "none")
    from . import sampling
    from .budget import estimate_run_size

    return estimate_run_size(scenario).requests > STREAM_AUTO_FACTOR * sampling.AUTO_ALL_ROWS


def _simulate_streamed(
    scenario: Scenario,
    seed: int,
    engine: str,
    requests: str,
    progress: bool,
    sinks: Sequence[RowConsumer],
) -> Result:
    """The run fed chunk by chunk (:class:`ratesim.chunks.ChunkSource`) to the bounded runner:
    memory bounded by a chunk and the live state, whatever the run's length."""
    from .budget import check_stream_size
    from .chunks import ChunkSource

    source = ChunkSource(scenario, seed, BOUNDED_CHUNK_US)
    if _pick_engine(scenario, source.layers, engine) == "event":
        return simulate(scenario, seed, progress, engine="event", requests=requests, sinks=sinks)
    check_stream_size(scenario, BOUNDED_CHUNK_US)
    kind = "sample" if requests == "auto" else requests
    empty = Arrivals.empty(source.tier_names, source.route_names)
    return _bounded_result(
        scenario, seed, source.chunks(), (empty, source.layers), kind, progress, sinks
    )


#: Simulated µs per chunk of a bounded run (``ratesim.fast.bounded``): its tables hold about a
#: chunk's requests (plus those in flight); smaller chunks cost more calls of the loop.
BOUNDED_CHUNK_US = 250_000


def _retries(scenario: Scenario) -> bool:
    """Whether the scenario's clients retry (such a run keeps whole tables)."""
    return scenario.clients is not None and scenario.clients.any_retries


def _simulate_bounded(
    scenario: Scenario,
    seed: int,
    arrivals: Arrivals,
    layers: list[CompiledLayer],
    streams: Streams,
    kind: str,
    progress: bool,
    sinks: Sequence[RowConsumer],
) -> Result:
    """The bounded run of whole-run inputs (``simulate(arrivals=...)``, or ``"auto"`` near its
    threshold): the chunks cut from them (:func:`ratesim.fast.chunks.slice_chunks`), so these
    are held whole; the request tables are bounded."""
    from .fast.chunks import slice_chunks

    draws = draw_requests(scenario, arrivals, streams)
    chunks = slice_chunks(scenario.duration_us, arrivals, draws, layers, BOUNDED_CHUNK_US)
    del draws  # the chunks hold them
    shape = (arrivals.take(slice(0, 0)), layers)
    return _bounded_result(scenario, seed, chunks, shape, kind, progress, sinks)


def _bounded_result(
    scenario: Scenario,
    seed: int,
    chunks: Iterable[Chunk],
    shape: tuple[Arrivals, list[CompiledLayer]],
    kind: str,
    progress: bool,
    sinks: Sequence[RowConsumer],
) -> Result:
    """The fast engine's run with bounded request tables (:mod:`ratesim.fast.bounded`) from its
    time ``chunks``: the aggregates, the oracle gap
    (:class:`ratesim.oracle_stream.OracleGapConsumer`) and the kept rows (``kind``:
    ``"sample"``, :class:`ratesim.sampling.RowSample`, or ``"none"``) folded chunk by chunk;
    every row also handed to ``sinks``. ``shape``: no arrivals (their code tables) and the
    layers, for a Result that keeps no row."""
    from .fast.bounded import run_bounded

    agg = RunAggregates(scenario)
    gap = OracleGapConsumer(
        [layer.name for layer in scenario.policy.layers], tier_names=shape[0].tier_names
    )
    sample = RowSample(seed) if kind == "sample" else None
    consumers: list[RowConsumer] = [gap, *([sample] if sample else []), *sinks]
    info = run_bounded(
        scenario, chunks, BOUNDED_CHUNK_US, fold=agg, consumers=consumers, progress=progress
    )
    if sample is not None and sample.data is not None:
        data, rows = sample.data, sample.rows
    else:
        data, rows = take_rows(_empty_run_data(*shape, scenario), _NO_ROWS), _NO_ROWS
    data = replace(data, store_breakers=info.store_breakers)

    def no_oracle() -> RunData:
        raise AssertionError("unreachable: Result._whole refuses the oracle first")

    return Result(
        scenario, seed, data, oracle_fn=no_oracle, engine="fast", aggregates=agg, rows=rows,
        requests_kind=kind, vs_oracle=gap.frame(),
    )  # fmt: skip


_NO_ROWS = np.zeros(0, dtype=np.int64)


def _empty_run_data(arrivals: Arrivals, layers: list[CompiledLayer], scenario: Scenario) -> RunData:
    """A :class:`RunData` of no rows (``arrivals``: none, the run's code tables), with the
    run's columns."""
    z = np.zeros(0, dtype=np.int64)
    return RunData(
        arrivals=arrivals,
        node=z,
        outcomes=np.zeros((0, len(layers)), dtype=np.int8),
        remaining=np.zeros((0, len(layers)), dtype=np.int64),
        decided_us=z,
        rejected_by=np.zeros(0, dtype=np.int16),
        pool_wait_us=z,
        depth_t_us=z,
        depth=z,
        backend_done_us=z if scenario.backend is not None else None,
        held_us=z if can_hold(layers) else None,
    )


def _feed_whole(data: RunData, layers: list[CompiledLayer], sinks: Sequence[RowConsumer]) -> None:
    """A run with whole tables handed to ``sinks`` as one batch (no retries: rows in arrival
    order), its depth samples left out as the bounded runner leaves them."""
    if data.attempt is not None:
        raise ValueError("row sinks take no run with clients that retry (rows out of order)")
    batch = replace(data, depth_t_us=_NO_ROWS, depth=_NO_ROWS, store_breakers=None)
    for sink in sinks:
        sink.fold(batch, layers, 0)
        sink.finish()


def _kept_rows(full: Result, agg: RunAggregates, kind: str) -> Result:
    """``full`` cut to the rows ``kind`` keeps (:mod:`ratesim.sampling`), its aggregates and
    oracle gap (1 s windows, computed now from every row) kept exact."""
    gap = full.vs_oracle
    rows = sample_rows(len(full.data.arrivals), full.seed, kind)

    def no_oracle() -> RunData:
        raise AssertionError("unreachable: Result._whole refuses the oracle first")

    return Result(
        full.scenario, full.seed, take_rows(full.data, rows), oracle_fn=no_oracle,
        engine=full.engine, aggregates=agg, rows=rows, requests_kind=kind, vs_oracle=gap,
    )  # fmt: skip


def _oracle_of(
    scenario: Scenario, data: RunData, layers: list[CompiledLayer]
) -> Callable[[], RunData]:
    """The oracle of a run: the intended policy over the run's own arrivals. With clients that
    retry these are every attempt the gateway received, retries included (the oracle judges
    the traffic as it came; it does not replay what the clients would have done had the
    policy been enforced ideally), so its rows match the run's row for row."""
    if data.attempt is None:
        return lambda: run_oracle(data.arrivals, layers)
    return lambda: run_oracle(data.arrivals, compile_policy(scenario, data.arrivals))


def _resolve(ref: str | Path) -> Scenario:
    """A built-in scenario by name, else a YAML file by path."""
    from . import scenarios

    if isinstance(ref, str) and ref in scenarios.names():
        return scenarios.get(ref)
    return load_scenario(ref)
