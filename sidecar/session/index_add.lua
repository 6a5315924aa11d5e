-- Adds a session to its subject's index and keeps the index consistent with
-- expirations: entries past their absolute expiry are trimmed, and the index
-- itself expires with its longest-lived session.
-- KEYS[1] index key; ARGV[1] hashed session name; ARGV[2] absolute expiry
-- (Unix ms); ARGV[3] now (Unix ms).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], string.format('%d', tonumber(last[2])))
return 1
