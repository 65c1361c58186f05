-- ISSUE, second part. Returns {0, 0, resent, known device} issued, {1, wait, limit}
-- refused (limit 1 minute, 2 hour, 3 day, 4 cooldown, 5 no room for a new flow), {3, 0,
-- resent, known device} counted and stored locked by an administrator (a code nobody can
-- present), as
-- otp_core::store::policy::AddressState::issue decides.
expire(window, lockout)
local known = device ~= '' and since > s.df
local b = s
if known then
  b = s.devices[device] or { rs = 0, rc = 0, hs = 0, hc = 0, ds = 0, dc = 0, last = 0 }
end
local resent = resend ~= '' and s.flows[resend] ~= nil
local victim, noroom = nil, false
if not resent then
  local count = 0
  for _ in pairs(s.flows) do count = count + 1 end
  if count >= max_flows then
    -- The least recently issued flow: of an unknown device, or (for a known device or a
    -- signed-in user) of anyone.
    local function oldest(unknown_only)
      local best, bk = nil, nil
      for k, f in pairs(s.flows) do
        if (not unknown_only or f.g == 0) and (not best or f.e < best.e or (f.e == best.e and k < bk)) then
          best, bk = f, k
        end
      end
      return bk
    end
    victim = oldest(true)
    if not victim and (known or signed) then victim = oldest(false) end
    noroom = victim == nil
  end
end
local wait, which = 0, 0
-- The longest wait; on a tie the first limit named (as otp_core::store::policy does).
local function consider(w, k) if w and w > wait then wait = w; which = k end end
consider(full(b.rs, b.rc, window, limit), 1)
consider(full(b.hs, b.hc, HOUR, per_hour), 2)
consider(full(b.ds, b.dc, DAY, per_day), 3)
if cooldown > 0 then
  local last = 0
  if known then
    last = b.last
  else
    for _, f in pairs(s.flows) do
      if f.g == 0 then last = math.max(last, f.e - ttl) end
    end
  end
  if last > 0 and now < last + cooldown then consider(last + cooldown - now, 4) end
end
if noroom then
  local soon = nil
  for _, f in pairs(s.flows) do
    if not soon or f.e - now < soon then soon = f.e - now end
  end
  consider(soon, 5)
end
if which > 0 then return {1, wait, which} end
b.rs, b.rc = counted(b.rs, b.rc, window)
b.hs, b.hc = counted(b.hs, b.hc, HOUR)
b.ds, b.dc = counted(b.ds, b.dc, DAY)
local kn = 0
if known then b.last = now; s.devices[device] = b; kn = 1 end
-- Later than every pending flow's but an administrator's, so the most recent flow is
-- always the last one issued.
local e = now + ttl
for _, f in pairs(s.flows) do
  if f.g < 4 and f.e >= e then e = f.e + 1 end
end
-- A locked address's flow holds a code nobody can present: its requests are counted and
-- refused exactly as anyone's, and nothing tells that it is locked.
local locked = s.al > now
local mac = ARGV[1]
if locked then mac = string.rep('\0', 16) end
local rs = 0
if resent then
  local f = s.flows[resend]
  f.m = mac; f.e = e
  rs = 1
else
  if victim then s.flows[victim] = nil end
  local g = kn
  if signed then g = g + 2 end
  s.flows[newflow] = { m = mac, e = e, f = 0, g = g }
end
if locked then
  -- Not recorded: the same call resent is answered locked again, never issued.
  save(window, lockout, device_ms)
  return {3, 0, rs, kn}
end
s.n = call .. rs .. kn
save(window, lockout, device_ms)
return {0, 0, rs, kn}
