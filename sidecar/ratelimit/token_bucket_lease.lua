-- Token bucket lease (quota: Leased): takes up to ARGV[3] tokens at once
-- from the GCRA state of token_bucket.lua.
--
-- KEYS[1]  theoretical arrival time (TAT) in microseconds of server time
-- ARGV[1]  emission interval in microseconds (window / limit)
-- ARGV[2]  burst, already reduced by the tokens one lease lifetime adds
--          (see rule.leaseBurst): a token is spent at most one lifetime
--          after it was taken, so taking from a bucket that much smaller
--          keeps every interval within the configured burst
-- ARGV[3]  tokens wanted
--
-- Returns {granted, left, reset_ms, retry_after_ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])

local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end

-- n tokens conform when tat + n * emission - burst * emission <= now.
local avail = math.floor((now - tat) / emission + burst)
if avail < 1 then
  local retry = math.ceil((tat + emission - burst * emission - now) / 1000)
  return {0, 0, math.ceil((tat - now) / 1000), math.max(retry, 1)}
end
local grant = math.min(want, math.max(1, math.floor(avail / 2)))
local new_tat = tat + grant * emission
local ttl = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
return {grant, avail - grant, ttl, 0}
