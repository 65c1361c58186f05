-- Session creation, as a function: the session hash `sess`, its subject's index `idx`
-- (a sorted set of session ids scored by their last refresh in ms, same slot), subject key, first refresh
-- jti, expiry (s), user agent, IP, sid, most sessions. Ends the least recently
-- refreshed sessions beyond the most; returns how many. The same session again changes
-- nothing.
local function create_session(sess, idx, sk, jti, exp, ua, ip, sid, most)
  if redis.call('HEXISTS', sess, 'cj') == 1 then return 0 end
  local secs = string.format('%d', math.floor(now / 1000))
  redis.call('HSET', sess, 'sk', sk, 'cj', jti, 'ca', secs, 'ra', secs)
  if ua ~= '' then redis.call('HSET', sess, 'ua', ua) end
  if ip ~= '' then redis.call('HSET', sess, 'ip', ip) end
  redis.call('EXPIREAT', sess, exp)
  redis.call('ZADD', idx, string.format('%d', now), sid)
  if redis.call('TTL', idx) == -1 then
    redis.call('EXPIREAT', idx, exp)
  else
    redis.call('EXPIREAT', idx, exp, 'GT')
  end
  if redis.call('ZCARD', idx) <= most then return 0 end
  -- Over the cap: forget ended sessions, then end the least recently refreshed.
  local prefix = string.sub(sess, 1, #sess - #sid)
  local live = {}
  for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    if m == sid or redis.call('HEXISTS', prefix .. m, 'cj') == 1 then
      live[#live + 1] = m
    else
      redis.call('ZREM', idx, m)
    end
  end
  local over, ended = #live - most, 0
  for _, m in ipairs(live) do
    if over <= 0 then break end
    if m ~= sid then
      redis.call('DEL', prefix .. m)
      redis.call('ZREM', idx, m)
      over = over - 1
      ended = ended + 1
    end
  end
  return ended
end
