-- DISCARD: KEYS[1] address; ARGV mac. Deletes the code if it is still this one.
if redis.call('HGET', KEYS[1], 'm') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'm', 'e')
  if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
end
return 0
