"""Assemble the Lua sources of :class:`~ratesim.stores.redis_store.RedisStore`.

The package ships ``ratesim/lua/prelude.lua`` (exact integer helpers and the generic
read-kernel-write wrapper), ``ratesim/lua/lazy.lua`` (the wrapper of ``lazy = true`` algorithms,
sent only with them) and one ``.lua`` file per algorithm module, each a line-by-line port of
the Python kernel that defines ``K['<algorithm name>'] = {step = ..., expires = ...}``.

Two deliveries are built from the same text:

* one Redis **Function library** (Redis >= 7) registering ``<library>_<algorithm>`` for every
  algorithm; the library name carries a hash of its source, so two ratesim versions sharing a
  server never replace each other's functions;
* one **EVALSHA script** per algorithm (prelude + its kernel file +
  ``return run(..., true)``: ``once``, nothing survives a script call), for servers without
  Functions.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ratesim.stores._redis_lua_script import flat_script

#: Algorithm name (``Algorithm.name``) -> the Lua file holding its port.
LUA_FILES: dict[str, str] = {
    "gcra": "gcra.lua",
    "token_bucket": "token_bucket.lua",
    "sliding_log": "sliding_log.lua",
    "sliding_window_counter": "window_counter.lua",
    "fixed_window": "window_counter.lua",
    "bucketed_window": "bucketed.lua",
    "double_buffered_window": "bucketed.lua",
    # Gateway algorithms of the importers (issue 12).
    "nginx_leaky": "nginx_leaky.lua",
    "calendar_window": "calendar_window.lua",
    "counting_fixed_window": "calendar_window.lua",
    "warm_up": "warm_up.lua",
    "reserve_bucket": "reserve_bucket.lua",
    "pacer": "pacer.lua",
}

#: Algorithms whose Lua keeps state as packed 8-byte doubles read slot by slot (``lazy = true``).
LAZY_STATE: frozenset[str] = frozenset({"sliding_log"})

#: First byte of a packed (non-lazy) state: the fields follow as 8-byte big-endian doubles.
PACKED_TAG = b"\x01"


def decode_state(raw: bytes | str, size: int, *, lazy: bool = False) -> list[int]:
    """The fields of a stored state, as the Lua wrapper reads them.

    Three encodings: lazy state (8-byte big-endian doubles, no tag, absent slots 0), packed
    state (:data:`PACKED_TAG` then ``size`` doubles; what the Lua writes) and the text encoding
    of earlier versions (comma-separated decimal integers; still read, never written).
    """
    data = raw if isinstance(raw, bytes) else raw.encode("latin-1")
    if lazy:
        values = [int(v) for (v,) in struct.iter_unpack(">d", data)]
        return values + [0] * (size - len(values))
    if data[:1] == PACKED_TAG and len(data) == 1 + 8 * size:
        return [int(v) for v in struct.unpack(f">{size}d", data[1:])]
    return [int(x) for x in data.decode().split(",")]


def _read(name: str) -> str:
    return resources.files("ratesim").joinpath("lua", name).read_text(encoding="utf-8")


def available() -> dict[str, str]:
    """The algorithms whose Lua file is present in the package (name -> file)."""
    out = {}
    for algo, fname in LUA_FILES.items():
        if resources.files("ratesim").joinpath("lua", fname).is_file():
            out[algo] = fname
    return out


@dataclass(frozen=True)
class LuaBundle:
    """Everything a store needs to run the Lua side, computed once per process."""

    library_name: str
    library_source: str
    #: algorithm name -> FCALL function name
    functions: dict[str, str]
    #: algorithm name -> (EVAL source, SHA1 hex)
    scripts: dict[str, tuple[str, str]]


def _kernel_files(algos: dict[str, str]) -> list[str]:
    seen: list[str] = []
    for fname in algos.values():
        if fname not in seen:
            seen.append(fname)
    return seen


@cache
def bundle() -> LuaBundle:
    """Build (once) the Function library and the per-algorithm EVALSHA scripts."""
    algos = available()
    prelude = _read("prelude.lua")
    # lazy.lua defines the wrapper of lazy algorithms: sent only where one is.
    lazy = _read("lazy.lua")
    if any(a in LAZY_STATE for a in algos):
        prelude = f"{prelude}\n{lazy}"
    kernels = "\n".join(_read(f) for f in _kernel_files(algos))
    digest = hashlib.sha1((prelude + kernels).encode()).hexdigest()[:12]
    library_name = f"ratesim_{digest}"
    functions = {a: f"{library_name}_{a}" for a in algos}
    registrations = "\n".join(
        f"redis.register_function('{fn}', function(keys, args) return run(K['{a}'], keys, args) end)"
        for a, fn in functions.items()
    )
    library_source = f"#!lua name={library_name}\n{prelude}\n{kernels}\n{registrations}\n"
    scripts = {}
    for a, fname in algos.items():
        sources = [("prelude.lua", _read("prelude.lua"))]
        if a in LAZY_STATE:
            sources.append(("lazy.lua", lazy))
        sources.append((fname, _read(fname)))
        src = flat_script(sources, a)
        scripts[a] = (src, hashlib.sha1(src.encode()).hexdigest())
    return LuaBundle(library_name, library_source, functions, scripts)
