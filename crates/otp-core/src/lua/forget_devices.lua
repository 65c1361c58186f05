-- FORGET_DEVICES: KEYS[1] address; ARGV window_ms, lockout_ms, device_ms. Every device
-- cookie set before now stops being known; the address remembers it for device_ms.
local window, lockout = tonumber(ARGV[1]), tonumber(ARGV[2])
expire(window, lockout)
s.devices = {}
s.df = math.floor(now / 1000)
save(window, lockout, tonumber(ARGV[3]))
return 0
