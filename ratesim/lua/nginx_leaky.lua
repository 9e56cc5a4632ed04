-- nginx limit_req excess leaky bucket, ported line by line from
-- ratesim/algorithms/nginx_leaky.py (nginx_leaky_kernel, NginxLeakyBucket.expires_at_us).
-- p = {[0] = rate_milli, burst_milli, delay_milli, shaping};
-- state = {[0] = present, last_ms, excess}.

local NL_ABSENT_EXPIRY_US = -4611686018427387904 -- -(2^62)

K['nginx_leaky'] = {
  step = function(p, state, now_us, cost)
    local rate = p[0]
    local burst_m = p[1]
    local delay_m = p[2]
    local shaping = p[3]
    local now_ms = fdiv(now_us, 1000)
    local level = -1000
    local ms = 0
    if state[0] ~= 0 then
      ms = now_ms - state[1]
      if ms < -60000 then
        ms = 1
      elseif ms < 0 then
        ms = 0
      end
      local need = state[2] + 1000
      if ms >= fdiv(need * 1000 + rate - 1, rate) then
        level = -1000
      else
        level = state[2] - fdiv(rate * ms, 1000)
      end
    end
    local allowed = 0
    local retry_us = -1
    local after = level
    if cost == 0 then
      allowed = 1
      if shaping ~= 0 then retry_us = 0 end
    elseif cost <= fdiv(burst_m, 1000) + 1 then
      if level + 1000 * cost <= burst_m then
        allowed = 1
        after = level + 1000 * cost
        if state[0] == 0 or ms ~= 0 then
          state[1] = now_ms
        end
        state[0] = 1
        state[2] = after
        if shaping ~= 0 then
          retry_us = 0
          if after > delay_m then
            retry_us = fdiv((after - delay_m) * 1000, rate) * 1000
          end
        end
      else
        local over = state[2] + 1000 * cost - burst_m
        local wait_ms = fdiv(over * 1000 + rate - 1, rate)
        retry_us = (state[1] + wait_ms) * 1000 - now_us
      end
    end
    local room = burst_m - after
    local remaining = 0
    if room >= 0 then remaining = fdiv(room, 1000) end
    local reset_us = 0
    if state[0] ~= 0 then
      local drain_ms = fdiv((state[2] + 1000) * 1000 + rate - 1, rate)
      reset_us = math.max((state[1] + drain_ms) * 1000 - now_us, 0)
    end
    return allowed, remaining, retry_us, reset_us
  end,
  expires = function(p, state)
    if state[0] == 0 then
      return NL_ABSENT_EXPIRY_US
    end
    local rate = p[0]
    local drain_ms = fdiv((state[2] + 1000) * 1000 + rate - 1, rate)
    return (state[1] + drain_ms) * 1000
  end,
}
