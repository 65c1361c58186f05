-- OUTBOX_DEAD: KEYS[1] dead letters; ARGV max. Returns {kind, id, payload, attempts,
-- created} of the oldest `max`.
local out = {}
for _, packed in ipairs(redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  local it = cmsgpack.unpack(packed)
  out[#out + 1] = {it[1], it[2], it[3], string.format('%d', it[4]), string.format('%d', it[5])}
end
return out
