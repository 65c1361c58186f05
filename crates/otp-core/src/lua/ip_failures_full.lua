-- IP_FAILURES_FULL: KEYS[1] an IP's failure counter; ARGV limit. Returns {0} or {1, wait}
-- (a cluster, where the counter is in its own slot).
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then
  return {1, math.max(redis.call('PTTL', KEYS[1]), 0)}
end
return {0, 0}
