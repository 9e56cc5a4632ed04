"""A scenario as plain data: topology, network, Redis, policy, traffic, duration and seed.

Build one in code, load one from YAML (:func:`load_scenario`), save it back
(:meth:`Scenario.to_yaml`). Every model forbids unknown fields. A scenario that cannot run (zero
nodes, a global layer without a Redis, a tier named in a layer but absent from the population,
an outage on a shard that does not exist, ...) is refused at construction with a
:class:`ScenarioError` (a ``ValueError``) whose message names the field path and the reason;
when the scenario came from a file the message also names the file and the YAML line.

Units: durations in seconds (``*_s``) or milliseconds (``*_ms``), as the field names say.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .bounds import (
    MAX_DELAY_MS,
    MAX_LIST,
    MAX_NAME_CHARS,
    MAX_NODES,
    MAX_POOL,
    DelayMs,
    RunS,
    Text,
    check_clock_shift,
)
from .clients import ClientsSpec
from .model.backend import BackendSpec
from .model.clock import ClockSpec
from .model.faults import FailoverSpec, OutageSpec, PartitionSpec
from .model.latency import ConstantLatency, LatencySpec, SpikeSpec, max_spiked_ms
from .policy import BACKEND_KINDS, LayerSpec, PolicySpec
from .traffic import PopulationSpec, TrafficSpec


class ScenarioError(ValueError):
    """A scenario that cannot be loaded or cannot run; the message says where and why."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ScaleChange(_Spec):
    """One scale event: from ``at_s`` (s of the run) on, ``nodes`` gateway nodes are live."""

    at_s: Annotated[RunS, Field(gt=0)]
    nodes: Annotated[int, Field(ge=1, le=MAX_NODES)]


