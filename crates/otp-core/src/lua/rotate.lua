-- ROTATE: KEYS[1] session, KEYS[2] subject index; ARGV presented jti, new jti, new
-- expires_at (s), sid, reuse interval (ms). Returns {0} rotated (also for the same
-- rotation resent), {1} reused (session ended), {2} unknown, {3, current jti} reissue.
local h = redis.call('HMGET', KEYS[1], 'cj', 'pj', 'rt')
local cj = h[1]
if not cj then return {2} end
if cj == ARGV[1] then
  local secs = string.format('%d', math.floor(now / 1000))
  redis.call('HSET', KEYS[1], 'cj', ARGV[2], 'pj', ARGV[1], 'rt', string.format('%d', now), 'ra', secs)
  redis.call('EXPIREAT', KEYS[1], ARGV[3])
  redis.call('ZADD', KEYS[2], string.format('%d', now), ARGV[4])
  redis.call('EXPIREAT', KEYS[2], ARGV[3], 'GT')
  return {0}
end
if h[2] == ARGV[1] then
  if cj == ARGV[2] then return {0} end
  local interval = tonumber(ARGV[5])
  if interval > 0 and now - (tonumber(h[3]) or 0) <= interval then
    redis.call('EXPIREAT', KEYS[1], ARGV[3], 'GT')
    redis.call('EXPIREAT', KEYS[2], ARGV[3], 'GT')
    return {3, cj}
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[4])
return {1}
