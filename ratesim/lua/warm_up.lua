-- Sentinel warm-up flow control, ported line by line from ratesim/algorithms/warm_up.py
-- (warm_up_kernel, WarmUpBucket.expires_at_us).
-- p = {[0] = count, warning, max_token, cold_factor};
-- state = {[0] = present, stored, last_filled_ms, h0_start, h0_pass, h1_start, h1_pass,
--          s0_start, s0_pass, s1_start, s1_pass}.

local WU_ABSENT_EXPIRY_US = -4611686018427387904 -- -(2^62)
local WU_NEVER_EXPIRES_US = 4611686018427387904 -- 2^62

-- The ms from which the state decides like an unseen key (nil: never; false: already).
local function wu_expires_ms(p, state)
  local count = p[0]
  local warning = p[1]
  local max_tok = p[2]
  local cold = p[3]
  local at_ms = 0
  local known = false
  local stored = state[1]
  if stored < max_tok then
    if stored == warning or (stored > warning and fdiv(count, cold) == 0) then
      return nil
    end
    local wait = fdiv((max_tok - stored) * 1000 + count - 1, count)
    at_ms = state[2] + fdiv(wait + 999, 1000) * 1000
    known = true
  end
  for k = 0, 1 do
    if state[8 + 2 * k] > 0 and ((not known) or state[7 + 2 * k] + 2000 > at_ms) then
      at_ms = state[7 + 2 * k] + 2000
      known = true
    end
  end
  if not known then return false end
  return at_ms
end

K['warm_up'] = {
  step = function(p, state, now_us, cost)
    local count = p[0]
    local warning = p[1]
    local max_tok = p[2]
    local cold = p[3]
    local t = fdiv(now_us, 1000)
    local hb = fdiv(t, 500)
    local sb = fdiv(t, 1000)
    local h_start = hb * 500
    local s_start = sb * 1000
    local h_slot = hb - 2 * fdiv(hb, 2)
    local s_slot = sb - 2 * fdiv(sb, 2)
    if state[0] == 0 then
      state[0] = 1
      state[1] = max_tok
      state[2] = s_start
      for i = 3, 10 do state[i] = 0 end
    end
    if s_start > state[2] then
      local prev = 0
      local o = 7 + 2 * (1 - s_slot)
      if state[o + 1] > 0 and state[o] == s_start - 1000 then
        prev = state[o + 1]
      end
      local stored = state[1]
      if stored < warning or (stored > warning and prev < fdiv(count, cold)) then
        local gap = s_start - state[2]
        if gap >= fdiv((max_tok - stored) * 1000 + count - 1, count) then
          stored = max_tok
        else
          stored = math.min(stored + fdiv(gap * count, 1000), max_tok)
        end
      end
      if stored > prev then stored = stored - prev else stored = 0 end
      state[1] = stored
      state[2] = s_start
    end
    local passed = 0
    for k = 0, 1 do
      if state[4 + 2 * k] > 0 and t - state[3 + 2 * k] < 1000 then
        passed = passed + state[4 + 2 * k]
      end
    end
    local stored = state[1]
    local bound
    if stored >= warning then
      local span = max_tok - warning
      bound = fdiv(count * span, (stored - warning) * (cold - 1) + span)
    else
      bound = count
    end
    local allowed = 0
    local retry_us = -1
    if cost <= count and passed + cost <= bound then
      allowed = 1
      if cost > 0 then
        passed = passed + cost
        local slots = {{3 + 2 * h_slot, h_start}, {7 + 2 * s_slot, s_start}}
        for i = 1, 2 do
          local o = slots[i][1]
          local start = slots[i][2]
          if state[o + 1] == 0 or state[o] < start then
            state[o] = start
            state[o + 1] = cost
          elseif state[o] == start then
            state[o + 1] = state[o + 1] + cost
          end
        end
      end
    elseif cost <= count then
      retry_us = (h_start + 500) * 1000 - now_us
    end
    local remaining = 0
    if bound > passed then remaining = bound - passed end
    local at = wu_expires_ms(p, state)
    if at == nil then
      return allowed, remaining, retry_us, -1
    end
    local reset_us = 0
    if at then reset_us = at * 1000 - now_us end
    if reset_us < 0 then reset_us = 0 end
    return allowed, remaining, retry_us, reset_us
  end,
  expires = function(p, state)
    if state[0] == 0 then return WU_ABSENT_EXPIRY_US end
    local at = wu_expires_ms(p, state)
    if at == nil then return WU_NEVER_EXPIRES_US end
    if not at then return WU_ABSENT_EXPIRY_US end
    return at * 1000
  end,
}
