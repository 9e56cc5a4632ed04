-- ratesim Lua: the wrapper of algorithms with `lazy = true` (packed state read slot by slot).
-- Sent after prelude.lua, whose locals (run_lazy, fdiv, fmt, MAX_TTL_US) it uses.

-- Large states (the sliding log holds `limit` stamps) are not parsed whole on every call: an
-- algorithm with `lazy = true` keeps its state as a binary string of 8-byte big-endian doubles
-- (exact for integers below 2^53; absent bytes read as 0, which is every lazy algorithm's
-- initial state). The kernel decodes only the slots it reads (a binary search touches
-- O(log limit) of them) through a proxy table, and the slots it writes go back as one SETRANGE
-- per run of consecutive slots. A small state is fetched whole with one GET; a large one slot by
-- slot with GETRANGE, which beats copying kilobytes into Lua (measured: GET is ~30% cheaper at
-- 42 slots, GETRANGE ~40% cheaper at 3002).
local LAZY_WHOLE_READ_SLOTS = 256

run_lazy = function(algo, key, n, p, now_us, cost, ttl_floor_us)
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
  return string.format('%d,%d,%d,%d', allowed, remaining, retry_after_us, reset_after_us)
end

