-- SESSIONS_GET: KEYS[1] subject index, KEYS[2..] its sessions; ARGV their members.
-- Returns {member, created, refreshed, ttl_s, ua, ip} per live session (created: the
-- login's time; refreshed: the last rotation's, the creation before any) and drops ended
-- ones from the index.
local out, gone = {}, {}
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v then
    local _, pj, ca, ip, ua = string.match(v, '^(%S*) (%S*) (%d*)%S* (%S*) ?(.*)$')
    -- Never rotated (no parent yet): last refreshed at its creation.
    local refreshed = ca
    if pj ~= '' then
      refreshed = math.floor((tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i - 1])) or 0) / 1000)
    end
    out[#out + 1] = {ARGV[i - 1], ca or '0', refreshed, redis.call('TTL', KEYS[i]), ua or '', ip or ''}
  else
    gone[#gone + 1] = ARGV[i - 1]
  end
end
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) end
return out
