-- ISSUE, first part: KEYS[1] address; ARGV mac, ttl_ms, per_minute, window_ms, lockout_ms,
-- per_hour, per_day, cooldown_ms, call id (and for ISSUE_IP the IP limit). The same call
-- resent answers `{0}` again.
local ttl, limit, window, lockout = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local per_hour, per_day, cooldown = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local call = ARGV[9] .. 'i'
if s.n == call then return {0, 0} end
