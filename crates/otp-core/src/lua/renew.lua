-- RENEW: KEYS[1] session, KEYS[2] subject index; ARGV the new authentication (as
-- `SessionAuth::encode` writes it), the session's new end (s, only ever extended), member.
-- Returns 1, or 0 when there is no such session.
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local cj, pj, created, rest = string.match(v, '^(%S*) (%S*) (%d*)%S*(.*)$')
redis.call('SET', KEYS[1], cj .. ' ' .. pj .. ' ' .. created .. ',' .. ARGV[1] .. rest, 'KEEPTTL')
redis.call('EXPIREAT', KEYS[1], ARGV[2], 'GT')
redis.call('EXPIREAT', KEYS[2], ARGV[2], 'GT')
return 1
