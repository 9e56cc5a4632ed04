"""A run's inputs made chunk by chunk: arrivals, draws and per-request policy columns.

:func:`iter_chunks` (or a :class:`ChunkSource`, which also holds what every chunk shares)
yields, per time chunk ``[k * chunk_us, (k + 1) * chunk_us)`` (µs of true time, the last cut
at the run's end; empty chunks included), a triple ``(arrivals, draws, layers)`` holding only
that chunk's rows, so what it holds is bounded by the chunk, not by the run's length.

What is identical to the whole run (``generate_arrivals`` + ``draw_requests`` +
``compile_policy`` of :mod:`ratesim.engine`, same seed), whatever ``chunk_us``:

* the arrivals: :class:`ratesim.traffic.generate.ArrivalGenerator` reads its streams in fixed
  blocks, so the chunks concatenate to the one-shot arrays;
* the draws, stream by stream in the documented order (:mod:`ratesim.engine`):
  :class:`ratesim.compile.ChunkDrawer` (``"nodes"`` replayed exactly even where numpy's one
  ``integers`` call buffers, :class:`ratesim.model.node.BoundedInts`; ``"latency"``,
  ``"service"``, ``"backend"`` as consecutive ``rng.random`` blocks, a mixture's several
  uniforms per sample included; spikes by each request's arrival time);
* per layer, the partition of requests into state keys, the applicability masks and the Redis
  shards. The key *numbering* differs: ids are fixed before the run (:class:`KeyIds`), so a
  runner sizes its state tables once, and ``n_keys`` does not grow with the run's length.

Everything else in a chunk's :class:`~ratesim.compile.CompiledLayer` (``n_keys``, ``algs``,
``local_algs``, ``gidx``, ``follow``, ``holds``...) is the same object for every chunk.

Clients that retry (``scenario.clients``): the chunks hold the user requests (first
attempts) only; retries draw from counters (:func:`ratesim.compile.draw_retries`) and their
rows are appended out of arrival order, so a runner keeps whole tables for such runs (and
``compile_clients`` needs every arrival time); nothing here chunks them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .compile import ChunkDrawer, CompiledLayer, Draws, _q, applies_of, key_ids, layer_templates
from .model.cluster import shard_of
from .policy import LayerSpec, render_key, state_key_fields
from .rng import Streams
from .scenario import Scenario
from .traffic import Arrivals
from .traffic.generate import ArrivalGenerator, _check_us

__all__ = ["Chunk", "ChunkSource", "KeyIds", "iter_chunks"]

#: One chunk: its arrivals, their draws and the layers with their per-request arrays.
Chunk = tuple[Arrivals, Draws, list[CompiledLayer]]


@dataclass
class KeyIds:
    """One layer's dense state key ids, ``0 .. n_keys - 1``, fixed before the run.

    Synthetic traffic (``lookup is None``): ``id = user * user_mul + tier * tier_mul + route
    * route_mul`` over the fields the layer's state depends on (:func:`state_key_fields`).
    A user's tier is fixed by the population, so with ``user`` among the fields the tier adds
    nothing (``tier_mul = 0``): ``n_keys`` is users x routes (routes only if ``route`` is a
    field), else tiers x routes of the fields, else 1. Trace traffic: the trace is read whole
    up front, so ``lookup`` holds its distinct raw keys (:func:`ratesim.compile.key_ids`,
    sorted) and an id is a raw key's position there (the whole run's own numbering).
    """

    layer: LayerSpec
    n_keys: int
    user_mul: int = 0
    tier_mul: int = 0
    route_mul: int = 0
    lookup: np.ndarray | None = None

    @classmethod
    def synthetic(cls, layer: LayerSpec, users: int, tiers: int, routes: int) -> KeyIds:
        """The ids of ``layer`` over a population of ``users`` with ``tiers`` and ``routes``."""
        fields = set(state_key_fields(layer))
        route_mul = 1 if "route" in fields else 0
        per = routes if route_mul else 1
        if "user" in fields:
            return cls(layer, users * per, user_mul=per, route_mul=route_mul)
        if "tier" in fields:
            return cls(layer, tiers * per, tier_mul=per, route_mul=route_mul)
        return cls(layer, per, route_mul=route_mul)

    @classmethod
    def of_trace(cls, layer: LayerSpec, trace: Arrivals) -> KeyIds:
        """The ids of ``layer`` over every row of a trace."""
        lookup = np.unique(key_ids(layer, trace))
        return cls(layer, len(lookup), lookup=lookup)

    def ids(self, arrivals: Arrivals) -> np.ndarray:
        """The id (int64) of each request of ``arrivals``."""
        if self.lookup is not None:
            return np.searchsorted(self.lookup, key_ids(self.layer, arrivals)).astype(np.int64)
        k = arrivals.user.astype(np.int64) * self.user_mul
        if self.tier_mul:
            k += arrivals.tier.astype(np.int64) * self.tier_mul
        if self.route_mul:
            k += arrivals.route.astype(np.int64)
        return k


class _Shards:
    """The Redis shard of each key id of a global layer, computed when the id is first met
    (``key_slot`` of ``rl:{<tag>}:<layer>``, as :func:`ratesim.compile.shards_of`)."""

    def __init__(self, layer: LayerSpec, n_keys: int, shards: int) -> None:
        self.layer, self.shards = layer, shards
        self.table = np.full(n_keys if shards > 1 else 0, -1, dtype=np.int64)

    def of(self, arrivals: Arrivals, ids: np.ndarray) -> np.ndarray:
        """The shard of each request (int64)."""
        if self.shards == 1:
            return np.zeros(len(ids), dtype=np.int64)
        uniq, first = np.unique(ids, return_index=True)
        new = self.table[uniq] < 0
        for key, i in zip(uniq[new], first[new], strict=True):
            tag = render_key(
                self.layer.key,
                int(arrivals.user[i]),
                arrivals.tier_names[arrivals.tier[i]] if arrivals.tier_names else "",
                arrivals.route_names[arrivals.route[i]] if arrivals.route_names else "",
            )
            if tag == "*":
                tag = self.layer.name
            self.table[key] = shard_of(f"rl:{{{tag}}}:{self.layer.name}", self.shards)
        return self.table[ids]


class ChunkSource:
    """The inputs of one run of ``scenario`` (seed ``seed``) in time chunks of ``chunk_us``.

    Run-constant, available before the first chunk: ``layers`` (the
    :class:`~ratesim.compile.CompiledLayer` templates, per-request arrays empty, ``n_keys``
    set), ``key_ids`` (one :class:`KeyIds` per layer), ``n_keys`` (per layer), ``tier_names``
    and ``route_names``. Iterate it once (``chunks()`` or ``iter(source)``) for the chunks;
    the module docstring says what is identical to the whole run. ``scenario`` is taken as
    given (validate it first, as ``simulate`` does); ``chunk_us`` is an integer >= 1.
    """

    def __init__(self, scenario: Scenario, seed: int, chunk_us: int) -> None:
        if not isinstance(scenario, Scenario):
            raise ValueError(f"scenario must be a ratesim Scenario, got {type(scenario).__name__}")
        self.scenario = scenario
        self.chunk_us = _check_us("chunk_us", chunk_us, 1)
        streams = Streams(seed)
        self._gen = ArrivalGenerator(
            scenario.traffic, scenario.population, scenario.duration_us, streams
        )
        self._drawer = ChunkDrawer(scenario, streams)
        self.tier_names = self._gen.tier_names
        self.route_names = self._gen.route_names
        self.layers = layer_templates(scenario, self.tier_names or ("",))
        trace = self._gen.trace
        shards = scenario.redis.shards if scenario.redis is not None else 1
        self.key_ids: list[KeyIds] = []
        self._shards: list[_Shards | None] = []
        for cl in self.layers:
            if trace is not None:
                ids = KeyIds.of_trace(cl.spec, trace)
            else:
                ids = KeyIds.synthetic(
                    cl.spec,
                    scenario.population.users,
                    max(1, len(self.tier_names)),
                    max(1, len(self.route_names)),
                )
            cl.n_keys = ids.n_keys
            self.key_ids.append(ids)
            glob = cl.spec.scope == "global"
            self._shards.append(_Shards(cl.spec, ids.n_keys, shards) if glob else None)
        self._started = False

    @property
    def n_keys(self) -> list[int]:
        """Each layer's key count (ids run ``0 .. n_keys - 1``), fixed for the run."""
        return [cl.n_keys for cl in self.layers]

    def __iter__(self) -> Iterator[Chunk]:
        return self.chunks()

    def chunks(self) -> Iterator[Chunk]:
        """The chunks in time order (once: the streams are consumed)."""
        if self._started:
            raise RuntimeError("ChunkSource: the chunks can be iterated once only")
        self._started = True
        duration, chunk = self.scenario.duration_us, self.chunk_us
        for end in range(chunk, duration + chunk, chunk):
            arrivals = self._gen.until(min(end, duration))
            yield arrivals, self._drawer.draw(arrivals), self._layers_of(arrivals)

    def _layers_of(self, arrivals: Arrivals) -> list[CompiledLayer]:
        out = []
        for cl, ids_of, shards in zip(self.layers, self.key_ids, self._shards, strict=True):
            ids = ids_of.ids(arrivals)
            shard = None if shards is None else _q(shards.of(arrivals, ids))
            applies = applies_of(cl.spec, arrivals)
            out.append(dataclasses.replace(cl, keys=ids, applies_np=applies, shard=shard))
        return out


def iter_chunks(scenario: Scenario, seed: int, chunk_us: int) -> Iterator[Chunk]:
    """The chunks of a run (see :class:`ChunkSource` and the module docstring)."""
    return ChunkSource(scenario, seed, chunk_us).chunks()
