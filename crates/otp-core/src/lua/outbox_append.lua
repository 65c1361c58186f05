-- OUTBOX_APPEND: KEYS[1] stream, KEYS[2] delayed set; ARGV capacity, kind, id, payload.
-- Returns 1 appended, 0 full (waiting, claimed and delayed items count).
if redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then
  return 0
end
add(ARGV[2], ARGV[3], ARGV[4], 0, now)
return 1
