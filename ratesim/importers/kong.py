"""Kong's ``rate-limiting`` plugin, from a declarative config (``kong.yml`` / decK).

Every configured period (``second`` .. ``year``) is its own UTC-calendar fixed window
(:class:`~ratesim.algorithms.CalendarWindow`) computed from the node's ``ngx.time()``, all
enforced. ``policy: local`` keeps counters per Kong node (node scope); ``cluster`` in Kong's
database and ``redis`` in Redis (global scope). Kong rejects when ``limit - usage <= 0`` and, for
``local`` / ``cluster``, increments only admitted requests (deferred with ``ngx.timer.at(0)``,
so concurrent requests can read the same count: not modelled); ``redis`` with ``sync_rate:
-1`` increments synchronously, so **rejected requests count too**. ``fault_tolerant`` (default
true) proxies without limiting when the datastore fails: fail open, else fail closed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Builder, Imported, LineDict, as_number, line_of, load_yaml

PERIODS = ("second", "minute", "hour", "day", "month", "year")
LIMIT_BY = {
    "consumer": "{user}",
    "credential": "{user}",
    "ip": "{user}",
    "header": "{user}",
    "consumer-group": "{tier}",
    "service": "*",
    "path": "{route}",
}


def load(path: Path, text: str, **_options: Any) -> Imported:
    """Import every ``rate-limiting`` plugin of a Kong declarative config."""
    b = Builder("kong", path)
    root = load_yaml(path, text)
    found = list(_plugins(root, None))
    if not found:
        raise b.error(line_of(root), "plugins", "no rate-limiting plugin found")
    for plugin, scope in found:
        _add_plugin(b, plugin, scope)
    b.facts["clock"] = "each Kong node's ngx.time() (whole seconds): skew shifts the windows"
    return b.result()


def _plugins(node: Any, scope: Any) -> Any:
    """``(plugin, scope)`` for every rate-limiting plugin; ``scope`` is its route or service."""
    if isinstance(node, dict):
        for p in node.get("plugins") or []:
            if isinstance(p, dict) and str(p.get("name", "")).startswith("rate-limiting"):
                yield p, scope
        for key in ("services", "routes", "consumers"):
            for child in node.get(key) or []:
                if isinstance(child, dict):
                    yield from _plugins(child, child)


def _add_plugin(b: Builder, plugin: LineDict, scope: Any) -> None:
    name = str(plugin["name"])
    if name != "rate-limiting":
        raise b.error(plugin.line_of("name"), f"plugin {name}",
                      "only the OSS rate-limiting plugin is mapped")  # fmt: skip
    if plugin.get("enabled") is False:
        b.note("a disabled rate-limiting plugin adds no layer")
        return
    cfg = plugin.get("config")
    if not isinstance(cfg, LineDict):
        raise b.error(plugin.line, "rate-limiting", "needs a config mapping")
    limits: list[tuple[str, int]] = []
    for period in PERIODS:
        if cfg.get(period) is not None:
            n = as_number(b, cfg[period], cfg.line_of(period), f"config.{period}", integer=False)
            if n < 1 or n != int(n):
                raise b.error(cfg.line_of(period), f"config.{period}",
                              f"must be a whole number >= 1 per {period}, got {cfg[period]!r}")  # fmt: skip
            limits.append((period, int(n)))
    if not limits:
        raise b.error(cfg.line, "config", f"needs at least one of {', '.join(PERIODS)}")
    for (p1, n1), (p2, n2) in zip(limits, limits[1:], strict=False):
        if n2 < n1:
            raise b.error(cfg.line_of(p2), f"config.{p2}",
                          f"the limit for {p2} ({n2}) cannot be lower than the limit for "
                          f"{p1} ({n1}), as Kong's schema says")  # fmt: skip
    policy = str(cfg.get("policy", "local"))
    if policy not in ("local", "cluster", "redis"):
        raise b.error(cfg.line_of("policy"), f"config.policy {policy!r}",
                      "must be local, cluster or redis")  # fmt: skip
    limit_by = str(cfg.get("limit_by", "consumer"))
    if limit_by not in LIMIT_BY:
        raise b.error(cfg.line_of("limit_by"), f"config.limit_by {limit_by!r}",
                      f"must be one of {', '.join(LIMIT_BY)}")  # fmt: skip
    sync_rate = as_number(b, cfg.get("sync_rate", -1), cfg.line_of("sync_rate"), "sync_rate",
                          integer=False)  # fmt: skip
    counted = policy == "redis" and sync_rate == -1
    layer = _scope_fields(b, policy, sync_rate, bool(cfg.get("fault_tolerant", True)))
    if scope is None and isinstance(plugin.get("route") or plugin.get("service"), str):
        # decK's top-level form names the route or service the plugin is attached to.
        scope = {"name": plugin.get("route") or plugin.get("service")}
    routes = _routes(b, scope)
    # Longest period first: a request a longer window rejects never reaches the shorter ones.
    for period, n in reversed(limits):
        b.add(cfg.line_of(period), f"config.{period}", _where(policy),
              name=f"kong-{period}", algorithm={"kind": "calendar_window", "limit": n,
              "unit": period, "count_rejected": counted}, key=LIMIT_BY[limit_by], routes=routes,
              **layer)  # fmt: skip
    if len(limits) > 1:
        b.note("Kong increments every period only when all pass; ratesim's longer-period layers "
               "count a request a shorter period then rejects")  # fmt: skip
    b.note(f"limit_by {limit_by} -> key {LIMIT_BY[limit_by]}")


def _where(policy: str) -> str:
    return {"local": "Kong node", "cluster": "Kong database", "redis": "shared Redis"}[policy]


def _scope_fields(
    b: Builder, policy: str, sync_rate: float, fault_tolerant: bool
) -> dict[str, Any]:
    if policy == "local":
        b.note("policy local: counters per Kong node, so N nodes admit N times the limit; the "
               "deferred increment (ngx.timer.at) race between concurrent requests is not "
               "modelled")  # fmt: skip
        b.facts["state"] = "per node"
        return {"scope": "node"}
    b.facts["state"] = "shared"
    if policy == "cluster":
        b.note("policy cluster: the database counter is modelled as the shared store")
    if policy == "redis" and sync_rate != -1:
        b.note(f"sync_rate {sync_rate:g}: node-local deltas flushed every {sync_rate:g} s; "
               "ratesim counts synchronously (staleness not modelled, rejected requests not "
               "counted)")  # fmt: skip
    if not fault_tolerant:
        b.note("fault_tolerant false: a datastore error answers 500 (fail closed)")
    return {"scope": "global", "time_source": "client",
            "failure_mode": "open" if fault_tolerant else "closed"}  # fmt: skip


def _routes(b: Builder, scope: Any) -> list[str] | None:
    if not isinstance(scope, dict):
        return None
    if "paths" in scope and isinstance(scope["paths"], list) and scope["paths"]:
        b.note("a route-scoped plugin applies to the routes named by the route's paths")
        return [str(p) for p in scope["paths"]]
    if "username" in scope or "custom_id" in scope:
        b.note("a consumer-scoped plugin is applied to every user (ratesim has no consumers)")
        return None
    if "name" in scope:
        b.note("a service- or route-scoped plugin applies to the route named like it")
        return [str(scope["name"])]
    return None
