"""Per-API-key rate limits in the cache (Redis): headers on every answer, 429 with Retry-After."""

import time

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
