"""Envoy's global rate limit service (envoyproxy/ratelimit): ``domain`` + nested ``descriptors``.

Every leaf with a ``rate_limit`` becomes a :class:`~ratesim.algorithms.CountingFixedWindow`
layer (``requests_per_unit`` per epoch-aligned ``unit``, computed from the ratelimit replica's
own clock, **rejected hits counted**: the service runs ``INCRBY`` then compares), global scope
(one Redis), fail open after Envoy's 20 ms filter timeout (``failure_mode_deny`` defaults to
false). ``unlimited`` rules add no layer; ``shadow_mode`` makes a shadow layer; ``replaces``
drops the replaced rules (when both match, the service applies only the replacing one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Builder, Imported, LineDict, as_number, field_for, line_of, load_yaml, template

#: Envoy ratelimit's units in seconds (``month`` is 30 days and ``year`` 365 days in its code).
UNITS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86_400,
    "week": 604_800,
    "month": 2_592_000,
    "year": 31_536_000,
}
RULE_KEYS = {"key", "value", "rate_limit", "descriptors", "shadow_mode", "detailed_metric",
             "value_to_metric", "share_threshold", "quota_mode"}  # fmt: skip


def load(path: Path, text: str, **_options: Any) -> Imported:
    """Import an envoyproxy/ratelimit config file (see the module docstring)."""
    b = Builder("envoy-ratelimit", path)
    root = load_yaml(path, text)
    if not isinstance(root, dict) or "domain" not in root:
        raise b.error(line_of(root), "domain", "an Envoy ratelimit config needs a 'domain'")
    descriptors = root.get("descriptors")
    if not isinstance(descriptors, list) or not descriptors:
        raise b.error(line_of(root, "descriptors"), "descriptors", "must be a non-empty list")
    rules: list[tuple[list[str], LineDict, str]] = []
    _walk(b, descriptors, [], [], rules)
    replaced = {
        str(r.get("name"))
        for _f, d, _n in rules
        for r in (d["rate_limit"].get("replaces") or [])
        if isinstance(r, dict)
    }
    # Widest first: a request a wider counter rejects is still counted by it, and the narrower
    # counters behind it see the rest (see the note below).
    rules.sort(key=lambda r: len(set(r[0])))
    for fields, d, label in rules:
        _add_rule(b, fields, d, label, replaced)
    b.facts.update(
        domain=str(root["domain"]),
        clock="each ratelimit service replica's own Unix seconds (windows split under skew)",
        failure="Envoy fails open on a ratelimit error or after its 20 ms timeout "
        "(failure_mode_deny: false)",
    )
    if len(b.layers) > 1:
        b.note(
            "the service increments every matching descriptor's counter, even when another "
            "rejects; ratesim's layers stop at the first rejection, so the layers run widest "
            "first: a narrower counter misses the hits a wider one rejected"
        )
    return b.result()


def _walk(
    b: Builder,
    items: Any,
    fields: list[str],
    labels: list[str],
    out: list[tuple[list[str], LineDict, str]],
) -> None:
    """Collect ``(key fields, descriptor, label)`` for every descriptor with a ``rate_limit``."""
    if not isinstance(items, list):
        raise b.error(line_of(items), "descriptors", "must be a list of descriptors")
    for d in items:
        if not isinstance(d, LineDict) or "key" not in d:
            raise b.error(line_of(d) or line_of(items), "descriptor", "needs a 'key'")
        unknown = set(d) - RULE_KEYS
        if unknown:
            raise b.error(d.line_of(sorted(unknown)[0]), f"descriptor field {sorted(unknown)[0]!r}",
                          f"unknown (known: {', '.join(sorted(RULE_KEYS))})")  # fmt: skip
        key = str(d["key"])
        value = d.get("value")
        here = list(fields)
        if (
            value is not None
            and not str(value).endswith("*")
            and any(
                isinstance(o, dict) and o.get("key") == key and o.get("value") is None
                for o in items
            )
        ):
            # An override for particular values of a key that also has a per-value rule:
            # ratesim's users are not those values, so it cannot be aimed at them.
            b.note(f"descriptor {key}={value} overrides the per-value rule for that value "
                   "only: not simulated")  # fmt: skip
            continue
        if value is None or (str(value).endswith("*") and not d.get("share_threshold")):
            # Any value (or each value matching the wildcard) has its own counter.
            here.append(field_for(key))
            if value is not None:
                b.note(f"descriptor {key}={value}: each matching value is modelled as a "
                       f"{field_for(key)} (ratesim applies it to every request)")  # fmt: skip
        else:
            b.note(f"descriptor {key}={value} is assumed to match every simulated request")
        label = "_".join([*labels, key if value is None else f"{key}_{value}".rstrip("*")])
        if "rate_limit" in d:
            if not isinstance(d["rate_limit"], LineDict):
                raise b.error(d.line_of("rate_limit"), "rate_limit", "must be a mapping")
            out.append((here, d, label))
        if "descriptors" in d:
            _walk(b, d["descriptors"], here, [label], out)


def _add_rule(b: Builder, fields: list[str], d: LineDict, label: str, replaced: set[str]) -> None:
    rl: LineDict = d["rate_limit"]
    name = str(rl.get("name", label))
    if "name" in rl and name in replaced:
        b.note(f"rule {name!r} is replaced by another rule and is left out")
        return
    if rl.get("unlimited"):
        b.note(f"descriptor {label}: unlimited, no layer (the service never counts it)")
        return
    unit = rl.get("unit")
    if unit is None or str(unit).lower() not in UNITS:
        raise b.error(rl.line_of("unit"), f"rate_limit.unit {unit!r}",
                      f"must be one of {', '.join(UNITS)}")  # fmt: skip
    unit = str(unit).lower()
    if unit in ("month", "year"):
        b.note(f"rule {name}: Envoy's {unit} is a fixed {UNITS[unit] // 86400}-day window "
               "from the Unix epoch, not a calendar one")  # fmt: skip
    if "requests_per_unit" not in rl:
        raise b.error(rl.line, "rate_limit", "needs requests_per_unit (or unlimited: true)")
    n = as_number(b, rl["requests_per_unit"], rl.line_of("requests_per_unit"),
                  "requests_per_unit", integer=True)  # fmt: skip
    if n < 1:
        raise b.error(rl.line_of("requests_per_unit"), "requests_per_unit",
                      f"{n} rejects every request; ratesim needs >= 1")  # fmt: skip
    b.add(
        rl.line,
        "rate_limit",
        "shared Redis (one counter per window key)",
        name=name,
        algorithm={"kind": "counting_fixed_window", "limit": n, "window_s": UNITS[unit]},
        scope="global",
        key=template(fields),
        mode="shadow" if d.get("shadow_mode") else "enforce",
        failure_mode="open",
        timeout_ms=20.0,
        time_source="client",
    )
