-- Records a prefix or tag invalidation in one bucket's copy of the
-- policy's invalidations, in time bounded by ARGV[3] (the records kept),
-- however many paths the bucket holds. Entries stored before it whose
-- path or tags it covers are no longer served. Sequence numbers come from
-- the server's clock (microseconds) and only grow.
-- KEYS: 1 the bucket's invalidations hash.
-- ARGV: 1 record expiry ms, 2 now ms, 3 max records, 4 px, 5.. fields
--       ("p:<prefix>", "t:<tag>" or "*").
local t = redis.call('TIME')
local clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
seq = math.max(seq + 1, clock)
local s = string.format('%.0f', seq)
redis.call('HSET', KEYS[1], 'seq', s)
local val = s .. ':' .. ARGV[1]
for i = 5, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], val)
end
local now = tonumber(ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local kept = 0
for i = 1, #all, 2 do
  if all[i] ~= 'seq' then
    local exp = tonumber(string.match(all[i + 1], ':(%d+)$') or '0')
    if exp < now then
      redis.call('HDEL', KEYS[1], all[i])
    else
      kept = kept + 1
    end
  end
end
if kept > tonumber(ARGV[3]) then
  -- Too many to keep: one record invalidating everything stored before.
  for i = 1, #all, 2 do
    if all[i] ~= 'seq' then
      redis.call('HDEL', KEYS[1], all[i])
    end
  end
  redis.call('HSET', KEYS[1], '*', val)
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return s
