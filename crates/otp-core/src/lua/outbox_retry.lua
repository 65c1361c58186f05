-- OUTBOX_RETRY: KEYS[1] stream, KEYS[2] delayed set, KEYS[3] delayed items; ARGV handle,
-- delay ms. The claimed entry waits `delay` out of the stream, its attempts one more.
local f = take(ARGV[1])
if not f then return 0 end
redis.call('HSET', KEYS[3], f.i, cmsgpack.pack({f.k, f.i, f.p, tonumber(f.a) + 1, tonumber(f.c)}))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), f.i)
return 1
