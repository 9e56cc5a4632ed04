-- Exact sliding-window log, ported line by line from ratesim/algorithms/sliding_log.py
-- (sliding_log_kernel, SlidingWindowLog.expires_at_us).
-- p = {[0] = limit, window_us}; state = {[0] = count, head, stamps of ring slots 0..limit-1}.

local SL_ABSENT_EXPIRY_US = -4611686018427387904 -- -(2^62)

K['sliding_log'] = {
  lazy = true,
  step = function(p, state, now_us, cost)
    local limit = p[0]
    local window_us = p[1]
    local count = state[0]
    local head = state[1]
    local cutoff = now_us - window_us
    local lo = 0
    local hi = count
    while lo < hi do
      local mid = fdiv(lo + hi, 2)
      if state[2 + fmod(head - 1 - mid + limit, limit)] > cutoff then
        lo = mid + 1
      else
        hi = mid
      end
    end
    local in_window = lo
    local newest = state[2 + fmod(head - 1 + limit, limit)]
    local reset_us = 0
    if in_window > 0 then reset_us = newest + window_us - now_us end
    if cost > limit then
      return 0, limit - in_window, -1, reset_us
    end
    if in_window + cost > limit then
      local blocking = state[2 + fmod(head - 1 - (limit - cost) + limit, limit)]
      return 0, limit - in_window, blocking + window_us - now_us, reset_us
    end
    if cost > 0 then
      local stamp = now_us
      if count > 0 and newest > now_us then
        stamp = newest
      end
      for _ = 1, cost do
        state[2 + head] = stamp
        head = head + 1
        if head == limit then
          head = 0
        end
      end
      state[1] = head
      state[0] = math.min(count + cost, limit)
      in_window = in_window + cost
      reset_us = stamp + window_us - now_us
    end
    return 1, limit - in_window, -1, reset_us
  end,
  expires = function(p, state)
    local limit = p[0]
    if state[0] == 0 then
      return SL_ABSENT_EXPIRY_US
    end
    return state[2 + fmod(state[1] - 1 + limit, limit)] + p[1]
  end,
}
