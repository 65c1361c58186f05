local r = verify(KEYS[4])
if r[1] ~= 0 or string.sub(s.n or '', 1, 9) ~= ARGV[5] .. 'v' or h.n == s.n then return r end
return {0, create_session(KEYS[2], KEYS[3], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], tonumber(ARGV[14]), ARGV[15])}
