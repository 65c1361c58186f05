-- END_ALL: KEYS[1] subject index, KEYS[2..] its sessions; ARGV their members. Returns how
-- many sessions were live.
local n = 0
for i = 2, #KEYS do n = n + redis.call('DEL', KEYS[i]) end
if #ARGV > 0 then redis.call('ZREM', KEYS[1], unpack(ARGV)) end
return n
