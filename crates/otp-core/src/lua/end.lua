-- END: KEYS[1] session, KEYS[2] subject index, optionally KEYS[3] a revoked jti; ARGV member,
-- `1` to end the session (else `0`), and with KEYS[3] the token's expiry (s).
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
if KEYS[3] and tonumber(ARGV[3]) * 1000 > now then
  redis.call('SET', KEYS[3], '1', 'EXAT', ARGV[3])
end
return 0
