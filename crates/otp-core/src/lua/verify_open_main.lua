local r = verify(KEYS[4])
if r[1] ~= 0 or s.n ~= ARGV[5] .. 'v' or h[7] == s.n then return r end
return {0, create_session(KEYS[2], KEYS[3], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], tonumber(ARGV[12]), ARGV[13])}
