-- INDEX_LIST: KEYS[1] subject index. Returns its members.
return redis.call('ZRANGE', KEYS[1], 0, -1)
