-- Gives back units a sidecar leased but did not spend (quota: Leased).
--
-- KEYS[1]  counter hash of fixed_window.lua
-- ARGV[1]  window index the units were granted in
-- ARGV[2]  units to give back
--
-- Returns the units given back: none once the window is over (its count
-- no longer matters). The sidecar stops spending the units before it sends
-- this, so a return can only let others admit what this one will not.
local v = redis.call('HMGET', KEYS[1], 'w', 'c')
if v[1] ~= ARGV[1] then
  return 0
end
local n = math.min(tonumber(ARGV[2]), tonumber(v[2]) or 0)
if n > 0 then
  redis.call('HINCRBY', KEYS[1], 'c', -n)
end
return n
