-- Session creation, as a function: the session `sess` (one string, `<current jti>
-- <parent jti prefix> <created s>[,<auth>] <ip> <user agent>`, the parent empty until the
-- first rotation, `auth` the last authentication as `SessionAuth::encode` writes it, left
-- out while it is a code at the creation time), its subject's index `idx` (a sorted set
-- of the subject's session members scored by their last refresh in ms, same slot), first
-- refresh jti, expiry (s), user agent, IP, member, most sessions, the login's
-- authentication, whose time is the creation time. Ends the least recently refreshed
-- sessions beyond the most; returns how many. The same session again changes nothing.
local function create_session(sess, idx, jti, exp, ua, ip, member, most, auth)
  if redis.call('EXISTS', sess) == 1 then return 0 end
  local at = string.match(auth, '^%d+')
  local field = at
  if at ~= auth then field = at .. ',' .. auth end
  redis.call('SET', sess, jti .. '  ' .. field .. ' ' .. ip .. ' ' .. ua, 'EXAT', exp)
  redis.call('ZADD', idx, string.format('%d', now), member)
  if redis.call('TTL', idx) == -1 then
    redis.call('EXPIREAT', idx, exp)
  else
    redis.call('EXPIREAT', idx, exp, 'GT')
  end
  if redis.call('ZCARD', idx) <= most then return 0 end
  -- Over the cap: forget ended sessions, then end the least recently refreshed.
  local prefix = string.sub(sess, 1, #sess - #member)
  local live = {}
  for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    if m == member or redis.call('EXISTS', prefix .. m) == 1 then
      live[#live + 1] = m
    else
      redis.call('ZREM', idx, m)
    end
  end
  local over, ended = #live - most, 0
  for _, m in ipairs(live) do
    if over <= 0 then break end
    if m ~= member then
      redis.call('DEL', prefix .. m)
      redis.call('ZREM', idx, m)
      over = over - 1
      ended = ended + 1
    end
  end
  return ended
end
