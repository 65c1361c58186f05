-- Counts the request in the IP bucket KEYS[2] (ARGV[17] limit, ARGV[4] window) before the
-- address is looked at: ISSUE_IP, on a single server.
local ipwait = take_ip(KEYS[2], tonumber(ARGV[17]), ARGV[4])
if ipwait then return {2, ipwait} end
