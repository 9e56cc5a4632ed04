"""Parameter paths: name any value of a scenario by where it sits, and set it.

A path is the chain of field names from the scenario root, dot-separated, with ``[...]`` to pick
a list item by position (``topology.clocks[1].offset_ms``) or a layer by its name
(``policy.layers[site_orders].algorithm.count_per_period``), and ``.key`` or ``[key]`` for a
mapping entry (``population.tiers.gold``, ``policy.layers[tier_quota].tiers[gold].max_burst``,
``population.routes[/api/v3/order]``). Examples::

    topology.nodes
    network.pool_size
    traffic.peak_factor
    policy.layers[site_orders].algorithm.count_per_period
    policy.layers[tier_quota].tiers.gold.count_per_period     # a tier override
    policy.layers[user_window].mode                           # "enforce" | "shadow"

Derived helpers change several fields at once, the way one would by hand:

* ``policy.layers[NAME].scale`` - multiply the layer's rate and capacity (burst, limit) by the
  value, for every tier (:meth:`ratesim.policy.LayerSpec.scaled`);
* ``traffic.scale`` - multiply every rate of the traffic model by the value
  (:func:`ratesim.traffic.specs.scale_traffic`), keeping its shape in time.

:func:`resolve` checks that a path names something in a scenario (a :class:`ParameterError`
naming the path and the fields it could have meant otherwise); :func:`apply` returns a validated
copy of a scenario with values set (a :class:`ParameterError` naming the path and the schema's
reason when a value is refused).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..policy import LayerSpec
from ..scenario import Scenario
from ..traffic.specs import (
    DiurnalTraffic,
    FlashCrowdTraffic,
    MMPPTraffic,
    PiecewiseTraffic,
    PoissonTraffic,
    TraceTraffic,
    parse_traffic,
    scale_traffic,
)

__all__ = ["DERIVED", "ParameterError", "ParameterPath", "apply", "parse", "resolve"]


class ParameterError(ValueError):
    """A parameter path that names nothing, or a value the scenario schema refuses."""


_TOKEN = re.compile(r"\.?([A-Za-z_]\w*)|\[([^\[\]]+)\]")


def parse(path: str) -> tuple[str, ...]:
    """The segments of ``path`` (``"a.b[c].d"`` -> ``("a", "b", "[c]", "d")``).

    Bracketed segments keep their brackets so that :func:`resolve` can tell ``[0]`` (a position)
    and ``[name]`` (a layer by name) from plain field names.
    """
    if not isinstance(path, str) or not path.strip():
        raise ParameterError(f"a parameter path must be a non-empty string, got {path!r}")
    segments: list[str] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None or (pos == 0 and path.startswith(".")):
            raise ParameterError(
                f"parameter path {path!r} is malformed at character {pos + 1} "
                f"({path[pos:]!r}); write it like policy.layers[name].algorithm.max_burst"
            )
        segments.append(m.group(1) if m.group(1) is not None else f"[{m.group(2)}]")
        pos = m.end()
    return tuple(segments)


def _scale_layer(layer: dict[str, Any], value: Any) -> dict[str, Any]:
    factor = _positive_factor(value)
    return LayerSpec.model_validate(layer).scaled(factor).model_dump()


def _scale_traffic(traffic: dict[str, Any], value: Any) -> dict[str, Any]:
    factor = _positive_factor(value)
    return scale_traffic(parse_traffic(traffic), factor).model_dump()


def _positive_factor(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"a scale factor must be a number > 0, got {value!r}")
    return float(value)


#: Derived helpers: (the model class their parent must be, name) -> ``f(parent dict, value)``.
DERIVED: dict[tuple[str, str], Callable[[dict[str, Any], Any], dict[str, Any]]] = {
    ("layer", "scale"): _scale_layer,
    ("traffic", "scale"): _scale_traffic,
}


@dataclass(frozen=True)
class ParameterPath:
    """A resolved path: the text the user wrote and the keys into ``Scenario.model_dump()``.

    ``keys`` are field names, list positions and mapping keys, root first. For a derived helper
    (``helper`` set, e.g. ``"scale"``) the keys lead to the object the helper rewrites (a layer,
    the traffic model) and ``kind`` says which (``"layer"`` or ``"traffic"``).
    """

    text: str
    keys: tuple[str | int, ...]
    kind: str | None = None
    helper: str | None = None

    def set_in(self, data: dict[str, Any], value: Any) -> None:
        """Set the value in ``data`` (a scenario dump), in place."""
        parent: Any = data
        for key in self.keys[:-1]:
            # a mapping may gain an entry (a tier override not written yet)
            parent = parent.setdefault(key, {}) if isinstance(parent, dict) else parent[key]
        last = self.keys[-1]
        if self.helper is not None and self.kind is not None:
            parent[last] = DERIVED[(self.kind, self.helper)](parent[last], value)
        else:
            parent[last] = value


def _fields_of(obj: BaseModel) -> list[str]:
    return list(type(obj).model_fields)


_TRAFFIC_MODELS = (
    PoissonTraffic,
    PiecewiseTraffic,
    FlashCrowdTraffic,
    DiurnalTraffic,
    MMPPTraffic,
    TraceTraffic,
)


def _derived_kind(obj: Any) -> str | None:
    if isinstance(obj, LayerSpec):
        return "layer"
    if isinstance(obj, _TRAFFIC_MODELS):
        return "traffic"
    return None


def _step_list(items: list[Any], seg: str, where: str, text: str) -> int:
    inner = seg[1:-1].strip()
    if inner.lstrip("-").isdigit():
        idx = int(inner)
        if not -len(items) <= idx < len(items):
            raise ParameterError(
                f"parameter {text!r}: {where} has {len(items)} entries, no index {idx}"
            )
        return idx % len(items)
    names = [getattr(item, "name", None) for item in items]
    if inner in names:
        return names.index(inner)
    known = ", ".join(repr(n) for n in names if n is not None) or "(no named entries)"
    raise ParameterError(
        f"parameter {text!r}: {where} has no entry named {inner!r}; known: {known}"
    )


def _segment_error(text: str, where: str, seg: str, obj: Any) -> ParameterError:
    if isinstance(obj, BaseModel):
        fields = _fields_of(obj)
        kind = _derived_kind(obj)
        helpers = [name for (k, name) in DERIVED if k == kind]
        extra = f"; derived helpers: {', '.join(helpers)}" if helpers else ""
        kind_name = getattr(obj, "kind", None)
        what = type(obj).__name__ + (f" (kind {kind_name!r})" if isinstance(kind_name, str) else "")
        return ParameterError(
            f"parameter {text!r}: {where or 'the scenario'} is a {what} with no field {seg!r}; "
            f"its fields: {', '.join(fields)}{extra}"
        )
    if obj is None:
        return ParameterError(
            f"parameter {text!r}: {where} is not set (None) in this scenario, so it has no "
            f"{seg!r}; set {where} as a whole instead"
        )
    return ParameterError(
        f"parameter {text!r}: {where} is a value ({obj!r}, of type {type(obj).__name__}), "
        f"which has no {seg!r}"
    )


def resolve(scenario: Scenario, path: str) -> ParameterPath:
    """Check that ``path`` names a value (or a derived helper) of ``scenario``.

    Raises :class:`ParameterError` naming the path, the part that failed, and what exists there.
    A mapping (``tiers``, ``population.routes``, ...) may gain a new key; a model may not.
    """
    segments = parse(path)
    obj: Any = scenario
    keys: list[str | int] = []
    where = ""
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg.startswith("[") and isinstance(obj, list):
            idx = _step_list(obj, seg, where, path)
            keys.append(idx)
            obj = obj[idx]
        elif isinstance(obj, dict):
            key = seg[1:-1] if seg.startswith("[") else seg
            keys.append(key)
            # a mapping may gain an entry (e.g. a tier override not written yet)
            obj = {} if key not in obj and not last else obj.get(key)
        elif isinstance(obj, BaseModel) and not seg.startswith("[") and seg in _fields_of(obj):
            keys.append(seg)
            obj = getattr(obj, seg)
        elif last and (_derived_kind(obj), seg) in DERIVED:
            if not keys:
                raise _segment_error(path, where, seg, obj)
            return ParameterPath(path, tuple(keys), kind=_derived_kind(obj), helper=seg)
        else:
            raise _segment_error(path, where, seg, obj)
        where = f"{where}{seg}" if seg.startswith("[") else f"{where}.{seg}" if where else seg
    return ParameterPath(path, tuple(keys))


def _one_line(text: str) -> str:
    """A pydantic message on one line (nested errors keep their text, not their layout)."""
    lines = [ln.strip() for ln in text.splitlines()]
    return "; ".join(ln for ln in lines if ln and not ln.startswith("For further information"))


def _errors(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = _one_line(str(err["msg"]))
            parts.append(f"{loc}: {msg}" if loc else msg)
        return "; ".join(parts)
    return _one_line(str(exc))


def label(value: Any) -> Any:
    """A value as a DataFrame cell: scalars as they are, lists and mappings as JSON text."""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, sort_keys=True)
    return value


def apply(
    scenario: Scenario, values: Mapping[str, Any], paths: Mapping[str, ParameterPath] | None = None
) -> Scenario:
    """A validated copy of ``scenario`` with ``values`` (path -> value) set, in order.

    ``paths`` may hold already resolved paths. Raises :class:`ParameterError` naming the
    parameter(s) and the schema's reason when the result is not a runnable scenario.
    """
    data = scenario.model_dump()
    for text, value in values.items():
        path = paths[text] if paths is not None and text in paths else resolve(scenario, text)
        try:
            path.set_in(data, value)
        except (ValueError, TypeError) as exc:
            raise ParameterError(
                f"parameter {text!r} = {value!r} is refused: {_errors(exc)}"
            ) from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        if len(values) == 1:
            ((text, value),) = values.items()
            raise ParameterError(
                f"parameter {text!r} = {value!r} is refused by the scenario schema: {_errors(exc)}"
            ) from None
        culprit = _single_culprit(scenario, values, paths)
        if culprit is not None:
            raise culprit from None
        shown = ", ".join(f"{k} = {v!r}" for k, v in values.items())
        raise ParameterError(
            f"the combination {shown} is refused by the scenario schema: {_errors(exc)}"
        ) from None


def _single_culprit(
    scenario: Scenario, values: Mapping[str, Any], paths: Mapping[str, ParameterPath] | None
) -> ParameterError | None:
    """The error of the first parameter that is refused on its own (None if none is)."""
    for text, value in values.items():
        try:
            apply(scenario, {text: value}, paths)
        except ParameterError as exc:
            return exc
    return None
