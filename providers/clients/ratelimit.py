"""Client-side token buckets that keep us under a provider's published request limit.

A provider's limit is per API key, not per process: every web worker and Celery worker
that holds the key spends the same budget. So when settings.REDIS_URL is set the bucket
lives in Redis and is updated by one Lua script (atomic, no lost updates between
processes); without Redis (the embedded default) it is a thread-safe bucket shared by
every limiter of the same name and key in this process.

`acquire` reserves the next token and then sleeps until it is due, so concurrent callers
are served in arrival order and nobody spins. When the wait would exceed `max_wait` it
reserves nothing and raises ProviderRateLimitedError, which the API answers as
PROVIDER_RATE_LIMITED with a Retry-After.

If Redis cannot be reached the limiter falls back to the local bucket and logs a
warning: a missed shared limit costs at worst a 429 from the provider, which the clients
handle; refusing every payment call because the cache is down would cost far more.
"""

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings
from redis.commands.core import Script

from providers.clients.errors import ProviderRateLimitedError

logger = logging.getLogger(__name__)

KEY_PREFIX = "offerhub:ratelimit"

# KEYS[1]: the bucket. ARGV: tokens per second, burst, max wait (s), now (s; "" = Redis TIME).
# Returns {granted (1|0), wait in seconds as a string} (Lua numbers would come back truncated
# to integers). The state is {tokens, ts}; tokens go negative while reservations queue up.
_ACQUIRE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / rate
end
if wait > max_wait then
  return {0, string.format('%.17g', wait)}
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {1, string.format('%.17g', wait)}
"""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    ts: float
    lock: threading.Lock


_local_buckets: dict[str, _Bucket] = {}
_local_buckets_lock = threading.Lock()
_scripts: dict[str, Script] = {}
_scripts_lock = threading.Lock()


def _acquire_script(url: str) -> Script:
    """One Redis client (and connection pool) per URL per process: limiters are cheap to build."""
    with _scripts_lock:
        script = _scripts.get(url)
        if script is None:
            client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
            script = client.register_script(_ACQUIRE_LUA)
            _scripts[url] = script
        return script


class RateLimiter:
    """A token bucket of `rate` requests per `per` seconds, holding at most `burst` tokens.

    `credential` is the API key the provider counts against; only a digest of it goes
    into the bucket's name. Pass `redis_url=""` to force the in-process bucket; None means
    settings.REDIS_URL. `clock` is for tests: when given, the Redis script is also told the
    time instead of asking Redis (otherwise all processes share Redis's clock).
    """

    def __init__(
        self,
        *,
        name: str,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        credential: str = "",
        redis_url: str | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError("A rate limit needs a positive rate and period.")
        self.name = name
        self.tokens_per_second = rate / per
        self.burst = float(burst if burst is not None else rate)
        if self.burst < 1:
            raise ValueError("A bucket must hold at least one token.")
        digest = hashlib.sha256(credential.encode()).hexdigest()[:16]
        self.key = f"{KEY_PREFIX}:{name}:{digest}"
        self.redis_url = settings.REDIS_URL if redis_url is None else redis_url
        self._clock = clock
        self._sleep = sleep

    def acquire(self, max_wait: float) -> None:
        """Take one token, sleeping for it if it is at most `max_wait` seconds away.

        Raises:
            ProviderRateLimitedError: the next token is further away than `max_wait`;
                nothing was reserved, so retrying later is safe.
        """
        max_wait = max(0.0, max_wait)
        granted, wait = self._reserve_shared(max_wait) if self.redis_url else (None, 0.0)
        if granted is None:
            granted, wait = self._reserve_local(max_wait)
        if not granted:
            raise ProviderRateLimitedError(
                f"Client-side rate limit for {self.name}: the next request slot is "
                f"{wait:.2f}s away, more than the {max_wait:.2f}s we may wait.",
                provider=self.name,
                retry_after=wait,
            )
        if wait > 0:
            self._sleep(wait)

    def _reserve_shared(self, max_wait: float) -> tuple[bool | None, float]:
        """(granted, wait) from the Redis bucket, or (None, 0) when Redis is unreachable."""
        now = "" if self._clock is None else repr(self._clock())
        try:
            result = _acquire_script(self.redis_url)(
                keys=[self.key], args=[self.tokens_per_second, self.burst, max_wait, now]
            )
        except (redis.ConnectionError, redis.TimeoutError):
            # Unreachable only: any other Redis error (a script bug) must surface.
            logger.warning(
                "Rate limiter %s: Redis unavailable, using this process's bucket",
                self.name,
                exc_info=True,
            )
            return None, 0.0
        granted, wait = result
        return bool(int(granted)), float(wait)

    def _reserve_local(self, max_wait: float) -> tuple[bool, float]:
        now = self._clock() if self._clock is not None else time.monotonic()
        with _local_buckets_lock:
            bucket = _local_buckets.get(self.key)
            if bucket is None:
                bucket = _Bucket(tokens=self.burst, ts=now, lock=threading.Lock())
                _local_buckets[self.key] = bucket
        with bucket.lock:
            if now > bucket.ts:
                bucket.tokens = min(
                    self.burst, bucket.tokens + (now - bucket.ts) * self.tokens_per_second
                )
                bucket.ts = now
            wait = 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / self.tokens_per_second
            if wait > max_wait:
                return False, wait
            bucket.tokens -= 1
            return True, wait


def reset_local_buckets() -> None:
    """Forget every in-process bucket (tests; a forked worker starts fresh anyway)."""
    with _local_buckets_lock:
        _local_buckets.clear()
