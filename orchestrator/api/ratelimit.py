"""Per-API-key rate limits, kept in the cache (Redis in production, shared by all processes).

A sliding-window counter: the current fixed window's count plus the previous window's,
weighted by how much of it still overlaps the sliding window. Two cache keys per API key.
On Redis a request costs one round trip (INCR, EXPIRE and the previous window's GET in one
pipeline); other cache backends (the embedded default's in-memory cache) use the cache API.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

from orchestrator.errors import DomainError


class RateLimitedError(DomainError):
    code = "RATE_LIMITED"
    http_status = 429

    def __init__(self, message: str, /, *, retry_after: int, headers: dict[str, str]) -> None:
        super().__init__(message, retry_after=retry_after)
        self.headers = {**headers, "Retry-After": str(retry_after)}


@dataclass(frozen=True, slots=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_at: int  # unix seconds when the current window ends

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


def rate_limit_hit(*, bucket: str, now: float | None = None) -> RateLimitState:
    """Count one request against `bucket`.

    Raises:
        RateLimitedError: the bucket is over its limit; carries Retry-After and the headers.
    """
    limit: int = settings.RATE_LIMIT_REQUESTS
    window: int = settings.RATE_LIMIT_WINDOW_SECONDS
    now = time.time() if now is None else now
    current = int(now // window)
    key = f"ratelimit:{bucket}:{current}"
    previous_key = f"ratelimit:{bucket}:{current - 1}"
    backend = caches["default"]  # `cache` is a proxy: isinstance() needs the backend itself
    if isinstance(backend, RedisCache):
        count, previous = _redis_counts(backend, key, previous_key, ttl=window * 2)
    else:
        count, previous = _cache_counts(key, previous_key, ttl=window * 2)
    elapsed = (now % window) / window
    weighted = count + previous * (1 - elapsed)
    reset_at = (current + 1) * window
    state = RateLimitState(limit=limit, remaining=max(0, int(limit - weighted)), reset_at=reset_at)
    if weighted > limit:
        retry_after = max(1, int(reset_at - now))
        raise RateLimitedError(
            "Too many requests; retry later.", retry_after=retry_after, headers=state.headers()
        )
    return state


def _redis_counts(
    redis_cache: RedisCache, key: str, previous_key: str, ttl: int
) -> tuple[int, int]:
    # Django's Redis cache stores integers as plain numbers, so INCR and GET read the same
    # values cache.incr()/cache.get() would (and the keys carry the cache's prefix/version).
    full, previous_full = (redis_cache.make_and_validate_key(k) for k in (key, previous_key))
    # The backend's redis-py client (Django exposes no public accessor for it).
    client = redis_cache._cache.get_client(full, write=True)  # type: ignore[attr-defined]
    pipe = client.pipeline(transaction=False)
    pipe.incr(full)
    pipe.expire(full, ttl)
    pipe.get(previous_full)
    count, _, previous = pipe.execute()
    return int(count), int(previous or 0)


def _cache_counts(key: str, previous_key: str, ttl: int) -> tuple[int, int]:
    cache.add(key, 0, timeout=ttl)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=ttl)
        count = 1
    return count, int(cache.get(previous_key, 0))
