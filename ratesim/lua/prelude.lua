-- ratesim shared Lua prelude: exact integer helpers and the generic state wrapper.
--
-- Redis Lua 5.1 has doubles only. Every limiter quantity is an integer number of microseconds
-- (or a count) below 2^53, so + - * and comparisons are exact; division and formatting are not,
-- hence the helpers below. Kernels index state and params from 0, exactly like the Python
-- kernels they are ported from (Lua tables accept index 0; nothing here uses # or ipairs on them).

local K = {}
local MAX_TTL_US = 1125899906842624 -- 2^50

-- floor(a / b) for integers, b > 0. The double quotient can be off by one for large a, so
-- correct it with exact integer products. The correction is bounded: below 2^53 it needs at
-- most one step, and beyond (which the Python side never lets through) a product can stop
-- changing, where an unbounded loop would hang the whole server.
local function fdiv(a, b)
  local q = math.floor(a / b)
  for _ = 1, 4 do
    if q * b > a then
      q = q - 1
    elseif (q + 1) * b <= a then
      q = q + 1
    else
      break
    end
  end
  return q
end

-- Python's a % b (b > 0): the result has the sign of b.
local function fmod(a, b)
  return a - fdiv(a, b) * b
end

-- tostring() uses %.14g and would corrupt 16-digit microsecond timestamps.
local function fmt(x)
  return string.format('%.0f', x)
end

-- The text encoding ("f0,f1,...", decimal integers): the state earlier versions wrote (still
-- read, never written) and the form of the `init` argument.
local function decode_state(s, n)
  local st = {}
  local i = 0
  for tok in string.gmatch(s, '[^,]+') do
    st[i] = tonumber(tok)
    i = i + 1
  end
  if i ~= n then
    return nil
  end
  return st
end

-- The packed encoding: the byte 0x01, then the n fields as 8-byte big-endian doubles (exact for
-- every integer below 2^53, and read without parsing text). Text state always starts with a
-- digit or '-', so the tag byte tells the two apart. The common sizes get literal formats: one
-- struct call each way, no format string built per call.
local function pack_state(st, n)
  if n == 2 then
    return struct.pack('>Bdd', 1, st[0], st[1])
  elseif n == 3 then
    return struct.pack('>Bddd', 1, st[0], st[1], st[2])
  end
  if n <= 256 then
    return struct.pack('>B' .. string.rep('d', n), 1, unpack(st, 0, n - 1))
  end
  -- Beyond that, field by field: unpack() and a call's arguments live on the C stack (at most
  -- ~8000 slots).
  local parts = {'\1'}
  for i = 0, n - 1 do
    parts[i + 2] = struct.pack('>d', st[i])
  end
  return table.concat(parts)
end

-- A state table with slots 0..n-1 allocated (zeros), so filling it never rehashes; the common
-- sizes get literal constructors.
local function new_state(n)
  if n == 2 then
    return {[0] = 0, 0}
  elseif n == 3 then
    return {[0] = 0, 0, 0}
  end
  local st = {[0] = 0}
  for i = 1, n - 1 do st[i] = 0 end
  return st
end

-- The state table of packed state s of n fields: st filled, or (st nil: a script) a new table
-- built by one constructor; nil (st untouched) when s is not packed state of n fields.
local function unpack_state(s, n, st)
  if #s ~= 1 + 8 * n then
    return nil
  end
  if n == 2 then
    local tag, a, b = struct.unpack('>Bdd', s)
    if tag ~= 1 then return nil end
    if st == nil then return {[0] = a, b} end
    st[0] = a
    st[1] = b
  elseif n == 3 then
    local tag, a, b, c = struct.unpack('>Bddd', s)
    if tag ~= 1 then return nil end
    if st == nil then return {[0] = a, b, c} end
    st[0] = a
    st[1] = b
    st[2] = c
  else
    if string.byte(s, 1) ~= 1 then return nil end
    if st == nil then st = new_state(n) end
    for i = 0, n - 1 do
      st[i] = struct.unpack('>d', s, 2 + 8 * i)
    end
  end
  return st
end


-- Per-algorithm scratch, reused call after call: a Function library builds it once (its top
-- level runs at load), so a call allocates no table and leaves no garbage. It keeps the
-- constant tail of ARGV (ttl_floor_us .. params) as last seen, with its parsed values: when a
-- call brings the same strings (Lua interns strings, so each comparison is a pointer compare),
-- nothing is parsed again. Calls never nest (a script cannot FCALL), so one scratch per
-- algorithm is enough. A script (EVALSHA) keeps nothing between calls: it passes once = true
-- and parses into fresh tables.
local SCRATCH = {}

-- run_lazy(algo, key, n, p, now_us, cost, ttl_floor_us): the wrapper of `lazy = true`
-- algorithms, defined in lazy.lua, which is only sent along with such algorithms (a script
-- builds every function it defines on every call).
local run_lazy

