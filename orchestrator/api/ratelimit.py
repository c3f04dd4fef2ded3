"""Per-API-key rate limits, kept in the cache (Redis in production, shared by all processes).

A sliding-window counter: the current fixed window's count plus the previous window's,
weighted by how much of it still overlaps the sliding window. Two cache keys per API key,
one INCR per request.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

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
    cache.add(key, 0, timeout=window * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=window * 2)
        count = 1
    previous = int(cache.get(f"ratelimit:{bucket}:{current - 1}", 0))
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
