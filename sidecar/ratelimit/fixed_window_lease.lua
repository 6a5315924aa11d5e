-- Fixed window lease (quota: Leased).
--
-- KEYS[1]  counter hash {w = window index, c = units granted in that window}
-- ARGV[1]  window length in milliseconds
-- ARGV[2]  limit per window
-- ARGV[3]  units wanted
--
-- Returns {granted, left, reset_ms, window index (string)}.
--
-- Every unit a sidecar may admit is granted here first, from the same
-- counter, so the fleet never admits more than limit per window. A grant
-- is at most half of what is left (at least one), so the last units of a
-- window go out one by one instead of sitting in one replica.
--
-- Windows are aligned to multiples of the window length on the Redis
-- server's clock (TIME), so sidecars with skewed clocks agree on where a
-- window starts; the sidecar spends its units only until the window end it
-- is told here, measured from when it sent the call. The time left is
-- computed in microseconds and rounded down to whole milliseconds: from
-- TIME truncated to milliseconds it would be up to 1 ms more than what is
-- really left, and the sidecar would spend the slice after its window
-- ended, on top of the next window's limit. The window index is stored
-- next to the count, so a key that has not expired yet at a boundary
-- cannot carry its count into the next window.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local win = tonumber(ARGV[1]) * 1000
local limit = tonumber(ARGV[2])
local want = tonumber(ARGV[3])

local idx = math.floor(now / win)
local reset = math.floor(((idx + 1) * win - now) / 1000)

local v = redis.call('HMGET', KEYS[1], 'w', 'c')
local c = 0
if tonumber(v[1]) == idx then
  c = tonumber(v[2]) or 0
end

local left = limit - c
if left <= 0 then
  return {0, 0, reset, string.format('%.0f', idx)}
end
local grant = math.min(want, math.max(1, math.floor(left / 2)))
if c == 0 then
  redis.call('HSET', KEYS[1], 'w', string.format('%.0f', idx), 'c', grant)
  redis.call('PEXPIRE', KEYS[1], reset + 1000)
else
  redis.call('HINCRBY', KEYS[1], 'c', grant)
end
return {grant, left - grant, reset, string.format('%.0f', idx)}
