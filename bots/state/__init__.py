"""State that several processes can share: rate limits, per-user counts, follow-up images, cached
answers, the answers' buttons and Telegram update ids, in Redis when ``REDIS_URL`` is set
(``RedisLink`` owns the connection), in this process otherwise. The interfaces are the core's
(``bots.ratelimit``, ``bots.memory``, ``bots.user_queue``, ``bots.feedback``, ``bots.state.once``)
and the engine's (``vqa_engine.serving.prediction_cache.SharedPredictions``); ``service.state`` chooses
the implementations.

Every key (``REDIS_PREFIX``, ``vqa`` by default, first) and its expiry:

=============================================================  ======  ==============================
key                                                            type    expires
=============================================================  ======  ==============================
``vqa:limits:LIMITER/{platform}/{user}/{n}/{m}/{unit}``        list    one ``RATE_LIMIT`` window after
                                                                       the user's last question
``vqa:load:{platform}:{user}``                                 zset    300 s after the last question
``vqa:image:{platform}:{chat}:{user}``                         string  ``FOLLOW_UP_MINUTES``
``vqa:answer:{digest}``                                        string  ``REDIS_CACHE_TTL_S``
``vqa:answers``                                                zset    ``REDIS_CACHE_TTL_S`` (the
                                                                       cache's index, for its size)
``vqa:reply:{request id}``                                     string  1 day (an answer, for its
                                                                       buttons)
``vqa:replies``                                                zset    1 day (their index: at most
                                                                       20,000)
``vqa:once:telegram-update:{bot id}:{update id}``              string  1 hour
=============================================================  ======  ==============================
"""
