"""Importers: read a gateway's own rate-limit config and return a ratesim policy with the
semantics that gateway really implements (``configs-and-traffic.md`` §3.7).

``load(path, kind=None, **options) -> Imported``. Kinds: ``envoy-ratelimit``, ``envoy-local``,
``nginx``, ``traefik``, ``kong``, ``sentinel``; without ``kind`` it is guessed from the file.
Options: ``refill="continuous" | "timer"`` (Envoy local_ratelimit, 1.31+ or older),
``members=N`` (Envoy ``local_cluster_rate_limit``: a fixed member count; without it the
layer follows the live nodes, ``local_share: follow``), ``nodes=N`` (Sentinel cluster
``thresholdType: 0``). What cannot be mapped raises :class:`ConfigError` (a
:class:`~ratesim.scenario.ScenarioError`) naming the file, the line and the construct.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import envoy_local, envoy_ratelimit, kong, nginx, sentinel, traefik
from .base import ConfigError, Imported, read_text

__all__ = ["KINDS", "ConfigError", "Imported", "guess_kind", "load"]

KINDS: dict[str, Callable[..., Imported]] = {
    "envoy-ratelimit": envoy_ratelimit.load,
    "envoy-local": envoy_local.load,
    "nginx": nginx.load,
    "traefik": traefik.load,
    "kong": kong.load,
    "sentinel": sentinel.load,
}


def load(path: str | Path, kind: str | None = None, **options: Any) -> Imported:
    """Import the gateway config at ``path`` (see the module docstring)."""
    p = Path(path)
    text = read_text(p)
    if kind is None:
        kind = guess_kind(p, text)
    if kind not in KINDS:
        raise ConfigError(p, None, f"kind {kind!r}", f"must be one of {', '.join(KINDS)}")
    return KINDS[kind](p, text, **options)


def guess_kind(path: Path, text: str) -> str:
    """The importer kind a file looks like, from its syntax and telltale fields."""
    suffix = path.suffix.lower()
    if suffix == ".conf" or "limit_req" in text:
        return "nginx"
    if suffix == ".toml":
        return "traefik"
    data: Any = None
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        data = None
    if isinstance(data, list) or (isinstance(data, dict) and "flowRules" in data):
        return "sentinel"
    if isinstance(data, dict):
        if "domain" in data and "descriptors" in data:
            return "envoy-ratelimit"
        if "_format_version" in data or "rate-limiting" in text:
            return "kong"
        if "rateLimit" in text:
            return "traefik"
        if "token_bucket" in text and "stat_prefix" in text:
            return "envoy-local"
    raise ConfigError(
        path,
        None,
        "kind",
        f"cannot tell which gateway wrote this file; give the kind ({', '.join(KINDS)})",
    )
