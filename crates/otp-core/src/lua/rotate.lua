-- ROTATE: KEYS[1] session, KEYS[2] subject index; ARGV presented jti, new jti, new
-- expires_at (s), member, reuse interval (ms). Returns {0, auth} rotated (also for the
-- same rotation resent), {1} reused (session ended), {2} unknown, {3, current jti, auth}
-- reissue; `auth` is the session's last authentication (its creation time in a session
-- written before authentications were kept).
-- The parent is kept as the first 11 characters (66 bits) of its jti, enough to tell it
-- from the session's other ancestors; the index score is the last rotation's time.
local v = redis.call('GET', KEYS[1])
if not v then return {2} end
local cj, pj, rest = string.match(v, '^(%S*) (%S*) (.*)$')
local parent = string.sub(ARGV[1], 1, 11)
local created, auth = string.match(rest, '^(%d*),?(%w*)')
if auth == '' then auth = created end
if cj == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. parent .. ' ' .. rest, 'EXAT', ARGV[3])
  redis.call('ZADD', KEYS[2], string.format('%d', now), ARGV[4])
  redis.call('EXPIREAT', KEYS[2], ARGV[3], 'GT')
  return {0, auth}
end
if pj ~= '' and pj == parent then
  if cj == ARGV[2] then return {0, auth} end
  local interval = tonumber(ARGV[5])
  local rotated = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[4]) or '0')
  if interval > 0 and now - rotated <= interval then
    redis.call('EXPIREAT', KEYS[1], ARGV[3], 'GT')
    redis.call('EXPIREAT', KEYS[2], ARGV[3], 'GT')
    return {3, cj, auth}
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[4])
return {1}
