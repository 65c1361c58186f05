return verify(KEYS[2])
