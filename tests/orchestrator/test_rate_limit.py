"""Per-API-key rate limits in the cache (Redis): headers on every answer, 429 with Retry-After."""

import time
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from redis import Redis
from rest_framework.test import APIClient

from orchestrator.api.ratelimit import RateLimitedError, rate_limit_hit
from orchestrator.models import MarketplaceUser
from tests.orchestrator.support import envelope

pytestmark = pytest.mark.django_db


@pytest.mark.redis
def test_counters_live_in_redis(make_key, marketplace):
    key, raw = make_key(marketplace)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    client.get("/api/v1/users")

    redis = Redis.from_url(settings.REDIS_URL)
    try:
        assert redis.keys(f"*ratelimit:{key.public_id}:*")
    finally:
        redis.close()


@override_settings(RATE_LIMIT_REQUESTS=3)
def test_answers_carry_the_limit_headers_and_the_fourth_is_a_429(api):
    before = time.time()

    answers = [api.get("/api/v1/users") for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a["X-RateLimit-Limit"] == "3" for a in answers)
    assert all(int(a["X-RateLimit-Reset"]) > before for a in answers)
    limited = answers[3]
    assert envelope(limited)["code"] == "RATE_LIMITED"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert int(limited["Retry-After"]) >= int(limited["X-RateLimit-Reset"]) - time.time() - 1


@override_settings(RATE_LIMIT_REQUESTS=3)
def test_errors_carry_the_limit_headers_too(api):
    response = api.get("/api/v1/users/usr_missing")

    assert response.status_code == 404
    assert response["X-RateLimit-Remaining"] == "2"


@override_settings(RATE_LIMIT_REQUESTS=2)
def test_limits_are_per_api_key(make_client, marketplace):
    first, second = make_client(marketplace), make_client(marketplace)

    spent = [first.get("/api/v1/users").status_code for _ in range(3)]
    other = second.get("/api/v1/users")

    assert spent == [200, 200, 429]
    assert other.status_code == 200
    assert other["X-RateLimit-Remaining"] == "1"


@override_settings(RATE_LIMIT_REQUESTS=1)
def test_a_rate_limited_post_is_not_executed(api):
    api.get("/api/v1/users")

    response = api.post("/api/v1/users", {"external_user_id": "a"}, format="json")

    assert response.status_code == 429
    assert not MarketplaceUser.objects.exists()


@override_settings(RATE_LIMIT_REQUESTS=1)
def test_unauthenticated_and_public_calls_spend_no_key_budget(api):
    APIClient().get("/api/v1/users")
    APIClient().get("/api/v1/health")

    response = api.get("/api/v1/users")

    assert response.status_code == 200


@override_settings(RATE_LIMIT_REQUESTS=4, RATE_LIMIT_WINDOW_SECONDS=60)
def test_the_window_slides_across_the_boundary():
    window_start = 60 * 1_000_000.0
    for _ in range(4):
        rate_limit_hit(bucket="b", now=window_start + 30)

    with pytest.raises(RateLimitedError) as refused:
        rate_limit_hit(bucket="b", now=window_start + 60)  # the previous window still weighs 4
    later = rate_limit_hit(bucket="b", now=window_start + 105)  # 2 + 4 x 0.25 = 3

    assert refused.value.headers["Retry-After"] == "60"
    assert refused.value.http_status == 429
    assert later.remaining == 1
    assert later.reset_at == window_start + 120


@pytest.mark.redis
def test_a_request_costs_one_redis_round_trip_on_redis(monkeypatch):
    from django.core.cache import caches
    from redis.client import Pipeline

    executed: list[int] = []
    real = Pipeline.execute

    def execute(self: Pipeline, *args: Any, **kwargs: Any) -> object:
        executed.append(len(self.command_stack))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", execute)
    monkeypatch.setattr(caches["default"], "add", _forbidden)
    monkeypatch.setattr(caches["default"], "incr", _forbidden)

    first = rate_limit_hit(bucket="pipelined")
    second = rate_limit_hit(bucket="pipelined")

    assert executed == [3, 3]  # INCR, EXPIRE, GET of the previous window: one pipeline each
    assert first.remaining - second.remaining == 1


@override_settings(
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    RATE_LIMIT_REQUESTS=2,
)
def test_the_in_memory_cache_of_the_embedded_default_limits_too():
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    assert isinstance(caches["default"], LocMemCache)
    caches["default"].clear()
    states = [rate_limit_hit(bucket="local", now=1000.0) for _ in range(2)]
    with pytest.raises(RateLimitedError):
        rate_limit_hit(bucket="local", now=1000.0)
    assert [s.remaining for s in states] == [1, 0]


def _forbidden(*args: object, **kwargs: object) -> None:
    raise AssertionError("the Redis path must not use the cache API's separate calls")
