-- Counts the request in the IP bucket KEYS[2] (ARGV[10] limit, ARGV[4] window) before the
-- address is looked at: ISSUE_IP, on a single server.
local ipc = redis.call('INCR', KEYS[2])
local ipttl = redis.call('PTTL', KEYS[2])
if ipc == 1 or ipttl < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  ipttl = tonumber(ARGV[4])
end
if ipc > tonumber(ARGV[10]) then return {2, ipttl} end
