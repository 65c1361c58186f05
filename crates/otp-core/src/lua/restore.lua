-- RESTORE: KEYS[1] address; ARGV mac, ttl_ms, flow ('' for the one the call consumed),
-- call id. Makes the flow's code pending again unless the flow is pending, forgetting the
-- last call (so its resend is a new attempt).
local flow, g = ARGV[3], 0
local n = redis.call('HGET', KEYS[1], 'n')
if n and #n == 22 and string.sub(n, 1, 9) == ARGV[4] .. 'v' then
  flow = string.sub(n, 10, 21); g = tonumber(string.sub(n, 22, 22)) or 0
end
if flow == '' then return 0 end
local cur = redis.call('HGET', KEYS[1], 'f' .. flow)
if cur and #cur == 26 then
  local _, e = struct.unpack('<c16dBB', cur)
  if now < e then return 0 end
end
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'f' .. flow, struct.pack('<c16dBB', ARGV[1], now + ttl, 0, g))
redis.call('HDEL', KEYS[1], 'n')
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
