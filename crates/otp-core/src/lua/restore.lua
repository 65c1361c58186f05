-- RESTORE: KEYS[1] address; ARGV mac, ttl_ms. Makes the code pending again unless
-- another one is, forgetting the last call (so its resend is a new attempt).
local h = redis.call('HMGET', KEYS[1], 'm', 'e')
if h[1] and now < (tonumber(h[2]) or 0) then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'm', ARGV[1], 'e', string.format('%d', now + ttl))
redis.call('HDEL', KEYS[1], 'n')
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
