-- ADMIN: KEYS[1] address; ARGV op ('r' read, 'l' lock, 'u' unlock, 'i' issue),
-- window_ms, lockout_ms, device_ms, max_flows, lock_ms (l) or ttl_ms (i), flow (i), mac (i).
-- Returns {admin lock end, lockout end, failures, flows, minute, hour, day, known devices,
-- devices forgotten (s), issued}, as otp_core::store::policy::AddressState::administer.
local op, window, lockout, device_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local max_flows, span = math.max(tonumber(ARGV[5]), 1), tonumber(ARGV[6])
expire(window, lockout)
local issued = 0
if op == 'l' then
  s.al = math.max(now + span, now + 1)
  s.flows = {}
elseif op == 'u' then
  s.al = 0; s.lu = 0; s.fc = 0; s.fs = 0
elseif op == 'i' and s.al == 0 then
  local flow = ARGV[7]
  s.flows[flow] = nil
  local count = 0
  for _ in pairs(s.flows) do count = count + 1 end
  if count >= max_flows then
    -- Room as for a known device: the oldest unknown device's flow, else the oldest.
    local best, bk, best_any, bk_any = nil, nil, nil, nil
    for k, f in pairs(s.flows) do
      if f.g == 0 and (not best or f.e < best.e or (f.e == best.e and k < bk)) then best, bk = f, k end
      if not best_any or f.e < best_any.e or (f.e == best_any.e and k < bk_any) then best_any, bk_any = f, k end
    end
    s.flows[bk or bk_any] = nil
  end
  s.flows[flow] = { m = ARGV[8], e = now + span, f = 0, g = 5 }
  issued = 1
end
if op ~= 'r' then save(window, lockout, device_ms) end
local function cur(start, count, length)
  if count == 0 or now >= start + length then return 0 end
  return count
end
local flows, devices = 0, 0
for _ in pairs(s.flows) do flows = flows + 1 end
for _ in pairs(s.devices) do devices = devices + 1 end
local al, lu = 0, 0
if s.al > now then al = s.al end
if s.lu > now then lu = s.lu end
return {al, lu, s.fc, flows, cur(s.rs, s.rc, window), cur(s.hs, s.hc, HOUR), cur(s.ds, s.dc, DAY),
        devices, s.df, issued}
