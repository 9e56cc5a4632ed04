"""Traefik's ``RateLimit`` middleware, from a dynamic config (YAML or TOML) or a ``Middleware``
custom resource (``spec.rateLimit``).

``r = average / period`` (``average: 0`` = no limit, ``period`` defaults to 1 s), ``burst`` (< 1
raised to 1): an x/time/rate bucket that starts full, driven by ``Reserve()``. A request whose
wait is at most ``maxDelay`` is held and then forwarded, with ``maxDelay = 1 s / (2 * int(r))``,
or 500 ms when ``r < 1``; a longer wait is a 429. That is
:class:`~ratesim.algorithms.ReserveTokenBucket`, per Traefik instance and source (node scope),
or, with ``redis`` (v3), one bucket in Redis fed each instance's own clock (global scope; Redis
errors answer 500, i.e. fail closed).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from .base import Builder, Imported, as_number, line_of, load_yaml

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)?\s*$")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def load(path: Path, text: str, **_options: Any) -> Imported:
    """Import every RateLimit middleware of a Traefik dynamic config."""
    b = Builder("traefik", path)
    if path.suffix.lower() == ".toml":
        try:
            root: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise b.error(None, "TOML", f"not valid TOML: {exc}") from None
    else:
        root = load_yaml(path, text)
    found = list(_middlewares(root))
    if not found:
        raise b.error(line_of(root), "rateLimit", "no RateLimit middleware found "
                      "(http.middlewares.<name>.rateLimit or a Middleware spec.rateLimit)")  # fmt: skip
    for name, cfg in found:
        _add(b, name, cfg, text)
    b.facts["clock"] = "each Traefik instance's own clock"
    return b.result()


def _middlewares(root: Any) -> Any:
    if not isinstance(root, dict):
        return
    if str(root.get("kind", "")) == "Middleware" and isinstance(root.get("spec"), dict):
        if "rateLimit" in root["spec"]:
            meta = root.get("metadata") or {}
            yield str(meta.get("name", "ratelimit")), root["spec"]["rateLimit"]
        return
    mws = (root.get("http") or {}).get("middlewares") or {}
    if isinstance(mws, dict):
        for name, mw in mws.items():
            if isinstance(mw, dict) and "rateLimit" in mw:
                yield str(name), mw["rateLimit"]


def _text_line(text: str, word: str, after: str) -> int | None:
    """The first line holding ``word`` after the first line holding ``after`` (TOML has no
    line numbers in the parsed data)."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if after in ln), 0)
    for i in range(start, len(lines)):
        if word in lines[i]:
            return i + 1
    return None


def period_s(b: Builder, value: Any, line: int | None) -> float:
    """A Traefik duration (``"1m"``, ``"10s"``, or a number of seconds) in seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise b.error(line, f"period {value!r}", "must be a duration like 1s, 10s, 1m or 1h")
    return float(m.group(1)) * _UNIT_S[m.group(2) or "s"]


def _add(b: Builder, name: str, cfg: Any, text: str) -> None:
    def line(key: str) -> int | None:
        return line_of(cfg, key) if line_of(cfg) else _text_line(text, key, name)

    if not isinstance(cfg, dict):
        raise b.error(_text_line(text, "rateLimit", name), "rateLimit", "must be a mapping")
    average = as_number(b, cfg.get("average", 0), line("average"), "average", integer=False)
    if average <= 0:
        b.note(f"{name}: average 0 means no limit: no layer")
        return
    period = period_s(b, cfg.get("period", "1s"), line("period"))
    if period <= 0:
        raise b.error(line("period"), "period", "must be positive")
    burst = as_number(b, cfg.get("burst", 1), line("burst"), "burst", integer=True)
    if burst < 1:
        b.note(f"{name}: burst {burst} is raised to 1, as Traefik does")
        burst = 1
    rate = average / period
    # Go: time.Second / time.Duration(2 * int(r)) in whole ns, floored here to whole µs.
    max_delay = 0.5 if rate < 1 else (10**9 // (2 * int(rate))) // 1000 / 1e6
    b.note(f"{name}: {average:g} per {period:g} s is {rate:g}/s with a bucket of {burst}; a "
           f"request is held up to {max_delay * 1000:g} ms (Traefik's maxDelay) instead of "
           "rejected, and the simulation holds it as long before forwarding it")  # fmt: skip
    crit = cfg.get("sourceCriterion") or {}
    key = "{user}"
    if isinstance(crit, dict) and crit.get("requestHost"):
        key = "*"
        b.note(f"{name}: sourceCriterion.requestHost: one bucket per Host (one host simulated)")
    elif isinstance(crit, dict) and crit.get("requestHeaderName"):
        b.note(f"{name}: one bucket per {crit['requestHeaderName']} header value, "
               "modelled as the user")  # fmt: skip
    else:
        b.note(f"{name}: one bucket per client IP (the default ipStrategy), modelled as the user")
    redis = cfg.get("redis")
    layer: dict[str, Any] = {"scope": "node"}
    where = "Traefik instance (TTL map of <= 65,536 sources)"
    if redis:
        layer = {"scope": "global", "time_source": "client", "failure_mode": "closed"}
        where = "shared Redis (fed each instance's clock)"
        b.note(f"{name}: Redis errors answer 500: mapped to failure_mode closed")
    b.add(line("average"), f"rateLimit {name}", where, name=name,
          algorithm={"kind": "reserve_bucket", "rate": rate, "burst": burst,
                     "max_delay_s": max_delay},
          key=key, **layer)  # fmt: skip
