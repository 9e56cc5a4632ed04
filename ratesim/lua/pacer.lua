-- Sentinel throttling (uniform pacing), ported line by line from ratesim/algorithms/pacer.py
-- (pacer_kernel, UniformPacer.expires_at_us).
-- p = {[0] = count, max_queue_units, resolution_us, max_cost};
-- state = {[0] = present, latest_units}.

local PC_ABSENT_EXPIRY_US = -4611686018427387904 -- -(2^62)
local PC_MAX_SPACING_S = 60

K['pacer'] = {
  step = function(p, state, now_us, cost)
    local count = p[0]
    local max_q = p[1]
    local res = p[2]
    local max_cost = p[3]
    local per_s = fdiv(1000000, res)
    local t = fdiv(now_us, res)
    local allowed = 1
    local retry_us = 0
    if cost > max_cost then
      allowed = 0
      retry_us = -1
    elseif cost > 0 then
      local step = fdiv(2 * per_s * cost + count, 2 * count)
      if state[0] == 0 or state[1] + step <= t then
        state[0] = 1
        state[1] = t
      elseif state[1] + step - t > max_q then
        allowed = 0
        retry_us = (state[1] + step - max_q) * res - now_us
      else
        state[1] = state[1] + step
        retry_us = (state[1] - t) * res
      end
    end
    local one = fdiv(2 * per_s + count, 2 * count)
    local remaining = 1 + fdiv(max_q, one)
    local reset_us = 0
    if state[0] ~= 0 and state[1] + one > t then
      local d = max_q + t - state[1]
      remaining = 0
      if d >= 0 then remaining = fdiv(d, one) end
      reset_us = (state[1] + one) * res - now_us
    end
    return allowed, remaining, retry_us, reset_us
  end,
  expires = function(p, state)
    if state[0] == 0 then return PC_ABSENT_EXPIRY_US end
    local res = p[2]
    return (state[1] + PC_MAX_SPACING_S * fdiv(1000000, res)) * res
  end,
}
