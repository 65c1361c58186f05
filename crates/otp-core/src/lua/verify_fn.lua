-- The verification step, as a function of the IP failure key (nil: no per-IP limit):
-- ARGV mac, max_attempts, window_ms, lockout_ms, call id, IP failure limit. Returns {0}
-- verified, {1, left} no code (counted as a failure), {2, left} mismatch, {3, wait} locked
-- out, {4, wait} IP limited. The IP's budget is checked before anything of the address,
-- and a wrong code counts the same whether or not a code is pending.
local max, window, lockout, iplimit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
local function verify(ipk)
  if s.n == ARGV[5] .. 'v' then return {0, 0} end
  if s.n == ARGV[5] .. 'm' then return {2, math.max(max - s.fc, 0)} end
  if s.n == ARGV[5] .. 'x' then return {1, math.max(max - s.fc, 0)} end
  if ipk and tonumber(redis.call('GET', ipk) or '0') >= iplimit then
    return {4, math.max(redis.call('PTTL', ipk), 0)}
  end
  expire_failures(lockout)
  if s.lu > now then return {3, s.lu - now} end
  local pending = s.m and now < s.e
  if pending and s.m == ARGV[1] then
    s.m = nil; s.fc = 0; s.fs = 0; s.n = ARGV[5] .. 'v'
    save(window, lockout)
    return {0, 0}
  end
  if s.fc == 0 then s.fs = now end
  s.fc = s.fc + 1
  local left = max - s.fc
  if left <= 0 then s.m = nil; s.lu = now + lockout; left = 0 end
  local kind = 1
  if pending then kind = 2; s.n = ARGV[5] .. 'm' else s.n = ARGV[5] .. 'x' end
  save(window, lockout)
  if ipk and redis.call('INCR', ipk) == 1 then redis.call('PEXPIRE', ipk, HOUR) end
  return {kind, left}
end
