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

local function encode_state(st, n)
  local parts = {}
  for i = 0, n - 1 do
    parts[i + 1] = fmt(st[i])
  end
  return table.concat(parts, ',')
end

local function redis_now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Large states (the sliding log holds `limit` stamps) are not parsed whole on every call: an
-- algorithm with `lazy = true` keeps its state as a binary string of 8-byte big-endian doubles
-- (exact for integers below 2^53; absent bytes read as 0, which is every lazy algorithm's
-- initial state). The kernel decodes only the slots it reads (a binary search touches
-- O(log limit) of them) through a proxy table, and the slots it writes go back as one SETRANGE
-- per run of consecutive slots. A small state is fetched whole with one GET; a large one slot by
-- slot with GETRANGE, which beats copying kilobytes into Lua (measured: GET is ~30% cheaper at
-- 42 slots, GETRANGE ~40% cheaper at 3002).
local LAZY_WHOLE_READ_SLOTS = 256

local function run_lazy(algo, key, n, p, now_us, cost, ttl_floor_us)
  local raw = nil
  local size = 0
  if n <= LAZY_WHOLE_READ_SLOTS then
    raw = redis.call('GET', key) or ''
    size = #raw
  end
  local cache = {}
  local seen = {}
  local order = {}
  local nwritten = 0
  local st = setmetatable({}, {
    __index = function(_, i)
      local v = cache[i]
      if v == nil then
        local off = i * 8
        if raw == nil then
          local slot = redis.call('GETRANGE', key, off, off + 7)
          if #slot == 8 then
            v = struct.unpack('>d', slot)
          else
            v = 0
          end
        elseif off + 8 <= size then
          v = struct.unpack('>d', raw, off + 1)
        else
          v = 0
        end
        cache[i] = v
      end
      return v
    end,
    __newindex = function(_, i, v)
      if not seen[i] then
        seen[i] = true
        nwritten = nwritten + 1
        order[nwritten] = i
      end
      cache[i] = v
    end,
  })
  local allowed, remaining, retry_after_us, reset_after_us = algo.step(p, st, now_us, cost)
  if nwritten > 0 then
    local slots = order
    table.sort(slots)
    local j = 1
    while j <= nwritten do
      local first = slots[j]
      local parts = {struct.pack('>d', cache[first])}
      while j < nwritten and slots[j + 1] == slots[j] + 1 do
        j = j + 1
        parts[#parts + 1] = struct.pack('>d', cache[slots[j]])
      end
      redis.call('SETRANGE', key, first * 8, table.concat(parts))
      j = j + 1
    end
    local ttl_us = algo.expires(p, st) - now_us
    if ttl_us < 0 then ttl_us = 0 end
    if ttl_us > MAX_TTL_US then ttl_us = MAX_TTL_US end
    redis.call('PEXPIRE', key, fmt(fdiv(ttl_us + ttl_floor_us + 999, 1000)))
  end
  return string.format('%.0f,%.0f,%.0f,%.0f', allowed, remaining, retry_after_us, reset_after_us)
end

-- The generic wrapper shared by every algorithm.
-- keys[1]: the state key.
-- args: now_us ('' = read Redis TIME), cost, ttl_floor_us, max_drift_us ('' = no guard),
--       state_size, init ('' = all zeros, else the encoded initial state), params...
-- Reply: the string 'allowed,remaining,retry_after_us,reset_after_us' (one bulk string parses
-- several times faster in the client than an array of four integers), or '-3,0,0,0' when the
-- caller's clock is further than max_drift_us from Redis TIME (nothing is read or written).
local function run(algo, keys, args)
  local now_us
  if args[1] == '' then
    now_us = redis_now_us()
  else
    now_us = tonumber(args[1])
    if args[4] ~= '' then
      local drift = now_us - redis_now_us()
      if drift < 0 then drift = -drift end
      if drift > tonumber(args[4]) then
        return '-3,0,0,0'
      end
    end
  end
  local cost = tonumber(args[2])
  local ttl_floor_us = tonumber(args[3])
  local n = tonumber(args[5])
  local p = {}
  for i = 7, #args do
    p[i - 7] = tonumber(args[i])
  end
  if algo.lazy then
    return run_lazy(algo, keys[1], n, p, now_us, cost, ttl_floor_us)
  end
  local old = redis.call('GET', keys[1])
  local before = old
  if not before then
    before = args[6]
    if before == '' then
      local z = {}
      for i = 0, n - 1 do z[i] = 0 end
      before = encode_state(z, n)
    end
  end
  local st = decode_state(before, n)
  if st == nil then
    return redis.error_reply('ratesim: state of ' .. keys[1] .. ' does not have ' .. n .. ' fields')
  end
  local allowed, remaining, retry_after_us, reset_after_us = algo.step(p, st, now_us, cost)
  local new = encode_state(st, n)
  -- Unchanged state keeps the TTL its last write gave it (that TTL already covers its expiry);
  -- a never-written key still in its initial state needs no storage at all.
  if new ~= before then
    local ttl_us = algo.expires(p, st) - now_us
    if ttl_us < 0 then ttl_us = 0 end
    -- "Never expires" (e.g. a bucket that never refills) becomes ~35 years, so the arithmetic
    -- stays exact and every key still has a TTL.
    if ttl_us > MAX_TTL_US then ttl_us = MAX_TTL_US end
    ttl_us = ttl_us + ttl_floor_us
    redis.call('SET', keys[1], new, 'PX', fmt(fdiv(ttl_us + 999, 1000)))
  end
  return string.format('%.0f,%.0f,%.0f,%.0f', allowed, remaining, retry_after_us, reset_after_us)
end