class TopologySpec(_Spec):
    """Gateway nodes behind a load balancer; ``clocks`` is one spec for all or one per node.

    ``changes`` scales the gateway out and in during the run (``ratesim.model.topology``): a
    node that joins starts with fresh state (full local buckets), a scale-in removes the newest
    nodes first, and the load balancer spreads each request over the nodes live at its arrival.
    """

    nodes: Annotated[int, Field(ge=1, le=MAX_NODES)] = 1
    load_balancer: Literal["round_robin", "random", "hash_user"] = "round_robin"
    clocks: ClockSpec | Annotated[list[ClockSpec], Field(max_length=MAX_NODES)] = Field(
        default_factory=ClockSpec
    )
    changes: Annotated[list[ScaleChange], Field(max_length=MAX_LIST)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _clock_count(self) -> TopologySpec:
        if isinstance(self.clocks, list) and len(self.clocks) != self.nodes:
            raise ValueError(
                f"clocks: {len(self.clocks)} clock specs for {self.nodes} nodes "
                "(give one spec for all nodes or exactly one per node)"
            )
        if self.changes and isinstance(self.clocks, list):
            raise ValueError(
                "clocks: with topology.changes give one clock spec for all nodes (nodes that "
                "join mid-run have no place in a per-node list)"
            )
        for j in range(1, len(self.changes)):
            if self.changes[j].at_s <= self.changes[j - 1].at_s:
                raise ValueError(
                    f"changes.{j}.at_s: {self.changes[j].at_s:g} s is not after the previous "
                    f"change ({self.changes[j - 1].at_s:g} s); list changes in increasing time"
                )
        if self.slots > MAX_NODES:
            raise ValueError(
                f"changes: the schedule starts {self.slots} nodes in all (every scale-out "
                f"starts new ones), more than {MAX_NODES}"
            )
        return self

    @property
    def slots(self) -> int:
        """Gateway nodes started over the run: ``nodes`` plus every node a change adds (a
        node is never restarted, see :mod:`ratesim.model.topology`)."""
        total, live = self.nodes, self.nodes
        for c in self.changes:
            total += max(0, c.nodes - live)
            live = c.nodes
        return total

    def clock_specs(self) -> list[ClockSpec]:
        """One clock spec per node slot (``slots`` of them)."""
        if isinstance(self.clocks, list):
            return list(self.clocks)
        return [self.clocks] * self.slots

    def change_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``(at_us, nodes)``: the changes' instants (µs) and live counts, int64 arrays."""
        at = np.array([round(c.at_s * 1_000_000) for c in self.changes], dtype=np.int64)
        return at, np.array([c.nodes for c in self.changes], dtype=np.int64)


class NetworkSpec(_Spec):
    """Node <-> Redis network: one-way latency (drawn separately out and back), spikes by
    arrival time, partitions (nodes that cannot reach Redis), and a connection pool per node
    (``pool_size`` connections, a request waits at most ``pool_max_wait_ms`` for one)."""

    latency: LatencySpec = Field(default_factory=lambda: ConstantLatency(ms=0.0))
    spikes: list[SpikeSpec] = Field(default_factory=list, max_length=MAX_LIST)
    partitions: list[PartitionSpec] = Field(default_factory=list, max_length=MAX_LIST)
    pool_size: Annotated[int, Field(ge=1, le=MAX_POOL)] = 200
    pool_max_wait_ms: Annotated[DelayMs, Field(ge=0)] = 500.0

    @model_validator(mode="after")
    def _bounded_latency(self) -> NetworkSpec:
        largest = max_spiked_ms(self.latency, self.spikes)
        if not largest <= MAX_DELAY_MS:
            # Counted as if every spike overlapped: spikes compose in list order.
            raise ValueError(
                f"spikes: the largest latency with every spike applied is {largest:.10g} ms, "
                f"more than {MAX_DELAY_MS:g} ms (the longest delay, about 11.6 days); lower "
                "a spike's factor or add_ms"
            )
        return self


class RedisSpec(_Spec):
    """The Redis model: ``shards`` single-threaded FIFO servers (key -> hash slot -> shard),
    a per-command service time, the server clock, outages and failovers (replica promotions
    that lose the last writes, step the server clock and empty the script cache)."""

    shards: Annotated[int, Field(ge=1, le=16384)] = 1
    service_time: LatencySpec = Field(default_factory=lambda: ConstantLatency(ms=0.01))
    clock: ClockSpec = Field(default_factory=ClockSpec)
    outages: list[OutageSpec] = Field(default_factory=list, max_length=MAX_LIST)
    failovers: list[FailoverSpec] = Field(default_factory=list, max_length=MAX_LIST)

    @model_validator(mode="after")
    def _bounded_clock(self) -> RedisSpec:
        # A failover steps the Redis clock for good: its steps add to the clock's own shift.
        steps = [s.by_ms for s in self.clock.steps] + [f.clock_step_ms for f in self.failovers]
        check_clock_shift("failovers: clock_step_ms with clock", self.clock.offset_ms, steps)
        return self


class Scenario(_Spec):
    """Everything a run needs. ``redis`` may be ``None`` when every layer is node-scoped;
    ``backend`` (the protected service) is needed by concurrency and circuit-breaker layers."""

    name: Annotated[Text, Field(min_length=1, max_length=MAX_NAME_CHARS)]
    description: Annotated[Text, Field(max_length=100_000)] = ""
    duration_s: Annotated[RunS, Field(gt=0)]
    seed: Annotated[int, Field(ge=0, lt=2**64)] = 0
    interval_s: Annotated[RunS, Field(gt=0)] = 1.0
    topology: TopologySpec = Field(default_factory=TopologySpec)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    redis: RedisSpec | None = Field(default_factory=RedisSpec)
    policy: PolicySpec = Field(default_factory=PolicySpec)
    traffic: TrafficSpec
    population: PopulationSpec = Field(default_factory=PopulationSpec)
    backend: BackendSpec | None = None
    #: Clients that retry (``None``: a refusal is final; see :mod:`ratesim.clients`).
    clients: ClientsSpec | None = None

    @model_validator(mode="after")
    def _runnable(self) -> Scenario:
        tiers = set(self.population.tiers)
        routes = set(self.population.routes)
        from_trace = getattr(self.traffic, "kind", None) == "trace"
        for i, layer in enumerate(self.policy.layers):
            where = f"policy.layers.{i}"
            _check_local_fallback(where, layer, self.topology.nodes)
            if layer.scope == "global" and self.redis is None:
                raise ValueError(
                    f"{where}: layer {layer.name!r} has scope 'global' but the scenario has no "
                    "redis (set redis: or make the layer node-scoped)"
                )
            if layer.algorithm.kind in BACKEND_KINDS and self.backend is None:
                raise ValueError(
                    f"{where}: layer {layer.name!r} is a {layer.algorithm.kind} layer, which "
                    "needs completions from a backend, but the scenario has no backend"
                )
            if from_trace:
                continue  # tiers and routes come from the trace file
            for tier in layer.tiers:
                if tier not in tiers:
                    raise ValueError(
                        f"{where}.tiers: layer {layer.name!r} names tier {tier!r}, which is not "
                        f"in population.tiers {sorted(tiers)}"
                    )
            for route in layer.routes or []:
                if route not in routes:
                    raise ValueError(
                        f"{where}.routes: layer {layer.name!r} names route {route!r}, which is "
                        f"not in population.routes {sorted(routes)}"
                    )
        if self.clients is not None and not from_trace:
            for tier in self.clients.tiers:
                if tier not in tiers:
                    raise ValueError(
                        f"clients.tiers: tier {tier!r} is not in population.tiers {sorted(tiers)}"
                    )
        if self.redis is not None:
            for j, outage in enumerate(self.redis.outages):
                for shard in outage.shards or []:
                    if shard >= self.redis.shards:
                        raise ValueError(
                            f"redis.outages.{j}.shards: shard {shard} does not exist "
                            f"(redis.shards = {self.redis.shards})"
                        )
        for j, change in enumerate(self.topology.changes):
            if change.at_s >= self.duration_s:
                raise ValueError(
                    f"topology.changes.{j}.at_s: {change.at_s:g} s is not inside the run "
                    f"(duration_s = {self.duration_s:g})"
                )
        for j, part in enumerate(self.network.partitions):
            for node in part.nodes:
                if node >= self.topology.slots:
                    raise ValueError(
                        f"network.partitions.{j}.nodes: node {node} does not exist "
                        f"(topology.nodes = {self.topology.nodes}"
                        + (
                            f", {self.topology.slots} with topology.changes)"
                            if self.topology.changes
                            else ")"
                        )
                    )
        return self

    @property
    def duration_us(self) -> int:
        """The run length in integer microseconds."""
        return round(self.duration_s * 1_000_000)

    @property
    def interval_us(self) -> int:
        """The time-series bin width in integer microseconds."""
        return max(1, round(self.interval_s * 1_000_000))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data (what :meth:`to_yaml` writes)."""
        return self.model_dump(mode="json")

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The scenario as YAML text; also written to ``path`` when given.

        ``load_scenario(path)`` gives back an equal scenario.
        """
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<scenario>") -> Scenario:
        """Validate plain data; errors become :class:`ScenarioError` naming ``source``."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ScenarioError(format_errors(exc, source, None)) from None


def _check_local_fallback(where: str, layer: LayerSpec, nodes: int) -> None:
    """A ``failure_mode="local"`` layer's node-local limiters must be buildable too: each tier's
    algorithm scaled by ``local_share`` (default ``1 / nodes``), as the engines build them."""
    if layer.scope != "global" or layer.failure_mode != "local":
        return
    share = 1.0 / nodes if layer.local_share in (None, "follow") else float(layer.local_share)
    for tier in ["", *layer.tiers]:
        try:
            layer.algorithm_for(tier).scaled(share).build()
        except ValueError as exc:
            label = f"tier {tier!r}" if tier else "the base algorithm"
            raise ValueError(
                f"{where}.local_share: the local fallback of {label}, scaled by {share:.6g}, "
                f"cannot be built: {exc}"
            ) from None


# --- loading with line numbers ------------------------------------------------------------

_PATH_PREFIX = re.compile(r"^([A-Za-z_][\w.]*):")


def _loc_str(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _node_at(root: yaml.Node | None, loc: tuple[int | str, ...]) -> yaml.Node | None:
    """The YAML node a pydantic error location points at (the key node for a mapping entry).

    Location parts that match nothing in the document (pydantic inserts union tags such as
    ``'poisson'`` or ``'function-after[...]'``) are skipped.
    """
    node = root
    found = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            hit = None
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                    hit = (key_node, value_node)
                    break
            if hit is None:
                continue
            found, node = hit[0], hit[1]
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            node = node.value[part]
            found = node
        # scalars: nothing deeper to find
    return found


def format_errors(exc: ValidationError, source: str, root: yaml.Node | None) -> str:
    """One line per pydantic error: ``file:line: field.path: reason``."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = str(err["msg"])
        # Model-level checks put the field path (relative to their model) at the start of
        # their message: "spikes: ..." from network is network.spikes.
        msg = msg.removeprefix("Value error, ")
        m = _PATH_PREFIX.match(msg)
        if m and err["type"] == "value_error":
            loc = loc + tuple(int(p) if p.isdigit() else p for p in m.group(1).split("."))
            msg = msg[m.end() :].strip()
        if err["type"] == "extra_forbidden":
            msg = f"unknown field {loc[-1]!r}" if loc else msg
        node = _node_at(root, loc) if root is not None else None
        where = f"{source}:{node.start_mark.line + 1}" if node is not None else source
        lines.append(f"{where}: {_loc_str(loc)}: {msg}")
    return "scenario is invalid:\n  " + "\n  ".join(lines)


#: Largest scenario file, bytes (a scenario is a few kB; PyYAML parses about 1 MB/s).
MAX_YAML_BYTES = 2 * 2**20
#: Deepest nesting of mappings and sequences (a scenario nests about 8 deep).
MAX_YAML_DEPTH = 64
#: Most values (scalars, lists, mappings) in the document as written.
MAX_YAML_NODES = 200_000
#: Most values aliases may add to the document once expanded.
MAX_YAML_ALIAS_NODES = 100_000


class _YamlRefused(Exception):
    """A YAML document refused by a bound; ``line`` is 0-based."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


#: libyaml's C parser and composer when PyYAML has them (about 10x faster), else PyYAML's own.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _line(event: yaml.Event) -> int:
    """The 0-based line an event starts on."""
    mark = event.start_mark
    return mark.line if mark is not None else 0


def _check_shape(text: str) -> list[int]:
    """One pass over the parser's events: refuse nesting deeper than ``MAX_YAML_DEPTH`` and more
    than ``MAX_YAML_NODES`` nodes, before any node tree is built (the parser keeps its own
    stack, so deep input cannot exhaust Python's). Returns the (0-based) lines of the aliases."""
    depth = 0
    nodes = 0
    aliases: list[int] = []
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _YamlRefused(
                    _line(event),
                    f"nesting deeper than {MAX_YAML_DEPTH} levels (mappings and lists)",
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases.append(_line(event))
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise _YamlRefused(
                    _line(event), f"more than {MAX_YAML_NODES:,} values in the document"
                )
    return aliases


def _expanded_sizes(root: yaml.Node) -> dict[int, int]:
    """Nodes under each node (itself included) with aliases expanded, by ``id(node)``.

    Aliases make the node tree a DAG; sizes are memoised, so this costs one visit per distinct
    node even when the expansion is astronomically large. Depth is bounded by the composer.
    """
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        sizes[id(node)] = total
        return total

    size(root)
    return sizes


def _check_duplicates(root: yaml.Node) -> None:
    """Refuse a mapping that repeats a key (PyYAML would keep the last silently)."""
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    k = (key.tag, key.value)
                    if k in first:
                        raise _YamlRefused(
                            key.start_mark.line,
                            f"duplicate key {key.value!r} (first at line "
                            f"{first[k].start_mark.line + 1})",
                        )
                    first[k] = key
                stack.append(key)
                stack.append(value)


def _alias_nodes(root: yaml.Node) -> list[yaml.Node]:
    """Every node reached more than once from the root (what an alias points at)."""
    seen: set[int] = set()
    shared: list[yaml.Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            shared.append(node)
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return shared


def _parse_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """The document's data and node tree, within the bounds above (``_YamlRefused`` if not)."""
    aliases = _check_shape(text)
    root = yaml.compose(text, Loader=_LOADER)
    if root is None:
        return None, None
    _check_duplicates(root)
    if aliases:
        sizes = _expanded_sizes(root)
        added = sizes[id(root)] - len(sizes)  # nodes that exist only through aliases
        if added > MAX_YAML_ALIAS_NODES:
            biggest = max(sizes[id(n)] for n in _alias_nodes(root))
            line = max(aliases)
            raise _YamlRefused(
                line,
                f"aliases expand the document by {added:,} values, more than "
                f"{MAX_YAML_ALIAS_NODES:,} (one alias alone stands for {biggest:,}); the last "
                "alias is on this line",
            )
    loader = _LOADER("")
    try:
        return loader.construct_document(root), root
    finally:
        loader.dispose()


def _resolve_trace_path(data: dict[str, Any], scenario_path: Path) -> None:
    """Make a relative trace path relative to the scenario file's directory (in place)."""
    traffic = data.get("traffic")
    if isinstance(traffic, dict) and traffic.get("kind") == "trace":
        trace = traffic.get("path")
        if isinstance(trace, str) and trace and not Path(trace).is_absolute():
            traffic["path"] = str(scenario_path.parent.absolute() / trace)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario from a YAML file.

    Raises :class:`ScenarioError` naming the file, the field path, the reason and (where YAML
    gives it) the line, for unreadable files, bad YAML, unknown or wrong fields, and scenarios
    that cannot run. The YAML is bounded: at most ``MAX_YAML_BYTES`` bytes, ``MAX_YAML_DEPTH``
    levels of nesting, ``MAX_YAML_NODES`` values as written and ``MAX_YAML_ALIAS_NODES`` more
    once aliases are expanded, and no key twice in one mapping. A relative ``traffic.path`` (trace replay) is taken from the file's directory.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_YAML_BYTES:
            raise ScenarioError(
                f"{p}: the scenario file has {p.stat().st_size:,} bytes, more than "
                f"{MAX_YAML_BYTES:,} (2 MiB)"
            )
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read scenario: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{p}: not UTF-8 text: {exc}") from None
    try:
        data, root = _parse_yaml(text)
    except _YamlRefused as exc:
        raise ScenarioError(f"{p}:{exc.line + 1}: YAML refused: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = " ".join(str(exc).split())
        raise ScenarioError(f"{p}{line}: not valid YAML: {reason[:500]}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{p}: a scenario must be a YAML mapping, got {type(data).__name__}")
    _resolve_trace_path(data, p)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(format_errors(exc, str(p), root)) from None
