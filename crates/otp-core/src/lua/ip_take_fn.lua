-- Counts one request in the IP bucket `key` (a fixed window of `window` ms, as a string),
-- starting the window at its first request; returns the wait (ms) when the count is past
-- `limit`, else nil.
local function take_ip(key, limit, window)
  local c = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if c == 1 or ttl < 0 then
    redis.call('PEXPIRE', key, window)
    ttl = tonumber(window)
  end
  if c > limit then return ttl end
  return nil
end
