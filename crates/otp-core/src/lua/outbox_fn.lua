-- The outbox's shared helpers. KEYS[1] is its stream (group `g`; entries: kind `k`, id `i`,
-- payload `p`, attempts `a`, created ms `c`). An item out of the stream (delayed for a
-- retry, or dead) is packed with cmsgpack as {kind, id, payload, attempts, created}.
local function fields(entry)
  local f = {}
  for n = 1, #entry[2], 2 do f[entry[2][n]] = entry[2][n + 1] end
  return f
end
local function add(kind, id, payload, attempts, created)
  redis.call('XADD', KEYS[1], '*', 'k', kind, 'i', id, 'p', payload,
    'a', string.format('%d', attempts), 'c', string.format('%d', created))
end
-- Takes the claimed entry `handle` out of the stream; its fields, or nil when it is gone
-- (acknowledged by an instance that took it over).
local function take(handle)
  local e = redis.call('XRANGE', KEYS[1], handle, handle)[1]
  if not e then return nil end
  redis.call('XACK', KEYS[1], 'g', handle)
  redis.call('XDEL', KEYS[1], handle)
  return fields(e)
end
