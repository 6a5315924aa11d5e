-- Invalidates every variant of one path in O(1): the path's generation
-- moves on, so entries that recorded the old one are no longer served
-- (they may still be revalidated), and a fill that read it cannot store.
-- Generations come from the server's clock (microseconds) and only grow,
-- so one lost to eviction or a failover never comes back to an old value.
-- KEYS: 1 path meta hash — in the path's bucket slot.
-- ARGV: 1 px of the meta key.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
gen = math.max(gen + 1, now)
redis.call('HSET', KEYS[1], 'gen', string.format('%.0f', gen))
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
