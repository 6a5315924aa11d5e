-- Stores one response variant of a path, unless the path was invalidated
-- since the caller read its generation (a write that raced this fill), and
-- keeps at most ARGV[6] variants per path: one more evicts the variant
-- stored longest ago. Its cost is bounded by that cap, never by how many
-- variants were ever requested.
-- KEYS: 1 variant, 2 path meta hash, 3 path variant zset (by store time) — one bucket slot.
-- ARGV: 1 encoded entry, 2 px, 3 vary spec, 4 generation seen at lookup,
--       5 now ms, 6 max variants, 7 px of the meta keys.
local gen = redis.call('HGET', KEYS[2], 'gen') or '0'
if gen ~= ARGV[4] then
  return 0
end
local px = tonumber(ARGV[2])
local now = tonumber(ARGV[5])
redis.call('SET', KEYS[1], ARGV[1], 'PX', px)
-- Scored by when they were stored: no variant outlives the meta keys'
-- lifetime, so older members have expired and are dropped.
redis.call('ZADD', KEYS[3], now, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - tonumber(ARGV[7])))
local stored = 1
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[6])
if over > 0 then
  local evicted = redis.call('ZPOPMIN', KEYS[3], over)
  for i = 1, #evicted, 2 do
    redis.call('DEL', evicted[i])
    if evicted[i] == KEYS[1] then
      stored = 2
    end
  end
end
redis.call('HSET', KEYS[2], 'vary', ARGV[3])
-- The meta keys must outlive every variant they describe.
local metaPX = tonumber(ARGV[7])
for i = 2, 3 do
  if redis.call('PTTL', KEYS[i]) < metaPX then
    redis.call('PEXPIRE', KEYS[i], metaPX)
  end
end
return stored
