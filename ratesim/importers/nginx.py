"""nginx ``limit_req_zone`` / ``limit_req``, parsed from a real ``nginx.conf``.

The parser reads nginx's syntax (directives ending in ``;``, ``{ }`` blocks, ``#`` comments,
quoted strings) and follows ``http`` / ``server`` / ``location`` nesting with nginx's
inheritance: a level without ``limit_req`` (or ``limit_req_dry_run``) inherits its parent's.
Each ``limit_req`` becomes a :class:`~ratesim.algorithms.NginxLeakyBucket` layer (integer
milli-rate, ``burst``, ``nodelay`` / ``delay=``) per nginx host (node scope), filtered to the
location's route when it sits in a ``location`` block. ``include`` is refused: ratesim reads one
file, and a limit hidden in another would be silently lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import Builder, ConfigError, Imported, field_for, template

_RATE = re.compile(r"^(\d+)r/([sm])$")


@dataclass
class Directive:
    """One nginx directive: its words, its line, and its block (for block directives)."""

    name: str
    args: list[str]
    line: int
    block: list[Directive] | None = None


@dataclass
class _Zone:
    key: str
    rate: int
    unit: str
    line: int
    sync: bool


@dataclass
class _Ctx:
    limits: list[Directive] = field(default_factory=list)
    dry_run: bool = False
    route: str | None = None


def tokenize(path: Path, text: str) -> list[tuple[str, int]]:
    """nginx's tokens with their lines: words, quoted strings, ``;``, ``{``, ``}``."""
    out: list[tuple[str, int]] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in ";{}":
            out.append((c, line))
            i += 1
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise ConfigError(path, line, "string", "unterminated quoted string")
            out.append((text[i + 1 : j], line))
            line += text[i:j].count("\n")
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in ";{}#":
                j += 1
            out.append((text[i:j], line))
            i = j
    return out


def parse(path: Path, text: str) -> list[Directive]:
    """The directive tree of an nginx config (``ConfigError`` on unbalanced braces)."""
    tokens = tokenize(path, text)
    pos = 0

    def block(depth: int) -> list[Directive]:
        nonlocal pos
        out: list[Directive] = []
        words: list[str] = []
        first = 0
        while pos < len(tokens):
            tok, line = tokens[pos]
            pos += 1
            if tok == ";":
                if not words:
                    raise ConfigError(path, line, "';'", "unexpected ';' without a directive")
                out.append(Directive(words[0], words[1:], first))
                words = []
            elif tok == "{":
                if not words:
                    raise ConfigError(path, line, "'{'", "block without a directive name")
                out.append(Directive(words[0], words[1:], first, block(depth + 1)))
                words = []
            elif tok == "}":
                if words:
                    raise ConfigError(path, first, f"directive {words[0]!r}", "missing ';'")
                if depth == 0:
                    raise ConfigError(path, line, "'}'", "unexpected '}'")
                return out
            else:
                if not words:
                    first = line
                words.append(tok)
        if words:
            raise ConfigError(path, first, f"directive {words[0]!r}", "missing ';'")
        if depth > 0:
            raise ConfigError(path, tokens[-1][1] if tokens else 1, "block", "missing '}'")
        return out

    return block(0)


def load(path: Path, text: str, **_options: Any) -> Imported:
    """Import the ``limit_req`` limits of an nginx config (see the module docstring)."""
    b = Builder("nginx", path)
    tree = parse(path, text)
    zones: dict[str, _Zone] = {}
    _collect_zones(b, tree, zones)
    uses: list[tuple[_Ctx, list[Directive]]] = []
    _walk(tree, _Ctx(), uses, handles=False)
    if not any(limits for _c, limits in uses):
        raise b.error(None, "limit_req", "no limit_req directive found")
    _emit(b, uses, zones)
    b.facts["clock"] = "each nginx host's millisecond clock (ngx_current_msec)"
    return b.result()


def _collect_zones(b: Builder, tree: list[Directive], zones: dict[str, _Zone]) -> None:
    for d in tree:
        if d.name == "include":
            raise b.error(d.line, f"include {' '.join(d.args)}",
                          "includes are not followed: paste the included file in, or import it "
                          "on its own")  # fmt: skip
        if d.name == "limit_req_zone":
            _zone(b, d, zones)
        if d.block is not None:
            _collect_zones(b, d.block, zones)


def _zone(b: Builder, d: Directive, zones: dict[str, _Zone]) -> None:
    if not d.args:
        raise b.error(d.line, "limit_req_zone", "needs a key, zone= and rate=")
    key, name, rate, unit, sync = d.args[0], None, 1, "s", False
    for a in d.args[1:]:
        if a.startswith("zone="):
            name = a[5:].split(":", 1)[0]
        elif a.startswith("rate="):
            m = _RATE.match(a[5:])
            if not m or int(m.group(1)) < 1:
                raise b.error(d.line, f"limit_req_zone {a}",
                              "invalid rate: nginx takes whole requests, Nr/s or Nr/m")  # fmt: skip
            rate, unit = int(m.group(1)), m.group(2)
        elif a == "sync":
            sync = True
        else:
            raise b.error(d.line, f"limit_req_zone {a}", "invalid parameter")
    if not name:
        raise b.error(d.line, "limit_req_zone", 'must have the "zone" parameter')
    if name in zones:
        raise b.error(d.line, f"limit_req_zone zone={name}", "duplicate zone name")
    zones[name] = _Zone(key, rate, unit, d.line, sync)


