-- Per-window counters (Kong calendar windows, Envoy counted hits), ported line by line from
-- ratesim/algorithms/calendar_window.py (calendar_window_kernel, _KeyedWindow.expires_at_us).
-- p = {[0] = limit, window_us, calendar (0 fixed, 1 month, 2 year), count_rejected};
-- state = {[0] = window index, count, previous count}.

local CW_ABSENT_EXPIRY_US = -4611686018427387904 -- -(2^62)
local CW_US_PER_DAY = 86400000000

-- The window index of now_us (fdiv floors for any sign, like the Python kernel's branches).
local function cw_index(p, now_us)
  if p[2] == 0 then
    return fdiv(now_us, p[1])
  end
  local days = fdiv(now_us, CW_US_PER_DAY)
  local z = days + 719468
  local era = fdiv(z, 146097)
  local doe = z - era * 146097
  local yoe = fdiv(doe - fdiv(doe, 1460) + fdiv(doe, 36524) - fdiv(doe, 146096), 365)
  local doy = doe - (365 * yoe + fdiv(yoe, 4) - fdiv(yoe, 100))
  local mp = fdiv(5 * doy + 2, 153)
  local month
  if mp < 10 then month = mp + 3 else month = mp - 9 end
  local year = yoe + era * 400
  if month <= 2 then year = year + 1 end
  if p[2] == 2 then
    return year
  end
  return year * 12 + month - 1
end

-- The instant (us) window `use` ends.
local function cw_end(p, use)
  if p[2] == 0 then
    return (use + 1) * p[1]
  end
  local y
  local m
  if p[2] == 2 then
    y = use + 1
    m = 1
  else
    local nxt = use + 1
    y = fdiv(nxt, 12)
    m = nxt - 12 * y + 1
  end
  if m <= 2 then y = y - 1 end
  local era = fdiv(y, 400)
  local yoe = y - era * 400
  local mm
  if m > 2 then mm = m - 3 else mm = m + 9 end
  local doy = fdiv(153 * mm + 2, 5)
  local doe = yoe * 365 + fdiv(yoe, 4) - fdiv(yoe, 100) + doy
  return (era * 146097 + doe - 719468) * CW_US_PER_DAY
end

K['calendar_window'] = {
  step = function(p, state, now_us, cost)
    local limit = p[0]
    local count_rejected = p[3]
    local j = cw_index(p, now_us)
    local idx = state[0]
    local cur = state[1]
    local prev = state[2]
    if cur == 0 and prev == 0 then
      idx = j
    elseif j > idx then
      if j == idx + 1 then prev = cur else prev = 0 end
      cur = 0
      idx = j
    end
    local lagging = 0
    if j < idx then lagging = 1 end
    local count = cur
    if lagging == 1 then count = prev end
    local end_in_us = cw_end(p, idx - lagging) - now_us
    local allowed
    local retry_us
    if cost > limit then
      allowed = 0
      retry_us = -1
    elseif count + cost <= limit then
      allowed = 1
      retry_us = -1
    else
      allowed = 0
      retry_us = end_in_us
    end
    if cost > 0 and (allowed == 1 or count_rejected ~= 0) then
      if cost <= limit + 1 then
        count = math.min(count + cost, limit + 1)
      else
        count = limit + 1
      end
      if lagging == 1 then prev = count else cur = count end
      state[0] = idx
      state[1] = cur
      state[2] = prev
    end
    local reset_us = 0
    if count > 0 then reset_us = end_in_us end
    return allowed, math.max(limit - count, 0), retry_us, reset_us
  end,
  expires = function(p, state)
    if state[1] == 0 and state[2] == 0 then
      return CW_ABSENT_EXPIRY_US
    end
    return cw_end(p, state[0])
  end,
}
K['counting_fixed_window'] = K['calendar_window']
