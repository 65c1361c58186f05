-- ISSUE, second part. Returns {0} issued, {1, wait, limit} address limited (limit 1
-- minute, 2 hour, 3 day, 4 cooldown), {3, wait} locked out.
expire_failures(lockout)
if s.lu > now then return {3, s.lu - now} end
local wait, which = 0, 0
-- The longest wait; on a tie the first limit named (as otp_core::policy does).
local function consider(w, k) if w and w > wait then wait = w; which = k end end
consider(full(s.rs, s.rc, window, limit), 1)
consider(full(s.hs, s.hc, HOUR, per_hour), 2)
consider(full(s.ds, s.dc, DAY, per_day), 3)
if cooldown > 0 and s.m and now < s.e then
  local at = s.e - ttl
  if now < at + cooldown then consider(at + cooldown - now, 4) end
end
if which > 0 then return {1, wait, which} end
s.rs, s.rc = counted(s.rs, s.rc, window)
s.hs, s.hc = counted(s.hs, s.hc, HOUR)
s.ds, s.dc = counted(s.ds, s.dc, DAY)
s.m = ARGV[1]
s.e = now + ttl
s.n = call
save(window, lockout)
return {0, 0}
