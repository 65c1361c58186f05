-- IP_TAKE: KEYS[1] ip counter; ARGV limit, window_ms. Returns {0} or {1, wait}.
local c = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if c == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
if c > tonumber(ARGV[1]) then return {1, ttl} end
return {0, 0}
