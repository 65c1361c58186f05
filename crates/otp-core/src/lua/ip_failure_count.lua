-- IP_FAILURE_COUNT: KEYS[1] an IP's failure counter; ARGV window_ms. Counts one failure.
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0
