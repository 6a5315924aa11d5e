-- Fixed window counter.
--
-- KEYS[1]  counter hash {w = window index, c = admitted in that window}
-- ARGV[1]  window length in milliseconds
-- ARGV[2]  limit per window
--
-- Returns {allowed (0|1), remaining, reset_ms, retry_after_ms}.
--
-- Windows are aligned to multiples of the window length on the Redis server's
-- clock (TIME), so sidecars with skewed clocks agree on where a window starts,
-- and a 1500ms window is as exact as a 1h one. The window index is stored next
-- to the count instead of relying on key expiry to start a new window: expiry
-- is only housekeeping, so a key that has not expired yet at a boundary cannot
-- carry its count into the next window.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])

local idx = math.floor(now / win)
local reset = (idx + 1) * win - now

local v = redis.call('HMGET', KEYS[1], 'w', 'c')
local c = 0
if tonumber(v[1]) == idx then
  c = tonumber(v[2]) or 0
end

if c >= limit then
  return {0, 0, reset, reset}
end

if c == 0 then
  -- First admitted request of the window: reset the count and expire the key
  -- with the window, atomically with the increment.
  redis.call('HSET', KEYS[1], 'w', string.format('%.0f', idx), 'c', 1)
  redis.call('PEXPIRE', KEYS[1], reset + 1000)
else
  redis.call('HINCRBY', KEYS[1], 'c', 1)
end
return {1, limit - c - 1, reset, 0}
