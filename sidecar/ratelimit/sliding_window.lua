-- Sliding window counter with sub-window slots.
--
-- KEYS[1]  hash of slot index -> requests admitted in that slot
-- ARGV[1]  slot length in milliseconds
-- ARGV[2]  number of slots per window (slots * slot length >= window)
-- ARGV[3]  limit per window
--
-- Returns {allowed (0|1), remaining, reset_ms, retry_after_ms}.
--
-- A request at time now is admitted only if fewer than limit requests were
-- admitted in the current slot and the `slots` slots before it. Those slots
-- cover [now - window - slot, now], a superset of the window ending now, so
-- no interval of one window length can ever hold more than limit admitted
-- requests. The oldest slot is counted in full rather than weighted by its
-- overlap with the window: weighting assumes the slot's requests were spread
-- evenly and admits up to limit + limit/slots too many when they were not.
-- Only admitted requests are counted, so a client hammering a closed limit
-- does not push its own reopening further away.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot = tonumber(ARGV[1])
local slots = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])

local cur = math.floor(now / slot)
local first = cur - slots

local all = redis.call('HGETALL', KEYS[1])
local count = 0
local oldest = nil
local stale = {}
for i = 1, #all, 2 do
  local idx = tonumber(all[i])
  local n = tonumber(all[i + 1])
  if idx < first then
    stale[#stale + 1] = all[i]
  else
    count = count + n
    if oldest == nil or idx < oldest then
      oldest = idx
    end
  end
end
if #stale > 0 then
  redis.call('HDEL', KEYS[1], unpack(stale))
end

local allowed = 0
if count < limit then
  allowed = 1
  count = count + 1
  redis.call('HINCRBY', KEYS[1], string.format('%.0f', cur), 1)
  redis.call('PEXPIRE', KEYS[1], (slots + 2) * slot)
  if oldest == nil then
    oldest = cur
  end
end

-- Capacity comes back when the oldest counted slot leaves the range, i.e.
-- when the slot index passes oldest + slots.
local reset = 0
if oldest ~= nil then
  reset = (oldest + slots + 1) * slot - now
end
local remaining = limit - count
if remaining < 0 then
  remaining = 0
end
if allowed == 1 then
  return {1, remaining, reset, 0}
end
return {0, 0, reset, reset}
