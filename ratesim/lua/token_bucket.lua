-- Token bucket (x/time/rate semantics), ported line by line from
-- ratesim/algorithms/token_bucket.py (token_bucket_kernel, TokenBucket.expires_at_us).
-- p = {[0] = unit, per_us, capacity, burst, fill_us, per_fill};
-- state = {[0] = present, last_us, tokens_units}.

local TB_ABSENT_EXPIRY_US = -4611686018427387904 -- -(2^62)
local TB_NEVER_EXPIRES_US = 4611686018427387904 -- 2^62

-- Python's floor division of a possibly negative time by a positive period, written as in the
-- Python kernel (floor for non-negative operands, the mirrored form for negative ones).
local function tb_tick(t_us, fill_us)
  if t_us >= 0 then
    return fdiv(t_us, fill_us)
  end
  return -fdiv(fill_us - 1 - t_us, fill_us)
end

K['token_bucket'] = {
  step = function(p, state, now_us, cost)
    local unit = p[0]
    local per_us = p[1]
    local capacity = p[2]
    local burst = p[3]
    local fill_us = p[4]
    local per_fill = p[5]
    local tokens = capacity
    local base_us = now_us
    if state[0] ~= 0 then
      tokens = state[2]
      local last_us = state[1]
      if now_us <= last_us then
        base_us = last_us
      elseif tokens < capacity then
        local missing = capacity - tokens
        if fill_us > 0 then
          local now_tick = tb_tick(now_us, fill_us)
          local last_tick = tb_tick(last_us, fill_us)
          local ticks = now_tick - last_tick
          if ticks >= fdiv(missing + per_fill - 1, per_fill) then
            tokens = capacity
          else
            tokens = tokens + ticks * per_fill
          end
        elseif per_us > 0 then
          local elapsed = now_us - last_us
          if elapsed >= fdiv(missing + per_us - 1, per_us) then
            tokens = capacity
          else
            tokens = tokens + elapsed * per_us
          end
        end
      end
    end
    local allowed = 0
    local retry_after_us = -1
    if cost <= burst then
      local need = cost * unit
      if tokens >= need then
        allowed = 1
        tokens = tokens - need
        base_us = now_us
        state[0] = 1
        state[1] = now_us
        state[2] = tokens
      elseif fill_us > 0 then
        local base_tick = tb_tick(base_us, fill_us)
        local fills = fdiv(need - tokens + per_fill - 1, per_fill)
        retry_after_us = (base_tick + fills) * fill_us - now_us
      elseif per_us > 0 then
        retry_after_us = base_us - now_us + fdiv(need - tokens + per_us - 1, per_us)
      end
    end
    local remaining = fdiv(tokens, unit)
    local reset_after_us
    if tokens >= capacity then
      reset_after_us = 0
    elseif fill_us > 0 then
      local base_tick = tb_tick(base_us, fill_us)
      local fills = fdiv(capacity - tokens + per_fill - 1, per_fill)
      reset_after_us = (base_tick + fills) * fill_us - now_us
    elseif per_us > 0 then
      reset_after_us = base_us - now_us + fdiv(capacity - tokens + per_us - 1, per_us)
    else
      reset_after_us = -1
    end
    return allowed, remaining, retry_after_us, reset_after_us
  end,
  expires = function(p, state)
    local per_us = p[1]
    local capacity = p[2]
    local fill_us = p[4]
    local per_fill = p[5]
    if state[0] == 0 or state[2] >= capacity then
      return TB_ABSENT_EXPIRY_US
    end
    local last_us = state[1]
    local missing = capacity - state[2]
    if fill_us > 0 then
      return (fdiv(last_us, fill_us) + fdiv(missing + per_fill - 1, per_fill)) * fill_us
    end
    if per_us == 0 then
      return TB_NEVER_EXPIRES_US
    end
    return last_us + fdiv(missing + per_us - 1, per_us)
  end,
}
