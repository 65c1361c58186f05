-- RENEW: KEYS[1] session, KEYS[2] subject index; ARGV the new authentication (as
-- `SessionAuth::encode` writes it), a new current refresh jti or '' to keep the current
-- one, the session's new end (s, only ever extended), member. A new jti replaces the
-- current one with no parent, so the replaced token gets no reuse interval. Returns 1, or
-- 0 when there is no such session.
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local cj, pj, created, rest = string.match(v, '^(%S*) (%S*) (%d*)%S*(.*)$')
if ARGV[2] ~= '' then cj, pj = ARGV[2], '' end
redis.call('SET', KEYS[1], cj .. ' ' .. pj .. ' ' .. created .. ',' .. ARGV[1] .. rest, 'KEEPTTL')
redis.call('EXPIREAT', KEYS[1], ARGV[3], 'GT')
redis.call('EXPIREAT', KEYS[2], ARGV[3], 'GT')
return 1
