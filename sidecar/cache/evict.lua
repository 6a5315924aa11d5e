-- Deletes every variant of one path and bumps its generation, so a fill that
-- read the old generation before this write cannot store a stale response.
-- KEYS: 1 vars set, 2 vary spec, 3 generation — one {path} slot. The variant
-- keys named by the set share that slot by construction.
-- ARGV: 1 px of the generation key.
local vars = redis.call('SMEMBERS', KEYS[1])
for _, k in ipairs(vars) do
  redis.call('DEL', k)
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
return #vars
