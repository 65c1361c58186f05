-- OUTBOX_BURY: KEYS[1] stream, KEYS[2] dead letters (a list, oldest first); ARGV handle,
-- dead letters kept at most. The claimed entry becomes a dead letter, its attempts one more.
local f = take(ARGV[1])
if not f then return 0 end
redis.call('RPUSH', KEYS[2], cmsgpack.pack({f.k, f.i, f.p, tonumber(f.a) + 1, tonumber(f.c)}))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
return 1