def _walk(tree: list[Directive], parent: _Ctx, uses: list[tuple[_Ctx, list[Directive]]],
          handles: bool) -> None:  # fmt: skip
    """Collect the limits of every context that handles requests, with nginx's inheritance.

    A level's own ``limit_req`` replace the inherited ones (nginx's merge); so does its own
    ``limit_req_dry_run``. Requests are handled in locations, or by a server without any.
    """
    own = [d for d in tree if d.name == "limit_req"]
    ctx = _Ctx(own or list(parent.limits), parent.dry_run, parent.route)
    for d in tree:
        if d.name == "limit_req_dry_run":
            ctx.dry_run = bool(d.args) and d.args[0] == "on"
    blocks = [d for d in tree if d.block is not None and d.name in ("http", "server", "location")]
    if handles or (not blocks and own):
        uses.append((ctx, ctx.limits))
    for d in blocks:
        route = (d.args[-1] if d.args else "/") if d.name == "location" else ctx.route
        sub_handles = d.name == "location" or (
            d.name == "server" and not any(x.name == "location" for x in d.block or [])
        )
        _walk(d.block or [], _Ctx(ctx.limits, ctx.dry_run, route), uses, sub_handles)


def _emit(b: Builder, uses: list[tuple[_Ctx, list[Directive]]], zones: dict[str, _Zone]) -> None:
    """One layer per distinct (zone, burst, delay, dry run), on the routes that use it."""
    merged: dict[tuple[Any, ...], tuple[Directive, list[str | None]]] = {}
    for ctx, limits in uses:
        if len(limits) > 1:
            b.note("several limit_req on one location: nginx commits none unless all pass; "
                   "ratesim's earlier layers commit before a later one rejects")  # fmt: skip
        for d in limits:
            params = _limit_params(b, d, zones)
            k = (*params, ctx.dry_run)
            if k not in merged:
                merged[k] = (d, [])
            merged[k][1].append(ctx.route)
    names = {k[0] for k in merged}
    for (zone_name, burst, nodelay, delay, dry_run), (d, routes) in merged.items():
        z = zones[zone_name]
        if sum(1 for k in merged if k[0] == zone_name) > 1 and zone_name in names:
            b.note(f"zone {zone_name} is used with different parameters; nginx shares its "
                   "state, ratesim gives each use its own")  # fmt: skip
        if z.sync:
            b.note(f"zone {zone_name}: 'sync' (NGINX Plus zone_sync) shares state with delay; "
                   "ratesim keeps it per host")  # fmt: skip
        if not nodelay and delay < burst:
            b.note(f"zone {zone_name}: admitted excess is delayed (no nodelay); the simulation "
                   "holds each such request for its delay, then forwards it")  # fmt: skip
        fields = [f for v in re.findall(r"\$(\w+)", z.key) if (f := _var_field(v))]
        b.add(d.line, f"limit_req zone={zone_name}", "nginx host", name=zone_name,
              algorithm={"kind": "nginx_leaky", "rate": z.rate, "unit": z.unit, "burst": burst,
                         "nodelay": nodelay, "delay": delay},
              scope="node", key=template(fields), mode="shadow" if dry_run else "enforce",
              routes=None if None in routes else sorted(set(r for r in routes if r)))  # fmt: skip
        b.note(f"zone {zone_name}: key {z.key} -> {template(fields)}")
    if any(r is not None for _d, rs in merged.values() for r in rs):
        b.note("a location's limits apply to the route named by its path (exact match)")


def _limit_params(b: Builder, d: Directive, zones: dict[str, _Zone]) -> tuple[str, int, bool, int]:
    zone_name, burst, nodelay, delay = None, 0, False, 0
    for a in d.args:
        if a.startswith("zone="):
            zone_name = a[5:]
        elif a.startswith("burst="):
            burst = _positive(b, d, a, "burst")
        elif a.startswith("delay="):
            delay = _positive(b, d, a, "delay")
        elif a == "nodelay":
            nodelay = True
        else:
            raise b.error(d.line, f"limit_req {a}", "invalid parameter")
    if zone_name is None:
        raise b.error(d.line, "limit_req", 'must have the "zone" parameter')
    if zone_name not in zones:
        raise b.error(d.line, f"limit_req zone={zone_name}",
                      "unknown zone (no limit_req_zone defines it)")  # fmt: skip
    return zone_name, burst, nodelay, 0 if nodelay else min(delay, burst)


#: nginx variables that are one value per server (one shared counter), or name the route.
_CONSTANT_VARS = ("server_name", "host", "http_host", "server_addr", "server_port", "scheme")
_ROUTE_VARS = ("uri", "request_uri", "document_uri")


def _var_field(var: str) -> str | None:
    """The request field an nginx variable in a zone key stands for (None: constant)."""
    if var in _CONSTANT_VARS:
        return None
    if var in _ROUTE_VARS:
        return "route"
    return field_for(var) if var.startswith(("http_", "arg_", "cookie_")) else "user"


def _positive(b: Builder, d: Directive, arg: str, what: str) -> int:
    text = arg.split("=", 1)[1]
    if not text.isdigit() or int(text) <= 0:
        raise b.error(d.line, f"limit_req {arg}", f'invalid {what} value "{text}"')
    return int(text)
