"""SSE over real uvicorn processes sharing one Redis: resume without loss or repeats across
processes, tenant isolation, filters, heartbeats. (Runserver's polling stream is tested too.)"""

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import pytest
import requests
from django.db import connection, transaction
from django.test import Client

from orchestrator.events import DomainEvent, publish
from orchestrator.models import Event
from orchestrator.outbox import position_of
from orchestrator.streams import StreamRequest, polling_stream
from tests.asgi import AsgiServer, SseClient
from tests.worker import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.postgres]


@dataclass(frozen=True, kw_only=True)
class Noise(DomainEvent):
    type: ClassVar[str] = "noise.made"
    aggregate_type: ClassVar[str] = "noise"


def noise(marketplace) -> Event:
    with transaction.atomic():
        return publish(Noise(marketplace_id=marketplace.pk, aggregate_id="n"))


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[AsgiServer, AsgiServer]]:
    # Polls far apart: events reach the streams through Redis wake-ups.
    pair = (AsgiServer(SSE_POLL_SECONDS="3"), AsgiServer(SSE_POLL_SECONDS="3"))
    try:
        for server in pair:
            server.start()
        yield pair
    finally:
        for server in pair:
            server.stop()


@pytest.fixture
def tenant(make_marketplace, make_key):
    def make():
        marketplace = make_marketplace()
        return marketplace, make_key(marketplace, ["read"])[1]

    return make


def event_ids(users) -> list[str]:
    rows = Event.objects.filter(aggregate_id__in=[u.public_id for u in users])
    by_user = {e.aggregate_id: e.public_id for e in rows}
    return [by_user[u.public_id] for u in users]


def test_resume_on_another_process_loses_nothing_and_repeats_nothing(servers, tenant, make_user):
    a, b = servers
    marketplace, key = tenant()
    first = SseClient(f"{a.url}/api/v1/events", key).start()
    seen = [make_user(marketplace) for _ in range(3)]
    wait_until(lambda: len(first.events()) == 3)
    first.close()
    missed = [make_user(marketplace) for _ in range(4)]  # while nobody listens

    racing: list = []

    def publish_while_connecting() -> None:
        racing.extend(make_user(marketplace) for _ in range(15))
        connection.close()

    writer = threading.Thread(target=publish_while_connecting)
    writer.start()
    second = SseClient(f"{b.url}/api/v1/events", key, last_event_id=first.ids()[-1]).start()
    writer.join()
    after = [make_user(marketplace) for _ in range(3)]
    wait_until(lambda: len(second.events()) >= 22)
    last = make_user(marketplace)  # a sentinel: once it is in, everything before it is
    wait_until(lambda: last.public_id in {f["data"]["aggregate"]["id"] for f in second.events()})
    second.close()

    assert first.ids() == event_ids(seen)
    assert sorted(second.ids()) == sorted(event_ids([*missed, *racing, *after, last]))
    assert len(second.ids()) == len(set(second.ids())) == 23
    assert second.ids()[:4] == event_ids(missed)
    assert second.ids()[-4:] == event_ids([*after, last])
    frame = second.events()[0]
    assert frame["event"] == "user.created"
    assert frame["data"]["id"] == frame["id"]


def test_the_cursor_parameter_resumes_like_last_event_id(servers, tenant, make_user):
    a, _ = servers
    marketplace, key = tenant()
    users = [make_user(marketplace) for _ in range(4)]
    ids = event_ids(users)

    client = SseClient(f"{a.url}/api/v1/events", key, cursor=ids[1]).start()
    wait_until(lambda: len(client.events()) == 2)
    client.close()

    assert client.ids() == ids[2:]


def test_streams_see_only_their_marketplace_and_their_filters(servers, tenant, make_user):
    a, b = servers
    mine, my_key = tenant()
    theirs, their_key = tenant()
    alice = make_user(mine)
    # Streams without a cursor start at the newest settled event, which alice's may not be
    # yet (another test's transaction may be open): resume after it to count exactly.
    (after,) = event_ids([alice])
    everything = SseClient(f"{a.url}/api/v1/events", my_key, cursor=after).start()
    users_only = SseClient(f"{b.url}/api/v1/events", my_key, types="user.*", cursor=after)
    users_only.start()
    alices = SseClient(
        f"{a.url}/api/v1/events", my_key, user_id=alice.public_id, cursor=after
    ).start()
    stranger = SseClient(f"{b.url}/api/v1/events", their_key).start()

    noise(mine)
    bob = make_user(mine)
    make_user(theirs)
    noise(theirs)
    with transaction.atomic():  # an event about alice, published by hand
        publish(Noise(marketplace_id=mine.pk, aggregate_id="n", user_ids=(alice.public_id,)))
    done = make_user(mine)
    their_done = make_user(theirs)
    wait_until(lambda: len(everything.events()) == 4 and len(users_only.events()) == 2)
    wait_until(lambda: len(alices.events()) == 1 and len(stranger.events()) == 3)
    for client in (everything, users_only, alices, stranger):
        client.close()

    assert [f["event"] for f in everything.events()] == [
        "noise.made",
        "user.created",
        "noise.made",
        "user.created",
    ]
    assert users_only.ids() == event_ids([bob, done])
    assert [f["data"]["data"].get("user_ids") for f in alices.events()] == [None]
    assert [f["event"] for f in alices.events()] == ["noise.made"]
    assert stranger.ids()[-1] == event_ids([their_done])[0]
    assert not set(stranger.ids()) & set(everything.ids())


def test_a_cursor_of_another_marketplace_is_refused(servers, tenant, make_user):
    a, _ = servers
    _mine, key = tenant()
    theirs, _ = tenant()
    make_user(theirs)
    foreign = Event.objects.filter(marketplace=theirs)[0]

    response = requests.get(
        f"{a.url}/api/v1/events",
        headers={"Authorization": f"Bearer {key}", "Last-Event-ID": foreign.public_id},
        timeout=10,
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_idle_streams_get_heartbeats(tenant):
    _, key = tenant()
    server = AsgiServer(SSE_HEARTBEAT_SECONDS="0.2").start()
    try:
        client = SseClient(f"{server.url}/api/v1/events", key).start()
        wait_until(lambda: len(client.frames) >= 3)
        client.close()
    finally:
        server.stop()

    assert {f["event"] for f in client.frames} == {"ping"}
    assert all("id" not in f for f in client.frames)  # pings do not move Last-Event-ID


def test_the_development_servers_stream_polls_the_outbox(settings, tenant, make_user):
    settings.SSE_POLL_SECONDS = 0.05
    marketplace, _key = tenant()
    users = [make_user(marketplace) for _ in range(2)]
    first = Event.objects.get(aggregate_id=users[0].public_id)
    stream = polling_stream(
        StreamRequest(
            marketplace_id=marketplace.pk,
            after=position_of(marketplace_id=marketplace.pk, event_id=first.public_id),
        )
    )
    opening = next(stream)
    body = b""
    while b"id: " not in body:
        body += next(stream)

    assert opening.startswith(b"retry:")
    assert f"id: {event_ids(users[1:])[0]}\nevent: user.created\n".encode() in body
    assert first.public_id.encode() not in body


def test_runserver_answers_the_stream_with_the_polling_generator(tenant):
    _, key = tenant()

    response = Client().get("/api/v1/events", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert next(iter(response.streaming_content)).startswith(b"retry:")  # type: ignore[attr-defined]
    response.close()
