"""Envoy's local rate limit filter (``envoy.filters.http.local_ratelimit``, ``LocalRateLimit``).

The file is the filter's config, or any Envoy YAML that holds it (a bootstrap with
``http_filters``, a per-route ``typed_per_filter_config``): every mapping with a ``stat_prefix``
and a ``token_bucket`` is one filter. Its bucket is a :class:`~ratesim.algorithms.TokenBucket`
of ``max_tokens`` (the initial fill too) refilled ``tokens_per_fill`` (default 1) per
``fill_interval``, per Envoy process (node scope): refilled continuously (Envoy >= 1.31, the
default here) or by a timer adding ``tokens_per_fill`` every ``fill_interval`` (before 1.31:
``refill="timer"``). Descriptor buckets are consumed in ascending tokens/s order; the default
bucket only when no descriptor matched, or always with ``always_consume_default_token_bucket``.
``filter_enabled`` / ``filter_enforced`` default to 0%: not enabled = no layer, enabled but not
enforced = shadow. ``local_cluster_rate_limit`` divides ``tokens_per_fill`` by the members of
the local cluster (``ceil(tpf / members)``): the layer keeps the whole ``tokens_per_fill`` with
``local_share: follow``, so each simulated node's bucket refills ``ceil(tpf / live nodes)``,
following ``topology.changes`` (see :class:`ratesim.policy.LayerSpec`); the ``members=N``
option fixes the count instead (the bucket's rate divided once, ``ceil(tpf / N)``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from .base import Builder, Imported, LineDict, as_number, field_for, line_of, load_yaml, template

_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
#: Envoy refuses a timer refill faster than this (before 1.31).
MIN_TIMER_FILL_S = 0.05


def load(path: Path, text: str, *, refill: str = "continuous", members: int | None = None,
         **_options: Any) -> Imported:  # fmt: skip
    """Import a local_ratelimit filter config (see the module docstring)."""
    b = Builder("envoy-local", path)
    if refill not in ("continuous", "timer"):
        raise b.error(None, "refill option", f"must be 'continuous' or 'timer', got {refill!r}")
    root = load_yaml(path, text)
    filters = list(_find_filters(root))
    if not filters:
        raise b.error(line_of(root), "local_ratelimit",
                      "no mapping with stat_prefix and token_bucket found")  # fmt: skip
    for cfg in filters:
        _add_filter(b, cfg, refill, members)
    b.facts.update(
        refill=refill,
        clock="each Envoy process's own clock (state is per process)",
    )
    return b.result()


def _find_filters(node: Any) -> Any:
    if isinstance(node, dict):
        if "stat_prefix" in node and "token_bucket" in node:
            yield node
            return
        for v in node.values():
            yield from _find_filters(v)
    elif isinstance(node, list):
        for v in node:
            yield from _find_filters(v)


def _percent(b: Builder, cfg: LineDict, key: str) -> float:
    """A RuntimeFractionalPercent as a percentage (0 when absent, Envoy's safe default)."""
    frac = cfg.get(key)
    if frac is None:
        return 0.0
    default = frac.get("default_value", {}) if isinstance(frac, dict) else None
    if not isinstance(default, dict):
        raise b.error(cfg.line_of(key), key, "needs default_value {numerator, denominator}")
    num = as_number(b, default.get("numerator", 0), line_of(default), f"{key}.numerator",
                    integer=True)  # fmt: skip
    den_name = str(default.get("denominator", "HUNDRED"))
    if den_name not in _DENOMINATORS:
        raise b.error(line_of(default, "denominator"), f"{key}.denominator",
                      f"must be one of {', '.join(_DENOMINATORS)}")  # fmt: skip
    return 100.0 * num / _DENOMINATORS[den_name]


def _duration_s(b: Builder, value: Any, line: int | None) -> float:
    """A protobuf Duration (``"0.5s"`` or ``{seconds, nanos}``) in seconds."""
    if isinstance(value, dict):
        s = as_number(b, value.get("seconds", 0), line, "fill_interval.seconds", integer=True)
        ns = as_number(b, value.get("nanos", 0), line, "fill_interval.nanos", integer=True)
        return s + ns / 1e9
    m = _DURATION.match(str(value))
    if not m:
        raise b.error(line, f"fill_interval {value!r}", "must be a duration like '1s' or '0.5s'")
    return float(m.group(1))


def _bucket(b: Builder, tb: Any, line: int | None, refill: str, members: int | None,
            cluster: bool) -> tuple[dict[str, Any], float]:  # fmt: skip
    """The algorithm spec of one ``token_bucket`` and its tokens per second."""
    if not isinstance(tb, LineDict) or "max_tokens" not in tb or "fill_interval" not in tb:
        raise b.error(line, "token_bucket", "needs max_tokens and fill_interval")
    max_tokens = as_number(b, tb["max_tokens"], tb.line_of("max_tokens"), "max_tokens",
                           integer=True)  # fmt: skip
    tpf = as_number(b, tb.get("tokens_per_fill", 1), tb.line_of("tokens_per_fill"),
                    "tokens_per_fill", integer=True)  # fmt: skip
    fill_s = _duration_s(b, tb["fill_interval"], tb.line_of("fill_interval"))
    if max_tokens < 1 or tpf < 1 or fill_s <= 0:
        raise b.error(tb.line, "token_bucket", "max_tokens, tokens_per_fill and fill_interval "
                      "must be positive")  # fmt: skip
    if cluster and members is not None:
        tpf = math.ceil(tpf / members)  # a fixed member count: divided once, here
    rate = tpf / fill_s
    if refill == "timer":
        if fill_s < MIN_TIMER_FILL_S:
            raise b.error(tb.line_of("fill_interval"), "fill_interval",
                          "a timer refill needs fill_interval >= 50ms (Envoy < 1.31)")  # fmt: skip
        alg = {"kind": "token_bucket", "rate": rate, "burst": max_tokens, "refill": "ticker",
               "fill_interval_s": fill_s}  # fmt: skip
    else:
        alg = {"kind": "token_bucket", "rate": rate, "burst": max_tokens}
    return alg, rate


def _add_filter(b: Builder, cfg: LineDict, refill: str, members: int | None) -> None:
    prefix = str(cfg["stat_prefix"])
    enabled = _percent(b, cfg, "filter_enabled")
    enforced = _percent(b, cfg, "filter_enforced")
    if enabled == 0:
        b.note(f"{prefix}: filter_enabled is 0% (Envoy's default when unset): no layer")
        return
    if enabled < 100:
        b.note(f"{prefix}: filter_enabled samples {enabled:g}% of requests; ratesim limits all")
    if 0 < enforced < 100:
        b.note(f"{prefix}: filter_enforced is {enforced:g}%; ratesim enforces all")
    mode = "enforce" if enforced > 0 else "shadow"
    cluster = "local_cluster_rate_limit" in cfg
    extra: dict[str, Any] = {}
    if cluster and members is not None:
        b.facts["members"] = members
        b.note(f"{prefix}: local_cluster_rate_limit divides tokens_per_fill by the "
               f"{members} member(s) given (members=), not by the simulated live nodes")  # fmt: skip
    elif cluster:
        b.facts["members"] = "the live nodes (local_share: follow)"
        extra["local_share"] = "follow"
        b.note(f"{prefix}: local_cluster_rate_limit: each node refills ceil(tokens_per_fill / "
               "live nodes) (local_share: follow), capacity max_tokens unchanged; a node that "
               "joins starts full")  # fmt: skip
        if refill == "continuous":
            b.note(f"{prefix}: continuous refill shares whole tokens per second: ceil(rate / "
                   "live nodes) a second (Envoy's ceil(tokens_per_fill / members) per "
                   "fill_interval, the same for a 1s fill_interval)")  # fmt: skip
    if cfg.get("local_rate_limit_per_downstream_connection"):
        b.note(f"{prefix}: state is per downstream connection; ratesim keeps it per node")
    layers: list[tuple[float, str, dict[str, Any], list[str], int | None]] = []
    for d in cfg.get("descriptors") or []:
        entries = d.get("entries") if isinstance(d, dict) else None
        if not isinstance(entries, list) or not entries:
            raise b.error(line_of(d), "descriptors[].entries", "needs at least one entry")
        fields = []
        for e in entries:
            if not e.get("value"):
                fields.append(field_for(str(e.get("key", ""))))
        label = "_".join(f"{e.get('key')}_{e.get('value', '')}".rstrip("_") for e in entries)
        alg, rate = _bucket(b, d.get("token_bucket"), line_of(d), refill, members, cluster)
        layers.append((rate, f"{prefix}_{label}", alg, fields, line_of(d)))
    layers.sort(key=lambda x: x[0])  # Envoy consumes descriptor buckets slowest first
    if layers:
        b.note(f"{prefix}: descriptor entries with a value are assumed to match every request")
    alg, _rate = _bucket(b, cfg["token_bucket"], cfg.line_of("token_bucket"), refill, members,
                         cluster)  # fmt: skip
    if not layers or cfg.get("always_consume_default_token_bucket"):
        layers.append((0.0, prefix, alg, [], cfg.line_of("token_bucket")))
    else:
        b.note(f"{prefix}: the default bucket is consumed only when no descriptor matches; "
               "with every descriptor matching, it adds no layer")  # fmt: skip
    for _rate, name, spec, fields, line in layers:
        b.add(line, "token_bucket", "Envoy process", name=name, algorithm=spec, scope="node",
              key=template(fields), mode=mode, **extra)  # fmt: skip
