-- OUTBOX_REPLAY: KEYS[1] stream, KEYS[2] dead letters. Every dead letter back into the
-- stream, its attempts reset; returns how many.
local dead = redis.call('LRANGE', KEYS[2], 0, -1)
for _, packed in ipairs(dead) do
  local it = cmsgpack.unpack(packed)
  add(it[1], it[2], it[3], 0, it[5])
end
redis.call('DEL', KEYS[2])
return #dead
