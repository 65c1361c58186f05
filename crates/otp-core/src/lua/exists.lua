return redis.call('EXISTS', unpack(KEYS))
