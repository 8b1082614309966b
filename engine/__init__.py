"""The query service: per-process views of each symbol's Redis data (:mod:`engine.view`), the Redis result
cache with its single-flight lock (:mod:`engine.cache`) and the notebooks' live-data client
(:mod:`engine.research`). It asks :mod:`compute` with :class:`compute.query.ProfileQuery` objects."""
