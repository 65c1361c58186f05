-- OUTBOX_ACK: KEYS[1] stream; ARGV handle. Delivered: the entry is gone.
redis.call('XACK', KEYS[1], 'g', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return 0
