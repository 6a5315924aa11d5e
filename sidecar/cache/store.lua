-- Stores one response variant of a path, unless the path was invalidated
-- since the caller read its generation (a write that raced this fill).
-- KEYS: 1 variant, 2 vars set, 3 vary spec, 4 generation — one {path} slot.
-- ARGV: 1 encoded entry, 2 px, 3 vary spec, 4 generation seen at lookup.
local gen = redis.call('GET', KEYS[4]) or '0'
if gen ~= ARGV[4] then
  return 0
end
local px = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', px)
redis.call('SADD', KEYS[2], KEYS[1])
-- Variants expire on their own; keep the set from collecting their names.
if redis.call('SCARD', KEYS[2]) > 64 then
  for _, k in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('EXISTS', k) == 0 then
      redis.call('SREM', KEYS[2], k)
    end
  end
end
redis.call('SET', KEYS[3], ARGV[3], 'KEEPTTL')
-- The set and the spec must outlive every variant they describe.
for i = 2, 3 do
  if redis.call('PTTL', KEYS[i]) < px then
    redis.call('PEXPIRE', KEYS[i], px)
  end
end
return 1
