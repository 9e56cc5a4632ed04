-- Bucketed sliding windows, ported line by line from ratesim/algorithms/bucketed.py
-- (bucketed_kernel, double_buffered_kernel and their expires_at_us).
-- BucketedWindow: p = {[0] = limit, window_us, buckets, bucket_us};
--   state = {[2k] = start_us of slot k, [2k + 1] = count of slot k}.
-- DoubleBufferedWindow: p = {[0] = limit, window_us, buckets, bucket_us, swap_us};
--   state = {[0] = head bucket index, total, counts of ring slots 0..buckets-1}.

local BK_ABSENT_EXPIRY_US = -4611686018427387904 -- -(2^62)

-- Python's floor division of a possibly negative integer by a positive one, written the way
-- the Python kernels write it.
local function bk_floor(t, d)
  if t >= 0 then
    return fdiv(t, d)
  end
  return -fdiv(d - 1 - t, d)
end

K['bucketed_window'] = {
  step = function(p, state, now_us, cost)
    local limit = p[0]
    local window_us = p[1]
    local n = p[2]
    local bucket_us = p[3]
    local b, slot
    if now_us >= 0 then
      b = fdiv(now_us, bucket_us)
      slot = fmod(b, n)
    else
      b = -fdiv(bucket_us - 1 - now_us, bucket_us)
      slot = n - 1 - fmod(-b - 1, n)
    end
    local start = b * bucket_us
    local passed = 0
    for k = 0, n - 1 do
      if state[2 * k + 1] > 0 and now_us - state[2 * k] < window_us then
        passed = passed + state[2 * k + 1]
      end
    end
    local allowed = 0
    local retry_us = -1
    if cost <= limit and passed + cost <= limit then
      allowed = 1
      local cur_start = state[2 * slot]
      local cur_count = state[2 * slot + 1]
      if cost > 0 and (cur_count == 0 or cur_start <= start) then
        if cur_count > 0 and cur_start == start then
          state[2 * slot + 1] = cur_count + cost
        else
          state[2 * slot] = start
          state[2 * slot + 1] = cost
        end
        passed = passed + cost
      end
    elseif cost <= limit then
      for k = 0, n - 1 do
        local ck = state[2 * k + 1]
        local sk = state[2 * k]
        if ck > 0 and now_us - sk < window_us then
          local newer = 0
          for m = 0, n - 1 do
            if state[2 * m + 1] > 0 and now_us - state[2 * m] < window_us and state[2 * m] > sk then
              newer = newer + state[2 * m + 1]
            end
          end
          local wait = sk + window_us - now_us
          if newer + cost <= limit and (retry_us < 0 or wait < retry_us) then
            retry_us = wait
          end
        end
      end
    end
    local reset_us = 0
    for k = 0, n - 1 do
      if state[2 * k + 1] > 0 and now_us - state[2 * k] < window_us then
        reset_us = math.max(reset_us, state[2 * k] + window_us - now_us)
      end
    end
    return allowed, math.max(limit - passed, 0), retry_us, reset_us
  end,
  expires = function(p, state)
    local found = false
    local best = 0
    for k = 0, p[2] - 1 do
      if state[2 * k + 1] > 0 then
        local e = state[2 * k] + p[1]
        if not found or e > best then
          best = e
          found = true
        end
      end
    end
    if found then return best end
    return BK_ABSENT_EXPIRY_US
  end,
}

-- First swap instant at or after t: ceil(t / swap_us) * swap_us, as the Python kernel writes it.
local function bk_swap_ceil(leave, swap_us)
  if leave >= 0 then
    return fdiv(leave, swap_us) * swap_us
  end
  return -fdiv(swap_us - 1 - leave, swap_us) * swap_us
end

K['double_buffered_window'] = {
  step = function(p, state, now_us, cost)
    local limit = p[0]
    local n = p[2]
    local bucket_us = p[3]
    local swap_us = p[4]
    local sw
    if now_us >= 0 then
      sw = fdiv(now_us, swap_us) * swap_us
    else
      sw = -fdiv(swap_us - 1 - now_us, swap_us) * swap_us
    end
    local h = bk_floor(sw, bucket_us)
    local head = state[0]
    local total = state[1]
    if total == 0 then
      head = h
    end
    if h < head then
      h = head
    end
    local hs
    if head >= 0 then
      hs = fmod(head, n)
    else
      hs = n - 1 - fmod(-head - 1, n)
    end
    local d = h - head
    local steps = math.min(d, n)
    local expired = 0
    for i = 1, steps do
      expired = expired + state[2 + fmod(hs + i, n)]
    end
    local view = total - expired
    local allowed = 0
    local retry_us = -1
    if cost <= limit and view + cost <= limit then
      allowed = 1
      if cost > 0 then
        for i = 1, steps do
          state[2 + fmod(hs + i, n)] = 0
        end
        local hslot = fmod(hs + fmod(d, n), n)
        state[2 + hslot] = state[2 + hslot] + cost
        state[0] = h
        state[1] = view + cost
        head = h
        view = view + cost
      end
    elseif cost <= limit then
      local dropped = 0
      for i = 0, n - 1 do
        local x = h - n + 1 + i
        if x <= head then
          dropped = dropped + state[2 + fmod(hs + n - (head - x), n)]
        end
        if view - dropped + cost <= limit then
          local leave = bk_swap_ceil((x + n) * bucket_us + swap_us - 1, swap_us)
          retry_us = leave - now_us
          break
        end
      end
    end
    local reset_us = 0
    if view > 0 then
      local leave = bk_swap_ceil((head + n) * bucket_us + swap_us - 1, swap_us)
      reset_us = leave - now_us
    end
    return allowed, math.max(limit - view, 0), retry_us, reset_us
  end,
  expires = function(p, state)
    if state[1] == 0 then
      return BK_ABSENT_EXPIRY_US
    end
    local leave = (state[0] + p[2]) * p[3]
    return -fdiv(-leave, p[4]) * p[4]
  end,
}
