"""RateLimiter: the token bucket, in process and shared through Redis, on an injected clock."""

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from django.conf import settings

from providers.clients import ratelimit
from providers.clients.errors import ProviderRateLimitedError
from providers.clients.ratelimit import RateLimiter, reset_local_buckets


class FakeClock:
    """A clock that moves only when told to, or when someone sleeps on it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def _fresh_local_buckets() -> Iterator[None]:
    reset_local_buckets()
    yield
    reset_local_buckets()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis of our own, on a Unix socket.

    The shared test Redis is FLUSHDB'd before and after every test by the autouse cache
    fixture in tests/conftest.py, from the other xdist worker too; a bucket there could
    vanish between two acquires. Without redis-server installed, use the shared one.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        yield settings.REDIS_URL
        return
    directory = tempfile.mkdtemp(prefix="rl-redis-")
    socket = os.path.join(directory, "redis.sock")
    server = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", socket, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"unix://{socket}"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(200):  # up to ~10 s for the server to start
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def limiter_factory(redis_url: str, clock: FakeClock) -> Callable[..., RateLimiter]:
    name = f"test-{uuid.uuid4().hex[:8]}"

    def make(**kwargs: object) -> RateLimiter:
        options: dict = {
            "name": name,
            "rate": 10,
            "burst": 3,
            "credential": "api-key-1",
            "redis_url": redis_url,
            "clock": clock,
            "sleep": clock.sleep,
        }
        options.update(kwargs)
        return RateLimiter(**options)

    return make


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "local":
        yield ""
        return
    yield str(request.getfixturevalue("redis_url"))
    assert not ratelimit._local_buckets, "the limiter fell back to its in-process bucket"


def test_the_burst_is_free_then_each_token_waits_its_turn(backend):
    clock = FakeClock()
    frozen = FakeClock()  # sleeping on this one does not move the limiter's clock
    limiter = limiter_factory(backend, clock)(sleep=frozen.sleep)

    for _ in range(6):
        limiter.acquire(max_wait=1.0)

    # 3 from the burst, then reservations queue up 0.1 s apart at 10 per second.
    assert frozen.slept == pytest.approx([0.1, 0.2, 0.3])


def test_steady_callers_are_held_to_the_rate(backend):
    clock = FakeClock()
    limiter = limiter_factory(backend, clock)(burst=1)

    for _ in range(11):
        limiter.acquire(max_wait=1.0)

    assert clock.slept == pytest.approx([0.1] * 10)
    assert clock.now == pytest.approx(1001.0)  # 11 requests took 1 s: 10 per second


def test_a_wait_beyond_max_wait_raises_and_reserves_nothing(backend):
    clock = FakeClock()
    limiter = limiter_factory(backend, clock)(burst=2)
    limiter.acquire(max_wait=0)
    limiter.acquire(max_wait=0)

    with pytest.raises(ProviderRateLimitedError) as caught:
        limiter.acquire(max_wait=0.05)

    assert caught.value.retry_after == pytest.approx(0.1)
    assert caught.value.outcome_unknown is False
    assert caught.value.provider == limiter.name
    clock.now += 0.1  # had the refused call reserved a token, this one would wait
    limiter.acquire(max_wait=0)
    assert clock.slept == []


def test_tokens_refill_up_to_the_burst_only(backend):
    clock = FakeClock()
    limiter = limiter_factory(backend, clock)(burst=3)
    for _ in range(3):
        limiter.acquire(max_wait=0)

    clock.now += 3600  # an idle hour refills 3 tokens, not 36000
    for _ in range(3):
        limiter.acquire(max_wait=0)
    with pytest.raises(ProviderRateLimitedError):
        limiter.acquire(max_wait=0)


def test_a_per_minute_limit(backend):
    clock = FakeClock()
    limiter = limiter_factory(backend, clock)(rate=50, per=60, burst=1)

    limiter.acquire(max_wait=5)
    limiter.acquire(max_wait=5)

    assert clock.slept == pytest.approx([1.2])  # 60 s / 50
    with pytest.raises(ProviderRateLimitedError):
        limiter.acquire(max_wait=1.0)


def test_limiters_of_the_same_key_share_one_budget(backend):
    clock = FakeClock()
    make = limiter_factory(backend, clock)
    first, second = make(), make()
    other_key = make(credential="api-key-2")

    first.acquire(max_wait=0)
    second.acquire(max_wait=0)
    first.acquire(max_wait=0)

    with pytest.raises(ProviderRateLimitedError):
        second.acquire(max_wait=0)
    other_key.acquire(max_wait=0)  # another API key has its own budget


def test_concurrent_callers_never_take_more_than_the_bucket_holds(backend):
    clock = FakeClock()
    limiter = limiter_factory(backend, clock)(burst=10, rate=0.001)
    granted: list[int] = []
    refused: list[int] = []
    start = threading.Barrier(20)

    def caller(n: int) -> None:
        start.wait()
        try:
            limiter.acquire(max_wait=0)
            granted.append(n)
        except ProviderRateLimitedError:
            refused.append(n)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert (len(granted), len(refused)) == (10, 10)


def test_invalid_limits_are_refused():
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(name="x", rate=0, redis_url="")
    with pytest.raises(ValueError, match="at least one token"):
        RateLimiter(name="x", rate=10, burst=0.5, redis_url="")


@pytest.mark.redis
def test_the_redis_bucket_is_named_by_a_digest_of_the_key(redis_url):
    limiter = RateLimiter(
        name="airtm", rate=10, credential="sk-raw-api-key", redis_url=redis_url, clock=FakeClock()
    )

    limiter.acquire(max_wait=0)

    client = redis.Redis.from_url(redis_url)
    try:
        assert client.exists(limiter.key)
        assert limiter.key.startswith("offerhub:ratelimit:airtm:")
        assert not any(b"sk-raw-api-key" in key for key in client.keys("*"))
        assert 0 < client.pttl(limiter.key) <= 2000  # forgotten once full again
    finally:
        client.close()


@pytest.mark.redis
def test_without_an_injected_clock_redis_time_is_used(redis_url):
    sleeps: list[float] = []
    make = limiter_factory(redis_url, FakeClock())
    limiter = make(rate=1, per=3600, burst=2, clock=None, sleep=sleeps.append)
    twin = make(rate=1, per=3600, burst=2, clock=None, sleep=sleeps.append)

    limiter.acquire(max_wait=0)
    twin.acquire(max_wait=0)

    with pytest.raises(ProviderRateLimitedError) as caught:
        limiter.acquire(max_wait=60)
    assert 3000 < caught.value.retry_after <= 3600
    assert sleeps == []


def test_an_unreachable_redis_falls_back_to_the_local_bucket(caplog):
    clock = FakeClock()
    limiter = limiter_factory("redis://127.0.0.1:1/0", clock)(burst=1)

    limiter.acquire(max_wait=0)
    with pytest.raises(ProviderRateLimitedError):
        limiter.acquire(max_wait=0)

    assert "Redis unavailable" in caplog.text
