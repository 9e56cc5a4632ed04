-- Epoch-aligned window counters, ported line by line from ratesim/algorithms/window_counter.py
-- (fixed_window_kernel, sliding_counter_kernel and their expires_at_us).
-- p = {[0] = limit, window_us}.
-- FixedWindow state = {[0] = window index, count};
-- SlidingWindowCounter state = {[0] = window index, curr, prev}.

local WC_ABSENT_EXPIRY_US = -4611686018427387904 -- -(2^62)

local function wc_index(now_us, window_us)
  if now_us >= 0 then
    return fdiv(now_us, window_us)
  end
  return -fdiv(window_us - 1 - now_us, window_us)
end

K['fixed_window'] = {
  step = function(p, state, now_us, cost)
    local limit = p[0]
    local window_us = p[1]
    local j = wc_index(now_us, window_us)
    local idx = state[0]
    local count = state[1]
    if count == 0 or j > idx then
      idx = j
      count = 0
    end
    local end_in_us = (idx + 1) * window_us - now_us
    local reset_us = 0
    if count > 0 then reset_us = end_in_us end
    if cost > limit then
      return 0, limit - count, -1, reset_us
    end
    if count + cost > limit then
      return 0, limit - count, end_in_us, reset_us
    end
    if cost > 0 then
      count = count + cost
      state[0] = idx
      state[1] = count
      reset_us = end_in_us
    end
    return 1, limit - count, -1, reset_us
  end,
  expires = function(p, state)
    if state[1] == 0 then
      return WC_ABSENT_EXPIRY_US
    end
    return (state[0] + 1) * p[1]
  end,
}

K['sliding_window_counter'] = {
  step = function(p, state, now_us, cost)
    local limit = p[0]
    local w = p[1]
    local j = wc_index(now_us, w)
    local idx = state[0]
    local curr = state[1]
    local prev = state[2]
    if curr == 0 then
      idx = j
      prev = 0
    elseif j == idx + 1 then
      prev = curr
      curr = 0
      idx = j
    elseif j > idx + 1 then
      prev = 0
      curr = 0
      idx = j
    end
    local start = idx * w
    local elapsed = math.max(now_us - start, 0)
    local weighted = fdiv(prev * (w - elapsed), w) + curr
    local allowed = 0
    local retry_us = -1
    if cost <= limit then
      if weighted + cost <= limit then
        allowed = 1
        if cost > 0 then
          curr = curr + cost
          weighted = weighted + cost
          state[0] = idx
          state[1] = curr
          state[2] = prev
        end
      elseif curr + cost <= limit then
        local room = limit - cost - curr
        retry_us = start + w - fdiv((room + 1) * w - 1, prev) - now_us
      else
        local room = limit - cost
        retry_us = start + w + math.max(w - fdiv((room + 1) * w - 1, curr), 0) - now_us
      end
    end
    local reset_us
    if curr > 0 then
      reset_us = start + 2 * w - fdiv(w - 1, curr) - now_us
    elseif prev > 0 then
      reset_us = math.max(start + w - fdiv(w - 1, prev) - now_us, 0)
    else
      reset_us = 0
    end
    return allowed, math.max(limit - weighted, 0), retry_us, reset_us
  end,
  expires = function(p, state)
    local curr = state[1]
    if curr == 0 then
      return WC_ABSENT_EXPIRY_US
    end
    local w = p[1]
    return (state[0] + 2) * w - fdiv(w - 1, curr)
  end,
}
