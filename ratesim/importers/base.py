"""What every importer shares: the result type, the error type, line-aware YAML, key mapping.

An importer reads a gateway's own config file and returns an :class:`Imported`: a ratesim
:class:`~ratesim.policy.PolicySpec` with the semantics that gateway really implements, the notes
that say what was approximated or assumed, and the topology facts the config implies (where the
limiter state lives, whose clock decides). What cannot be mapped raises :class:`ConfigError`,
which names the file, the line and the construct.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..policy import LayerSpec, PolicySpec
from ..scenario import ScenarioError


class ConfigError(ScenarioError):
    """A gateway config ratesim cannot read or map: ``file:line: construct: reason``."""

    def __init__(self, path: str | Path, line: int | None, construct: str, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.construct = construct
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {construct}: {reason}")


@dataclass
class Imported:
    """The result of :func:`ratesim.importers.load`.

    ``policy``: the layers, in the gateway's evaluation order; ``notes``: one sentence per
    approximation or assumption; ``state_per``: where each layer's state lives, by layer name
    (e.g. ``"nginx host"``, ``"shared Redis"``); ``facts``: other topology facts (clock,
    failure behaviour, what ``nodes`` means for the limits).
    """

    kind: str
    path: str
    policy: PolicySpec
    notes: list[str] = field(default_factory=list)
    state_per: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def policy_yaml(self) -> str:
        """The policy as YAML (``policy:`` with its layers), the notes as leading comments."""
        head = [f"# imported by ratesim from {self.kind} config {self.path}"]
        head += [f"# note: {n}" for n in self.notes]
        head += [f"# state of layer {k}: per {v}" for k, v in self.state_per.items()]
        layers = []
        for layer in self.policy.layers:
            data = layer.model_dump(mode="json", exclude_defaults=True)
            # The discriminator is a default too, but a policy without it cannot be read back.
            data["algorithm"] = {"kind": layer.algorithm.kind, **data.get("algorithm", {})}
            layers.append(data)
        body = {"policy": {"layers": layers}}
        return "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False)


class Builder:
    """Collects layers, notes and facts while an importer walks a config file."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.layers: list[LayerSpec] = []
        self.notes: list[str] = []
        self.state_per: dict[str, str] = {}
        self.facts: dict[str, Any] = {}

    def error(self, line: int | None, construct: str, reason: str) -> ConfigError:
        """A :class:`ConfigError` for this file (raise it)."""
        return ConfigError(self.path, line, construct, reason)

    def note(self, text: str) -> None:
        """Record an approximation or assumption once."""
        if text not in self.notes:
            self.notes.append(text)

    def add(self, line: int | None, construct: str, state_per: str, **layer: Any) -> None:
        """Add a layer (a unique name is made from ``layer['name']``); bad values are errors."""
        base = _layer_name(str(layer.pop("name")))
        name, k = base, 2
        taken = {x.name for x in self.layers}
        while name in taken:
            name, k = f"{base}-{k}", k + 1
        try:
            spec = LayerSpec(name=name, **layer)
        except ValueError as exc:
            raise self.error(line, construct, _first_error(exc)) from None
        self.layers.append(spec)
        self.state_per[name] = state_per

    def result(self) -> Imported:
        """The :class:`Imported` built so far."""
        return Imported(
            self.kind,
            str(self.path),
            PolicySpec(layers=self.layers),
            self.notes,
            self.state_per,
            self.facts,
        )


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        items = errors()
        if items:
            loc = ".".join(str(p) for p in items[0].get("loc", ()))
            return f"{loc}: {items[0].get('msg', 'invalid')}" if loc else str(items[0].get("msg"))
    return str(exc)


def _layer_name(text: str) -> str:
    """A layer name from a gateway's own label (no ':' or surrounding spaces)."""
    clean = text.strip().replace(":", "_") or "limit"
    return clean


# -- line-aware YAML ---------------------------------------------------------------------------


class LineDict(dict[str, Any]):
    """A YAML mapping that remembers its line and each key's line (1-based)."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        """The line of ``key`` (the mapping's own line when absent)."""
        return self.key_lines.get(key, self.line)


class LineList(list[Any]):
    """A YAML sequence that remembers its line and each item's line (1-based)."""

    line: int = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[str(key)] = loader.construct_object(value_node, deep=True)
        out.key_lines[str(key)] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def read_text(path: Path) -> str:
    """The file's text, or a :class:`ConfigError` naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, None, "file", f"cannot read: {exc.strerror or exc}") from None


def load_yaml(path: Path, text: str) -> Any:
    """YAML (or JSON, a subset) with line numbers on mappings and sequences."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(path, line, "YAML", f"not valid YAML: {exc}") from None


def line_of(node: Any, key: str | None = None) -> int | None:
    """The line of ``node`` (or of its ``key``), when the loader recorded one."""
    if isinstance(node, LineDict):
        return node.line_of(key) if key is not None else node.line
    if isinstance(node, LineList):
        return node.line
    return None


# -- keys --------------------------------------------------------------------------------------

#: Substrings of a gateway's key name that mean "one counter per route / per tier".
_ROUTE_WORDS = ("path", "route", "uri", "url", "cluster", "service", "method", "host")
_TIER_WORDS = ("tier", "plan", "group")


def field_for(name: str) -> str:
    """The ratesim request field a gateway key name stands for: ``route``, ``tier`` or ``user``.

    ratesim requests carry a user, a tier and a route; any other attribute a gateway keys on
    (client IP, API key, header) is modelled as the user.
    """
    low = name.lower()
    if any(w in low for w in _TIER_WORDS):
        return "tier"
    if any(w in low for w in _ROUTE_WORDS):
        return "route"
    return "user"


def template(fields: list[str]) -> str:
    """A key template from request fields (duplicates dropped, ``"*"`` for none)."""
    seen: list[str] = []
    for f in fields:
        if f not in seen:
            seen.append(f)
    return ":".join(f"{{{f}}}" for f in seen) if seen else "*"


def as_number(b: Builder, value: Any, line: int | None, construct: str, *, integer: bool) -> Any:
    """``value`` as an int (``integer``) or a float, or a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise b.error(line, construct, f"must be a number, got {value!r}")
    try:
        num = float(value)
    except ValueError:
        raise b.error(line, construct, f"must be a number, got {value!r}") from None
    if integer:
        if num != int(num):
            raise b.error(line, construct, f"must be a whole number, got {value!r}")
        return int(num)
    return num
