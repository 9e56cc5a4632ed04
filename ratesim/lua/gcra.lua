-- GCRA, ported line by line from ratesim/algorithms/gcra.py (gcra_kernel, GCRA.expires_at_us).
-- p = {[0] = T_us, DVT_us, limit}; state = {[0] = present, tat_us}.

local ABSENT_EXPIRY_US = -4611686018427387904 -- -(2^62), as in gcra.py

K['gcra'] = {
  step = function(p, state, now_us, cost)
    local t_us = p[0]
    local dvt_us = p[1]
    local limit = p[2]
    local tat = now_us
    if state[0] ~= 0 and state[1] > now_us then
      tat = state[1]
    end
    if cost > limit then
      local ttl = tat - now_us
      local nxt = dvt_us - ttl
      local remaining = 0
      if nxt >= 0 then remaining = fdiv(nxt, t_us) end
      return 0, remaining, -1, ttl
    end
    local new_tat = tat + cost * t_us
    local diff = now_us - (new_tat - dvt_us)
    if diff < 0 then
      local ttl = tat - now_us
      local nxt = dvt_us - ttl
      local remaining = 0
      if nxt >= 0 then remaining = fdiv(nxt, t_us) end
      return 0, remaining, -diff, ttl
    end
    state[0] = 1
    state[1] = new_tat
    local ttl = new_tat - now_us
    local nxt = dvt_us - ttl
    local remaining = 0
    if nxt >= 0 then remaining = fdiv(nxt, t_us) end
    return 1, remaining, -1, ttl
  end,
  expires = function(p, state)
    if state[0] ~= 0 then return state[1] end
    return ABSENT_EXPIRY_US
  end,
}
