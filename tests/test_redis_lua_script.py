"""The flat EVALSHA scripts (``ratesim.stores._redis_lua_script``) against the plain composition.

The plain composition is how a script was built before: the whole prelude, the lazy wrapper
where needed, the kernel file, then ``return run(K['<name>'], KEYS, ARGV, true)``. It runs the
very same Lua statements, so it is the obviously-correct reference: every flat script must give
the same reply, leave the same stored bytes and the same TTL, call after call.
"""

from __future__ import annotations

import numpy as np
import pytest
import redis

from ratesim.algorithms import (
    GCRA,
    BucketedWindow,
    CalendarWindow,
    CountingFixedWindow,
    DoubleBufferedWindow,
    FixedWindow,
    NginxLeakyBucket,
    ReserveTokenBucket,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
    UniformPacer,
    WarmUpBucket,
)
from ratesim.algorithms.base import Algorithm
from ratesim.stores import _redis_lua
from ratesim.stores._redis_lua_script import flat_script, statements
from ratesim.stores.redis_store import RedisStore

T0_US = 1_700_000_000_000_000

LIMITERS: list[Algorithm] = [
    GCRA(3, 10, 1),
    TokenBucket(10, 4),
    TokenBucket(100, 4, "ticker", 0.01),
    FixedWindow(3, 0.01),
    SlidingWindowCounter(3, 0.01),
    SlidingWindowLog(4, 0.02),
    BucketedWindow(4, 0.02, 5),
    DoubleBufferedWindow(4, 0.02, 4, 0.005),
    BucketedWindow(6, 0.3, 300),  # 600 fields: packed field by field
    NginxLeakyBucket(10, "s", burst=20, delay=8),
    CalendarWindow(3, "second"),
    CountingFixedWindow(3, 0.05),
    WarmUpBucket(10, 2),
    ReserveTokenBucket(10, 3, 0.05),
    UniformPacer(10, 500),
]


def plain_script(name: str) -> str:
    """The reference: every statement of the sources, then one call of ``run``."""
    read = _redis_lua._read
    head = read("prelude.lua")
    if name in _redis_lua.LAZY_STATE:
        head += "\n" + read("lazy.lua")
    return (
        f"{head}\n{read(_redis_lua.LUA_FILES[name])}\nreturn run(K['{name}'], KEYS, ARGV, true)\n"
    )


def test_every_algorithm_has_a_flat_script_and_the_list_covers_them() -> None:
    names = {lim.name for lim in LIMITERS}
    assert names == set(_redis_lua.available())
    for name, (src, _sha) in _redis_lua.bundle().scripts.items():
        assert src == flat_script(
            [("prelude.lua", _redis_lua._read("prelude.lua"))]
            + (
                [("lazy.lua", _redis_lua._read("lazy.lua"))]
                if name in _redis_lua.LAZY_STATE
                else []
            )
            + [(_redis_lua.LUA_FILES[name], _redis_lua._read(_redis_lua.LUA_FILES[name]))],
            name,
        )


def test_the_gcra_script_keeps_only_what_its_call_reaches() -> None:
    src = _redis_lua.bundle().scripts["gcra"][0]
    for gone in ("local function fmod", "local function fmt", "SCRATCH", "run_lazy =",
                 "local K =", "K[", "--@library", "local function run"):  # fmt: skip
        assert gone not in src, gone
    # Every helper call and both kernel methods are inlined: no closure, no kernel table.
    for gone in ("local function", "K_gcra", "algo.", "algo,", "p = {[0] = tonumber"):
        assert gone not in src, gone
    assert "local keys, args, once = KEYS, ARGV, true" in src
    assert "p_0, p_1, p_2 = tonumber(args[7])" in src
    # A file holding two kernels gives each script only its own.
    fixed = _redis_lua.bundle().scripts["fixed_window"][0]
    assert "sliding_window_counter" not in fixed
    # Every kernel but the lazy one is inlined whole: its table is never built.
    for name, (flat, _sha) in _redis_lua.bundle().scripts.items():
        if name not in _redis_lua.LAZY_STATE:
            assert "algo." not in flat and f"K_{name} =" not in flat, name
    # A lazy kernel keeps its table (run_lazy takes it) and the wrapper its table of params.
    assert "local K_sliding_log = {" in _redis_lua.bundle().scripts["sliding_log"][0]
    # The lazy wrapper goes where it is needed, with the helpers it uses.
    log = _redis_lua.bundle().scripts["sliding_log"][0]
    assert "run_lazy = function" in log and "local function fmt" in log


def test_statements_refuses_an_unknown_layout() -> None:
    with pytest.raises(ValueError, match="x.lua:2: not a top-level statement"):
        statements("local a = 1\nprint(a)\n", "x.lua")
    with pytest.raises(ValueError, match="has no --@end"):
        flat_script(
            [("x.lua", "local function run(algo, keys, args, once)\n--@library\nend\n")], "a"
        )


def _calls(limiter: Algorithm, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(key, now_us, cost): bursts, pauses, a clock step back, a cost above the limit."""
    step = max(1, 1_000_000 // max(1, limiter.limit))
    t = T0_US
    out = []
    for i in range(120):
        t += int(rng.choice([0, 1, step // 3, step, 20 * step]))
        if i == 60:
            t -= 5 * step
        cost = int(rng.choice([0, 1, 1, 1, 2, limiter.limit + 1]))
        out.append((f"k{int(rng.integers(0, 4))}", str(t), str(cost)))
    return out


@pytest.mark.parametrize("limiter", LIMITERS, ids=repr)
def test_flat_script_acts_like_the_plain_composition(redis_url: str, limiter: Algorithm) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, _warn_retry=False)
    tail = list(store._spec(limiter).argv_tail)
    flat = client.script_load(_redis_lua.bundle().scripts[limiter.name][0])
    plain = client.script_load(plain_script(limiter.name))
    if limiter.name not in _redis_lua.LAZY_STATE:
        # A key left in the text encoding of earlier versions: read, then rewritten packed.
        zeros = ",".join(["0"] * limiter.state_size)
        client.set("flat:k3", zeros)
        client.set("plain:k3", zeros)
    for key, now, cost in _calls(limiter, np.random.default_rng(len(tail))):
        got = client.evalsha(flat, 1, "flat:" + key, now, cost, *tail)
        want = client.evalsha(plain, 1, "plain:" + key, now, cost, *tail)
        assert got == want, (key, now, cost)
        assert client.get("flat:" + key) == client.get("plain:" + key)
        assert abs(client.pttl("flat:" + key) - client.pttl("plain:" + key)) <= 1_000
    # The drift guard (Redis TIME read inline): refused far from the server's clock, decided
    # near it, and with Redis time ('' now) both read TIME and agree on an unseen key.
    far = tail[:1] + ["1000"] + tail[2:]
    for sha, prefix in ((flat, "flat:"), (plain, "plain:")):
        assert client.evalsha(sha, 1, prefix + "d", str(T0_US), "1", *far) == b"-3,0,0,0"
        assert client.get(prefix + "d") is None
    s, us = client.time()
    near = tail[:1] + [str(3_600_000_000)] + tail[2:]
    now = str(s * 1_000_000 + us)
    assert client.evalsha(flat, 1, "flat:n", now, "1", *near) == client.evalsha(
        plain, 1, "plain:n", now, "1", *near
    )
    got = client.evalsha(flat, 1, "flat:r", "", "1", *tail)
    want = client.evalsha(plain, 1, "plain:r", "", "1", *tail)
    assert got.split(b",")[0] == want.split(b",")[0]
