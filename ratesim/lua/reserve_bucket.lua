-- x/time/rate Reserve with a maximum hold (Traefik), ported line by line from
-- ratesim/algorithms/reserve_bucket.py (reserve_bucket_kernel, ReserveTokenBucket.expires_at_us).
-- p = {[0] = unit, per_us, capacity, burst, max_delay_us};
-- state = {[0] = present, last_us, tokens_units} (tokens may be negative: debt).

local RB_ABSENT_EXPIRY_US = -4611686018427387904 -- -(2^62)

K['reserve_bucket'] = {
  step = function(p, state, now_us, cost)
    local unit = p[0]
    local per_us = p[1]
    local capacity = p[2]
    local burst = p[3]
    local max_delay = p[4]
    local tokens = capacity
    local last_us = now_us
    if state[0] ~= 0 then
      tokens = state[2]
      last_us = state[1]
      if now_us > last_us and tokens < capacity then
        local missing = capacity - tokens
        local elapsed = now_us - last_us
        if elapsed >= fdiv(missing + per_us - 1, per_us) then
          tokens = capacity
        else
          tokens = tokens + elapsed * per_us
        end
      end
    end
    local allowed = 0
    local retry_us = -1
    if cost <= burst then
      local short = cost * unit - tokens
      local wait = 0
      if short > 0 then wait = fdiv(short + per_us - 1, per_us) end
      if wait <= max_delay then
        allowed = 1
        retry_us = wait
        tokens = tokens - cost * unit
        last_us = now_us
        state[0] = 1
        state[1] = now_us
        state[2] = tokens
      else
        retry_us = wait - max_delay
      end
    end
    local remaining = 0
    if tokens > 0 then remaining = fdiv(tokens, unit) end
    local base = now_us
    if last_us > now_us then base = last_us end
    local reset_us = 0
    if tokens < capacity then
      reset_us = base - now_us + fdiv(capacity - tokens + per_us - 1, per_us)
    end
    return allowed, remaining, retry_us, reset_us
  end,
  expires = function(p, state)
    if state[0] == 0 or state[2] >= p[2] then
      return RB_ABSENT_EXPIRY_US
    end
    return state[1] + fdiv(p[2] - state[2] + p[1] - 1, p[1])
  end,
}
