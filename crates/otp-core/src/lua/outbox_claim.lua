-- OUTBOX_CLAIM: KEYS[1] stream, KEYS[2] delayed set (id by due ms), KEYS[3] delayed items
-- (id -> packed); ARGV consumer, max, lease ms. Claims entries whose lease ran out, then
-- due retries (put back into the stream), then new entries. Returns {handle, kind, id,
-- payload, attempts, created} each.
local max = tonumber(ARGV[2])
pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], 'g', '0', 'MKSTREAM')
local out = {}
local function push(e)
  if e and e[2] then
    local f = fields(e)
    out[#out + 1] = {e[1], f.k, f.i, f.p, f.a, f.c}
  end
end
local stale = redis.call('XAUTOCLAIM', KEYS[1], 'g', ARGV[1], ARGV[3], '0-0', 'COUNT', max)
for _, e in ipairs(stale[2]) do push(e) end
if #out < max then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, max - #out)) do
    local packed = redis.call('HGET', KEYS[3], id)
    if packed then
      local it = cmsgpack.unpack(packed)
      add(it[1], it[2], it[3], it[4], it[5])
    end
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
if #out < max then
  local fresh = redis.call('XREADGROUP', 'GROUP', 'g', ARGV[1], 'COUNT', max - #out,
    'STREAMS', KEYS[1], '>')
  if fresh then
    for _, e in ipairs(fresh[1][2]) do push(e) end
  end
end
return out
