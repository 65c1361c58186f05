-- SESSIONS_GET: KEYS[1] subject index, KEYS[2..] its sessions; ARGV their sids. Returns
-- {sid, created, refreshed, ttl_s, ua, ip} per live session and drops ended ones from
-- the index.
local out, gone = {}, {}
for i = 2, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'cj', 'ca', 'ra', 'ua', 'ip')
  if h[1] then
    out[#out + 1] = {ARGV[i - 1], h[2], h[3], redis.call('TTL', KEYS[i]), h[4] or '', h[5] or ''}
  else
    gone[#gone + 1] = ARGV[i - 1]
  end
end
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) end
return out
