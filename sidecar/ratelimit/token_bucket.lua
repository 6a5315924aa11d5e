-- Token bucket as GCRA (generic cell rate algorithm).
--
-- KEYS[1]  theoretical arrival time (TAT) in microseconds of server time
-- ARGV[1]  emission interval in microseconds (window / limit; may be fractional)
-- ARGV[2]  burst
--
-- Returns {allowed (0|1), remaining, reset_ms, retry_after_ms}.
--
-- One number per key: the time at which the bucket would be full again if no
-- more requests came. Microseconds keep rates such as 7 per hour exact enough;
-- values stay below 2^53 so Lua's doubles hold them exactly, and they are
-- written with %.0f because Redis would otherwise format them with 14
-- significant digits.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])

local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end

local new_tat = tat + emission
local allow_at = new_tat - emission * burst
local diff = now - allow_at

if diff < 0 then
  -- Denied: the next token arrives at allow_at.
  local retry = math.ceil(-diff / 1000)
  local reset = math.ceil((tat - now) / 1000)
  return {0, 0, reset, retry}
end

local ttl = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
return {1, math.floor(diff / emission), ttl, 0}
