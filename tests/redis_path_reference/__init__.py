"""The RedisStore client path as main 2b8581a had it (issue 17.2, fifteenth pass): verbatim
copies of ``streams.wave_load``, ``streams.watch_commit`` and ``streams.replies``, their imports
of each other pointed here. The old path the tests compare the new one with, byte for byte
(``tests/unit/test_redis_path_reference.py``, ``tests/integration/test_redis_path_bytes.py``)."""
