-- OUTBOX_STATS: KEYS[1] stream, KEYS[2] delayed set, KEYS[3] delayed items, KEYS[4] dead
-- letters. Returns {undelivered, claimed, delayed, dead, oldest created ms or -1}: the
-- oldest of the stream's first entry and the 16 soonest due retries.
local delayed = redis.call('ZCARD', KEYS[2])
local claimed = 0
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], 'g')
if ok then claimed = pending[1] end
local oldest = -1
local function older(c)
  c = tonumber(c)
  if c and (oldest < 0 or c < oldest) then oldest = c end
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if first then older(fields(first).c) end
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, 15)) do
  local packed = redis.call('HGET', KEYS[3], id)
  if packed then older(cmsgpack.unpack(packed)[5]) end
end
return {redis.call('XLEN', KEYS[1]) + delayed, claimed, delayed, redis.call('LLEN', KEYS[4]),
        string.format('%d', oldest)}
