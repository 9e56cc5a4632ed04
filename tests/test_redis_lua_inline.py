"""The Lua inliner (``ratesim.stores._redis_lua_inline``) on sources written to trip it.

A synthetic prelude and kernel, laid out like ratesim's Lua files, hold what the inliner must
get right: early returns from nested blocks, a loop with ``break`` and a return after it, fewer
values returned than assigned, nested calls, calls whose every value counts (a last argument), calls inside larger statements (hoisted), calls it
must leave alone (a parameter the callee assigns, in a condition, behind ``and``/``or``, where a local of the caller would
capture a name the callee uses) and a callee it must refuse (a return inside a loop). The flat
script built from them must reply exactly what the plain composition (every function defined,
then ``return run(...)``) replies, on random arguments against a real server.
"""

from __future__ import annotations

import numpy as np
import redis

from ratesim.stores._redis_lua_inline import Inliner, callee, normalize
from ratesim.stores._redis_lua_script import flat_script

PRELUDE = """\
local K = {}
local SCALE = 10

-- Floor division with an early exit, a loop and a break.
local function div(a, b)
  if b == 0 then return 0 end
  local q = math.floor(a / b)
  for _ = 1, 3 do
    if q * b > a then
      q = q - 1
    else
      break
    end
  end
  return q
end

local function scaled(x)
  return x * SCALE
end

-- Two values, or one (the second then nil).
local function pair(x)
  if x < 0 then
    return -x
  elseif x == 0 then
    return 0, 99
  end
  return x, div(x, 3) + scaled(1)
end

-- Assigns its parameter: the caller's variable of the same name must not change.
local function bump(a)
  a = a + 1
  return a * 2
end

-- Two values, and none: where every value counts (a last argument) they must not be hoisted.
local function two(x)
  return x, x + 1
end

local function none(x)
  if x then return end
end

-- A return inside a loop: never inlined.
local function first_over(t, limit)
  for i = 1, 3 do
    if t[i] > limit then return i end
  end
  return 0
end

local function run(algo, keys, args, once)
  local p
  --@params
  p = {[0] = tonumber(args[1]), unpack(args, 2, #args)}
  for i = 1, #args - 1 do p[i] = tonumber(p[i]) end
  --@params end
  local a, b, c = algo.step(p, tonumber(args[1]), tonumber(args[2]))
  local e = div(a, 7) - bump(a)
  local g = a > 0 and div(100, a) or -1
  if div(c, 2) > 1 then
    e = e + 1
  end
  local h = first_over({a, c, e}, 5)
  local SCALE = 2
  local k = scaled(c) + SCALE
  k = k + math.max(0, two(a))
  k = k + 100 * select('#', none(a))
  if e > 0 then e = div(e, 2) end
  return string.format('%d,%d,%s,%d,%d,%d,%d,%d', a, b, tostring(c), e, g, h, k, algo.flag)
end
"""

KERNEL = """\
K['toy'] = {
  flag = 7,
  step = function(p, x, y)
    if x > y then
      local s, t = pair(x - y - 2)
      return s, div(p[0] + p[2], p[1]), t or 5
    end
    local u = pair(y - x - 5)
    if u > 50 then
      return u, -div(-u, 4), 1
    end
    return div(div(u, 2), 2), scaled(u), 2
  end,
}
"""


def sources() -> list[tuple[str, str]]:
    return [("prelude.lua", PRELUDE), ("toy.lua", KERNEL)]


def test_the_flat_script_inlines_what_it_may_and_keeps_the_rest() -> None:
    flat = flat_script(sources(), "toy")
    # step, pair and the kernel table are gone; first_over stays (return in a loop), and so do
    # div (still called in a condition and behind and/or) and scaled (the caller's SCALE).
    assert "K_toy" not in flat and "algo" not in flat.split("local function run")[0]
    assert "local function pair" not in flat and "step = function" not in flat
    assert "local function bump" not in flat
    for kept in ("local function first_over", "local function div", "local function scaled"):
        assert kept in flat, kept
    assert "if div(c, 2) > 1 then" in flat
    assert "a > 0 and div(100, a) or -1" in flat
    assert "scaled(c) + SCALE" in flat
    assert "k = k + math.max(0, two(a))" in flat and "k = k + 100 * select('#', none(a))" in flat
    # The kernel's constant field is folded, its params read as locals.
    assert "algo.flag" not in flat and ", 7)" in flat
    assert "p_0, p_1, p_2 = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])" in flat


def test_callee_refuses_what_break_cannot_express() -> None:
    assert (
        callee("t, limit", ["  for i = 1, 3 do", "    if t[i] then return i end", "  end"]) is None
    )
    assert callee("...", ["  return 1"]) is None
    assert callee("x", ["  local f = function() return x end", "  return f()"]) is None
    fn = callee("x", ["  if x then return 1 end", "  return 2"])
    assert fn is not None and fn.params == ("x",) and fn.free == frozenset()


def test_normalize_and_a_hoisted_call() -> None:
    assert normalize(["  if a then b = f(a) end -- note", "  -- gone"]) == [
        "  if a then",
        "    b = f(a)",
        "  end",
    ]
    # A string saying " then " is not the keyword; a nested one-line if is left as it is.
    assert normalize(["if s == ' then ' then b = 1 end", "if a then if b then c() end end"]) == [
        "if s == ' then ' then",
        "  b = 1",
        "end",
        "if a then if b then c() end end",
    ]
    fn = callee("a", ["  return a + 1"])
    assert fn is not None
    got = Inliner({"f": fn}).run(["redis.call('SET', k, f(x))", "while f(x) > 0 do", "end"])
    # The call inside redis.call is hoisted and inlined; the loop condition keeps its call.
    assert got[-3:] == ["redis.call('SET', k, __i1)", "while f(x) > 0 do", "end"]
    assert "  local a = x" in got and "  __i2 = a + 1" in got


def plain(name: str) -> str:
    return (
        "\n".join(text for _, text in sources()) + f"\nreturn run(K['{name}'], KEYS, ARGV, true)\n"
    )


def test_flat_replies_equal_the_plain_composition(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    flat = client.script_load(flat_script(sources(), "toy"))
    ref = client.script_load(plain("toy"))
    rng = np.random.default_rng(10)
    for _ in range(400):
        args = [str(int(v)) for v in rng.integers(-120, 121, 3)]
        if rng.random() < 0.1:
            args[1] = "0"
        want = client.evalsha(ref, 0, *args)
        assert client.evalsha(flat, 0, *args) == want, args