-- The generic wrapper shared by every algorithm.
-- keys[1]: the state key.
-- args: now_us ('' = read Redis TIME), cost, ttl_floor_us, max_drift_us ('' = no guard),
--       state_size, init ('' = all zeros, else the encoded initial state), params...
-- Reply: the string 'allowed,remaining,retry_after_us,reset_after_us' (one bulk string parses
-- several times faster in the client than an array of four integers), or '-3,0,0,0' when the
-- caller's clock is further than max_drift_us from Redis TIME (nothing is read or written).
-- State: packed (see pack_state); a key still holding the text encoding is read as such and
-- rewritten packed at its next change.
local function run(algo, keys, args, once)
  local now_us
  if args[1] == '' or args[4] ~= '' then
    -- Redis TIME: the clock itself (time_source="redis"), or the drift guard's reference. Read
    -- here rather than through a helper: a script would build that closure on every call.
    local t = redis.call('TIME')
    now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
    if args[1] ~= '' then
      local drift = tonumber(args[1]) - now_us
      if drift < 0 then drift = -drift end
      if drift > tonumber(args[4]) then
        return '-3,0,0,0'
      end
      now_us = tonumber(args[1])
    end
  else
    now_us = tonumber(args[1])
  end
  local cost = tonumber(args[2])
  local nargs = #args
  local p, st, n, sc
  if once then
    -- A script: nothing survives the call, so parse into fresh tables, built at their final
    -- size. Filled one index at a time from empty, a 0-based table is rehashed at every power
    -- of two (measured: ~450 ns per two-slot table, a third of a script's overhead); a
    -- constructor sizes it once. p: params[0..], the strings converted in place.
    -- (A flat script whose kernel reads p only as p[<integer>] gets locals p_0, p_1, ...
    -- instead: see _redis_lua_script.py.)
    --@params
    p = {[0] = tonumber(args[7]), unpack(args, 8, nargs)}
    for i = 1, nargs - 7 do p[i] = tonumber(p[i]) end
    --@params end
    n = tonumber(args[5])
    if algo.lazy then
      return run_lazy(algo, keys[1], n, p, now_us, cost, tonumber(args[3]))
    end
  else
    -- The Function library's path (a script's build drops it: see _redis_lua_script.py).
    --@library
    sc = SCRATCH[algo]
    if sc == nil then
      sc = {seen = {}, nseen = 0, p = {}, st = {}, init = {}}
      SCRATCH[algo] = sc
    end
    local seen = sc.seen
    local same = nargs == sc.nseen
    if same then
      for i = 3, nargs do
        if args[i] ~= seen[i] then
          same = false
          break
        end
      end
    end
    p = sc.p
    st = sc.st
    if same then
      n = sc.n
    else
      -- A new limiter: parse its constants, and clear what a previous one left beyond them, so
      -- the kernel sees exactly what fresh tables would hold.
      n = tonumber(args[5])
      sc.n = n
      sc.ttl_floor_us = tonumber(args[3])
      for k in pairs(p) do p[k] = nil end
      for i = 7, nargs do p[i - 7] = tonumber(args[i]) end
      for k in pairs(st) do st[k] = nil end
      local init = sc.init
      for k in pairs(init) do init[k] = nil end
      if not algo.lazy then
        if args[6] == '' then
          for i = 0, n - 1 do init[i] = 0 end
        else
          local parsed = decode_state(args[6], n)
          if parsed == nil then
            sc.nseen = 0
            return redis.error_reply('ratesim: state of ' .. keys[1] .. ' does not have ' .. n .. ' fields')
          end
          for i = 0, n - 1 do init[i] = parsed[i] end
        end
        sc.init_packed = pack_state(init, n)
      end
      -- Remembered last: a tail that failed above is parsed again next time.
      for i = 3, nargs do seen[i] = args[i] end
      sc.nseen = nargs
    end
    if algo.lazy then
      return run_lazy(algo, keys[1], n, p, now_us, cost, sc.ttl_floor_us)
    end
    --@end
  end
  local key = keys[1]
  local before = redis.call('GET', key)
  if not before and once then
    st = new_state(n)
    if args[6] == '' then
      for i = 0, n - 1 do st[i] = 0 end
    else
      local parsed = decode_state(args[6], n)
      if parsed == nil then
        return redis.error_reply('ratesim: state of ' .. key .. ' does not have ' .. n .. ' fields')
      end
      for i = 0, n - 1 do st[i] = parsed[i] end
    end
    before = pack_state(st, n)
  elseif not before then
    local init = sc.init
    for i = 0, n - 1 do st[i] = init[i] end
    before = sc.init_packed
  else
    -- st: the scratch table (a Function), or nil (a script: unpack_state builds it).
    local got = unpack_state(before, n, st)
    if got then
      st = got
    else
      -- Text state of an earlier version: compared below in packed form, so a call that changes
      -- nothing writes nothing whichever encoding the key had.
      local old = decode_state(before, n)
      if old == nil then
        return redis.error_reply('ratesim: state of ' .. key .. ' does not have ' .. n .. ' fields')
      end
      if st == nil then st = new_state(n) end
      for i = 0, n - 1 do st[i] = old[i] end
      before = pack_state(st, n)
    end
  end
  local allowed, remaining, retry_after_us, reset_after_us = algo.step(p, st, now_us, cost)
  local new = pack_state(st, n)
  -- Unchanged state keeps the TTL its last write gave it (that TTL already covers its expiry);
  -- a never-written key still in its initial state needs no storage at all.
  if new ~= before then
    local ttl_us = algo.expires(p, st) - now_us
    if ttl_us < 0 then ttl_us = 0 end
    -- "Never expires" (e.g. a bucket that never refills) becomes ~35 years, so the arithmetic
    -- stays exact and every key still has a TTL.
    if ttl_us > MAX_TTL_US then ttl_us = MAX_TTL_US end
    if once then
      ttl_us = ttl_us + tonumber(args[3])
    else
      ttl_us = ttl_us + sc.ttl_floor_us
    end
    -- A number argument reaches Redis as '%.17g', exact for these whole milliseconds (< 2^41).
    redis.call('SET', key, new, 'PX', fdiv(ttl_us + 999, 1000))
  end
  -- '%d' prints these integers (|x| < 2^53) exactly, like '%.0f' but several times faster.
  return string.format('%d,%d,%d,%d', allowed, remaining, retry_after_us, reset_after_us)
end
