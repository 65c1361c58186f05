-- The verification step, as a function of the IP failure key (nil: no per-IP limit):
-- ARGV mac, max_attempts, window_ms, lockout_ms, call id, IP failure limit, the presented
-- flow ('' unbound), device_ms. Returns {0} verified, {1, left} no code (counted as a
-- failure), {2, left} mismatch, {3, wait} locked out, {4, wait} IP limited, as
-- otp_core::store::policy::AddressState::verify decides. The IP's budget is checked
-- before anything of the address, and a wrong code counts the same whether or not a
-- code is pending.
local max, window, lockout, iplimit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
local flow, device_ms = ARGV[7], tonumber(ARGV[8])
local function verify(ipk)
  if s.n and #s.n > 9 and string.sub(s.n, 1, 8) == ARGV[5] then
    local what, rest = string.sub(s.n, 9, 9), string.sub(s.n, 10)
    if what == 'v' then return {0, 0} end
    if what == 'm' then return {2, tonumber(rest)} end
    if what == 'x' then return {1, tonumber(rest)} end
  end
  if ipk and tonumber(redis.call('GET', ipk) or '0') >= iplimit then
    return {4, math.max(redis.call('PTTL', ipk), 0)}
  end
  expire(window, lockout)
  local kind, left
  if flow ~= '' then
    -- Bound: only this flow's code, only its failures.
    local f = s.flows[flow]
    if not f then
      kind, left = 1, max
    elseif f.m == ARGV[1] then
      s.flows[flow] = nil
      s.n = ARGV[5] .. 'v' .. flow .. f.g
      save(window, lockout, device_ms)
      return {0, 0}
    else
      f.f = f.f + 1
      left = math.max(max - f.f, 0)
      if left == 0 then s.flows[flow] = nil end
      kind = 2
    end
  else
    -- Unbound: the most recent flow that is not a signed-in user's, under the address's
    -- failures and lockout; its flows stay as they are.
    if s.lu > now then return {3, s.lu - now} end
    local lk, lf = nil, nil
    for k, f in pairs(s.flows) do
      if f.g < 2 and (not lf or f.e > lf.e or (f.e == lf.e and k > lk)) then lk, lf = k, f end
    end
    if lf and lf.m == ARGV[1] then
      s.flows[lk] = nil; s.fc = 0; s.fs = 0
      s.n = ARGV[5] .. 'v' .. lk .. lf.g
      save(window, lockout, device_ms)
      return {0, 0}
    end
    if s.fc == 0 then s.fs = now end
    s.fc = s.fc + 1
    left = math.max(max - s.fc, 0)
    if left == 0 then s.lu = now + lockout end
    if lf then kind = 2 else kind = 1 end
  end
  if kind == 2 then s.n = ARGV[5] .. 'm' .. left else s.n = ARGV[5] .. 'x' .. left end
  save(window, lockout, device_ms)
  if ipk and redis.call('INCR', ipk) == 1 then redis.call('PEXPIRE', ipk, HOUR) end
  return {kind, left}
end
