-- DISCARD: KEYS[1] address; ARGV mac, flow. Deletes the flow if its code is still this one.
local field = 'f' .. ARGV[2]
local cur = redis.call('HGET', KEYS[1], field)
if cur and #cur == 26 and string.sub(cur, 1, 16) == ARGV[1] then
  redis.call('HDEL', KEYS[1], field)
  if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
end
return 0
