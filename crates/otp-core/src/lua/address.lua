-- Reads the address hash, with the shared helpers of ISSUE, VERIFY and FORGET_DEVICES.
--
-- Fields: `w`, the address-wide minute, hour and day request windows (unknown devices)
-- packed as little-endian (start ms as a double, count as a u32) × 3; unbound failures
-- `fc` since `fs` and their lockout's end `lu`; an administrator's lock's end `al`; `df`, when the known devices were last
-- forgotten (s); `n`, the last call that changed the hash (its 8-byte id and what it did,
-- as otp_core::store::policy::Recorded encodes it), so that the same call resent is
-- answered again without counting twice. One field per pending flow, `f<flow key>`: its
-- code MAC, expiry (ms), failures and flags (1 known device, 2 signed in, 4 an
-- administrator's), packed
-- '<c16dBB'; one per known device counting something, `d<device key>`: its three
-- windows and last code, '<dI4dI4dI4d'. Zero fields are not stored.
local HOUR, DAY = 3600000, 86400000
local WIN, FLOW = '<dI4dI4dI4', '<c16dBB'
local raw = redis.call('HGETALL', KEYS[1])
local h = {}
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
local s = { rs = 0, rc = 0, hs = 0, hc = 0, ds = 0, dc = 0,
            fc = tonumber(h.fc) or 0, fs = tonumber(h.fs) or 0, lu = tonumber(h.lu) or 0,
            al = tonumber(h.al) or 0,
            df = tonumber(h.df) or 0, n = h.n, flows = {}, devices = {} }
if h.w and #h.w == 36 then
  s.rs, s.rc, s.hs, s.hc, s.ds, s.dc = struct.unpack(WIN, h.w)
end
for k, v in pairs(h) do
  local c = string.sub(k, 1, 1)
  if c == 'f' and #k == 13 and #v == 26 then
    local m, e, f, g = struct.unpack(FLOW, v)
    s.flows[string.sub(k, 2)] = { m = m, e = e, f = f, g = g }
  elseif c == 'd' and #k == 13 and #v == 44 then
    local d = {}
    d.rs, d.rc, d.hs, d.hc, d.ds, d.dc, d.last = struct.unpack(WIN .. 'd', v)
    s.devices[string.sub(k, 2)] = d
  end
end
local function live(start, count, length)
  if count > 0 then return start + length end
  return 0
end
local function device_live(d, window)
  return math.max(live(d.rs, d.rc, window), live(d.hs, d.hc, HOUR), live(d.ds, d.dc, DAY))
end
local function expire(window, lockout)
  if s.lu > 0 and now >= s.lu then s.lu = 0; s.fc = 0 end
  if s.fc > 0 and now >= s.fs + lockout then s.fc = 0 end
  if s.fc == 0 then s.fs = 0 end
  if s.al > 0 and now >= s.al then s.al = 0 end
  for k, f in pairs(s.flows) do if now >= f.e then s.flows[k] = nil end end
  for k, d in pairs(s.devices) do
    if device_live(d, window) <= now then s.devices[k] = nil end
  end
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
local function passed(start, count, length)
  if count > 0 and now >= start + length then return 0, 0 end
  return start, count
end
local function windows(b, window)
  b.rs, b.rc = passed(b.rs, b.rc, window)
  b.hs, b.hc = passed(b.hs, b.hc, HOUR)
  b.ds, b.dc = passed(b.ds, b.dc, DAY)
  if b.rc > 0 or b.hc > 0 or b.dc > 0 then
    return struct.pack(WIN, b.rs, b.rc, b.hs, b.hc, b.ds, b.dc)
  end
  return nil
end
-- Writes what changed (`device_ms`: how long forgotten devices are remembered) and sets
-- the key's expiry to when the last of it ends.
local function save(window, lockout, device_ms)
  local want = {}
  want.w = windows(s, window)
  for _, k in ipairs({'fc', 'fs', 'lu', 'al', 'df'}) do
    if s[k] ~= 0 then want[k] = string.format('%d', s[k]) end
  end
  want.n = s.n
  local until_ = math.max(s.lu, s.al, live(s.rs, s.rc, window), live(s.hs, s.hc, HOUR), live(s.ds, s.dc, DAY))
  if s.fc > 0 then until_ = math.max(until_, s.fs + lockout) end
  if s.df > 0 then until_ = math.max(until_, s.df * 1000 + device_ms) end
  for k, f in pairs(s.flows) do
    want['f' .. k] = struct.pack(FLOW, f.m, f.e, f.f, f.g)
    until_ = math.max(until_, f.e)
  end
  for k, d in pairs(s.devices) do
    local w = windows(d, window)
    if w then
      want['d' .. k] = w .. struct.pack('<d', d.last)
      until_ = math.max(until_, device_live(d, window))
    end
  end
  if until_ <= now then
    if next(h) then redis.call('DEL', KEYS[1]) end
    return
  end
  local set, del = {}, {}
  for k, v in pairs(want) do
    if v ~= h[k] then set[#set + 1] = k; set[#set + 1] = v end
  end
  for k in pairs(h) do
    if want[k] == nil then del[#del + 1] = k end
  end
  if #del > 0 then redis.call('HDEL', KEYS[1], unpack(del)) end
  if #set > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
  redis.call('PEXPIRE', KEYS[1], string.format('%d', until_ - now))
end
