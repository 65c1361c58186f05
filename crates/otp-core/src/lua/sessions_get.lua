-- SESSIONS_GET: KEYS[1] subject index, KEYS[2..] its sessions; ARGV their members.
-- Returns {member, created, refreshed, ttl_s, ua, ip} per live session and drops ended
-- ones from the index.
local out, gone = {}, {}
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v then
    local _, _, ca, ip, ua = string.match(v, '^(%S*) (%S*) (%S*) (%S*) ?(.*)$')
    local refreshed = math.floor((tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i - 1])) or 0) / 1000)
    out[#out + 1] = {ARGV[i - 1], ca or '0', refreshed, redis.call('TTL', KEYS[i]), ua or '', ip or ''}
  else
    gone[#gone + 1] = ARGV[i - 1]
  end
end
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) end
return out
