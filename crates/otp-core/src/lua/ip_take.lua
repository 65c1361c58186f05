-- IP_TAKE: KEYS[1] ip counter; ARGV limit, window_ms. Returns {0} or {1, wait}.
local wait = take_ip(KEYS[1], tonumber(ARGV[1]), ARGV[2])
if wait then return {1, wait} end
return {0, 0}
