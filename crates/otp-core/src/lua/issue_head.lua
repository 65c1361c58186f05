-- ISSUE, first part: KEYS[1] address; ARGV mac, ttl_ms, per_minute, window_ms, lockout_ms,
-- per_hour, per_day, cooldown_ms, call id, max_flows, device_ms, the presented flow (or
-- ''), the new flow, the device (or ''), the device cookie's time (s), signed in ('1' or
-- '0') (and for ISSUE_IP the IP limit). The same call resent answers the same again.
local ttl, limit, window, lockout = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local per_hour, per_day, cooldown = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local max_flows, device_ms = math.max(tonumber(ARGV[10]), 1), tonumber(ARGV[11])
local resend, newflow, device = ARGV[12], ARGV[13], ARGV[14]
local since, signed = tonumber(ARGV[15]) or 0, ARGV[16] == '1'
local call = ARGV[9] .. 'i'
if s.n and #s.n == 11 and string.sub(s.n, 1, 9) == call then
  return {0, 0, tonumber(string.sub(s.n, 10, 10)), tonumber(string.sub(s.n, 11, 11))}
end
