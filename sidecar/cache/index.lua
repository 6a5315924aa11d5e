-- Records a path in the policy's path index and in its tag indexes, so
-- prefix and tag invalidation can find it. Scores are absolute expiry times
-- (ms) so expired paths are pruned as new ones arrive.
-- KEYS: the path index and tag indexes — all in the one {policy} slot.
-- ARGV: 1 path, 2 expiry ms, 3 now ms, 4 px for the index keys.
local px = tonumber(ARGV[4])
for _, k in ipairs(KEYS) do
  redis.call('ZADD', k, 'GT', ARGV[2], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. ARGV[3])
  if redis.call('PTTL', k) < px then
    redis.call('PEXPIRE', k, px)
  end
end
return 1
