-- Stores a session and its entry in the subject's index in one step, so a
-- session never exists without its entry: revoke-all, which reads the index,
-- finds every session whose create returned before it began. The index
-- drops entries whose absolute expiry passed and expires with its
-- longest-lived session.
-- KEYS: 1 the subject's index, 2 the session — one {bucket} slot.
-- ARGV: 1 hashed session name, 2 absolute expiry (Unix ms), 3 now (Unix ms),
-- 4 encrypted payload, 5 the session key's ttl (ms).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], string.format('%d', tonumber(last[2])))
return 1
