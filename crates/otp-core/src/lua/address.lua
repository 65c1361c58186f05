-- Reads the address hash, with the shared helpers of ISSUE and VERIFY.
--
-- Fields: code MAC `m` and its expiry `e` (ms); `w`, the minute, hour and day request
-- windows packed as little-endian (start ms as a double, count as a u32) × 3, which keeps
-- a pending login small; failures `fc` since `fs`; lockout end `lu`; `n`, the last call
-- that changed the hash (its 8-byte id and `i`, `v`, `m` or `x` for issued, verified,
-- mismatch, no code), so that the same call resent is answered again without counting
-- twice. Zero fields are not stored.
local HOUR, DAY = 3600000, 86400000
local F = {'m', 'e', 'w', 'fc', 'fs', 'lu', 'n'}
local h = redis.call('HMGET', KEYS[1], unpack(F))
local exists = false
for i = 1, #F do if h[i] then exists = true end end
local s = { m = h[1], e = tonumber(h[2]) or 0, rs = 0, rc = 0, hs = 0, hc = 0, ds = 0, dc = 0,
            fc = tonumber(h[4]) or 0, fs = tonumber(h[5]) or 0, lu = tonumber(h[6]) or 0, n = h[7] }
if h[3] and #h[3] == 36 then
  s.rs, s.rc, s.hs, s.hc, s.ds, s.dc = struct.unpack('<dI4dI4dI4', h[3])
end
local function expire_failures(lockout)
  if s.lu > 0 and now >= s.lu then s.lu = 0; s.fc = 0 end
  if s.fc > 0 and now >= s.fs + lockout then s.fc = 0 end
  if s.fc == 0 then s.fs = 0 end
end
-- The wait until a window ends when its count has reached the limit, else nil.
local function full(start, count, length, limit)
  if count == 0 or now >= start + length then return nil end
  if count >= limit then return start + length - now end
  return nil
end
local function counted(start, count, length)
  if count == 0 or now >= start + length then return now, 1 end
  return start, count + 1
end
local function save(window, lockout)
  if not s.m or now >= s.e then s.m = nil; s.e = 0 end
  if s.rc > 0 and now >= s.rs + window then s.rs = 0; s.rc = 0 end
  if s.hc > 0 and now >= s.hs + HOUR then s.hs = 0; s.hc = 0 end
  if s.dc > 0 and now >= s.ds + DAY then s.ds = 0; s.dc = 0 end
  local w = nil
  if s.rc > 0 or s.hc > 0 or s.dc > 0 then
    w = struct.pack('<dI4dI4dI4', s.rs, s.rc, s.hs, s.hc, s.ds, s.dc)
  end
  local v = {s.m, s.e, w, s.fc, s.fs, s.lu, s.n}
  local set, del = {}, {}
  for i = 1, #F do
    local x = v[i]
    if x ~= nil and x ~= 0 then
      if type(x) == 'number' then x = string.format('%d', x) end
      if x ~= h[i] then set[#set + 1] = F[i]; set[#set + 1] = x end
    elseif h[i] then
      del[#del + 1] = F[i]
    end
  end
  local live = s.e
  if s.rc > 0 then live = math.max(live, s.rs + window) end
  if s.hc > 0 then live = math.max(live, s.hs + HOUR) end
  if s.dc > 0 then live = math.max(live, s.ds + DAY) end
  if s.fc > 0 then live = math.max(live, s.fs + lockout) end
  live = math.max(live, s.lu)
  if live <= now then
    if exists then redis.call('DEL', KEYS[1]) end
    return
  end
  if #del > 0 then redis.call('HDEL', KEYS[1], unpack(del)) end
  if #set > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
  redis.call('PEXPIRE', KEYS[1], string.format('%d', live - now))
end
