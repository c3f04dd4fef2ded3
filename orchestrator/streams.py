"""Server-Sent Events: live event streams that resume without gaps or repeats.

The outbox table is the only source of events; Redis only says "something committed".

- After each commit that wrote an event, `wake_streams` (an `event_committed` receiver)
  wakes this process's hub and publishes one wake-up message to the
  "outbox" group of the channel layer (Redis pub/sub), so every server process hears it.
  Bursts are coalesced; a lost message only costs latency, because hubs also read the outbox
  every SSE_POLL_SECONDS.
- Each ASGI server process runs one hub: a task that reads the events committed since its
  position (orchestrator.outbox: commit-safe order) once per wake-up, and hands each to the
  queues of the local streams whose marketplace and filters select it. N streams cost one
  query per wake-up, not N.
- A stream subscribes to the hub first, noting the hub's position H; then backfills from
  the outbox from its resume point (Last-Event-ID / cursor) up to H; then takes the hub's
  events, which are all after H, dropping any not after what it already sent. Positions are
  one total order shared by every process, so resuming on another process loses nothing and
  repeats nothing.

Under Django's development server (WSGI, `make run`) the same view streams from a plain
generator that reads the outbox every SSE_POLL_SECONDS; only an ASGI server (uvicorn, see
README) gives the hub and Redis wake-ups.
"""

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connection
from django.dispatch import receiver
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from orchestrator.catalog import type_matches
from orchestrator.events import DomainEvent, event_committed
from orchestrator.models import Event
from orchestrator.outbox import Position, events_after, head, position

logger = logging.getLogger(__name__)

GROUP = "outbox"
BATCH = 500
RETRY_FIRST = 0.02  # seconds before reading again for an announced event not yet settled
AWAIT_SECONDS = 5.0  # how long an announced, unread event is read for eagerly
RECENT_LIMIT = 20_000
QUEUE_LIMIT = 10_000  # events waiting for one stream; past it the stream ends (resume)
T = TypeVar("T")


@dataclass(frozen=True)
class StreamRequest:
    marketplace_id: int
    patterns: tuple[str, ...] = ()
    user_id: str | None = None
    after: Position | None = None  # resume after this event; None: from now

    def selects(self, event: Event) -> bool:
        return (
            event.marketplace_id == self.marketplace_id
            and type_matches(self.patterns, event.type)
            and (self.user_id is None or self.user_id in (event.user_ids or ()))
        )


def frame(event: Event) -> bytes:
    data = json.dumps(event.as_dict(), cls=DjangoJSONEncoder, separators=(",", ":"))
    return f"id: {event.public_id}\nevent: {event.type}\ndata: {data}\n\n".encode()


def ping_frame() -> bytes:
    data = json.dumps({"time": timezone.now().isoformat()})
    return f"event: ping\ndata: {data}\n\n".encode()


OPENING = b"retry: 2000\n: stream open\n\n"


def stream_response(request: HttpRequest, spec: StreamRequest) -> StreamingHttpResponse:
    if isinstance(request, ASGIRequest):
        # Django would keep this request thread's connection until the stream ends (it
        # closes connections when the response is closed): one connection per open stream.
        # The stream reads through the hub's small shared pool instead.
        connection.close()
        body: Any = live_stream(spec)
    else:
        body = polling_stream(spec)
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not buffer the stream
    return response


# --- Waking the hubs after commit ---------------------------------------------------------


@receiver(event_committed, dispatch_uid="orchestrator.streams.wake")
def _on_event(sender: type[DomainEvent], *, record: Event, **kw: Any) -> None:
    if record.marketplace_id is not None:
        wake_streams(int(record.pk))


def wake_streams(event_pk: int) -> None:
    """Tell the hub of this process and, through Redis, every other one that the event
    `event_pk` committed: they read the outbox until they have seen it."""
    hub = _hub
    if hub is not None:
        hub.wake_threadsafe(event_pk)
    _publisher().request(event_pk)


class _Publisher:
    """Sends coalesced wake-up messages to the channel layer from its own thread and loop,
    so a commit never waits on Redis."""

    def __init__(self) -> None:
        self._pending = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._newest = 0  # the newest committed event not yet announced

    def request(self, event_pk: int) -> None:
        if not _layer_is_shared():
            return
        with self._lock:
            self._newest = max(self._newest, event_pk)
        self._pending.set()
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="sse-wake-publisher", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        from channels.layers import get_channel_layer

        loop = asyncio.new_event_loop()
        layer = get_channel_layer()
        while True:
            self._pending.wait()
            self._pending.clear()
            with self._lock:
                newest, self._newest = self._newest, 0
            try:
                message = {"type": "outbox.wake", "id": newest}
                loop.run_until_complete(layer.group_send(GROUP, message))
            except Exception:  # Redis away: hubs still poll the outbox
                logger.warning("SSE wake-up not published", exc_info=True)
                time.sleep(1)


_publisher_instance: _Publisher | None = None


def _publisher() -> _Publisher:
    global _publisher_instance
    if _publisher_instance is None:
        _publisher_instance = _Publisher()
    return _publisher_instance


def _layer_is_shared() -> bool:
    backend = str(settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", ""))
    return bool(backend) and not backend.endswith("InMemoryChannelLayer")


# --- The hub (one per ASGI server process) --------------------------------------------------


async def _db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    def call() -> T:
        close_old_connections()
        return fn(*args, **kwargs)

    return await sync_to_async(call, thread_sensitive=False)()


@dataclass(eq=False)
class Subscriber:
    spec: StreamRequest
    start: Position  # the hub's position when it subscribed: its events are all after this
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    overflowed: bool = False
    sent: Position = (0, 0)  # the last event written to the client (or skipped before it)


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.position: Position = (0, 0)
        self.subscribers: set[Subscriber] = set()
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        # Event pks announced as committed and not read yet: while there are some, an older
        # transaction still open holds them back, and the outbox is read again soon (with
        # a growing delay) instead of at the next poll.
        self._awaited: dict[int, float] = {}  # pk -> when announced
        self._recent: dict[int, None] = {}  # pks read lately (an announcement may come late)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [self.loop.create_task(self._read_loop())]
        if _layer_is_shared():
            self._tasks.append(self.loop.create_task(self._listen()))

    async def ready(self) -> None:
        await self._ready.wait()

    def wake_threadsafe(self, event_pk: int) -> None:
        self.loop.call_soon_threadsafe(self.wake, event_pk)

    def wake(self, event_pk: int) -> None:
        if event_pk in self._recent:
            return  # read already (this process's own announcement, echoed by Redis)
        if event_pk:
            self._awaited[event_pk] = time.monotonic()
        self._wake.set()

    def _unsettled(self) -> bool:
        """Whether an announced event is still unread, announced less than AWAIT_SECONDS ago
        (past that, the polls pick it up)."""
        limit = time.monotonic() - AWAIT_SECONDS
        for pk in [pk for pk, at in self._awaited.items() if at < limit]:
            del self._awaited[pk]
        return bool(self._awaited)

    def _saw(self, event_pk: int) -> None:
        self._awaited.pop(event_pk, None)
        self._recent[event_pk] = None
        if len(self._recent) > RECENT_LIMIT:
            del self._recent[next(iter(self._recent))]

    def subscribe(self, spec: StreamRequest) -> Subscriber:
        subscriber = Subscriber(spec, self.position)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    async def _listen(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        while True:
            try:
                channel = await layer.new_channel()
                await layer.group_add(GROUP, channel)
                while True:
                    message = await layer.receive(channel)
                    self.wake(int(message.get("id") or 0))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("SSE hub lost its Redis subscription; retrying", exc_info=True)
                await asyncio.sleep(1)

    async def _read_loop(self) -> None:
        while True:
            try:
                self.position = await _db(head)
                break
            except Exception:
                logger.warning("SSE hub cannot read the outbox yet", exc_info=True)
                await asyncio.sleep(1)
        self._ready.set()
        poll, retry = float(settings.SSE_POLL_SECONDS), RETRY_FIRST
        while True:
            unsettled = self._unsettled()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=retry if unsettled else poll)
            retry = min(retry * 2, poll) if unsettled and not self._wake.is_set() else RETRY_FIRST
            self._wake.clear()
            try:
                await self._read()
            except Exception:
                logger.warning("SSE hub failed to read the outbox", exc_info=True)
                await asyncio.sleep(0.5)

    async def _read(self) -> None:
        while True:
            rows = await _db(events_after, self.position, limit=BATCH)
            for event in rows:
                self.position = position(event)
                self._saw(int(event.pk))
                if event.marketplace_id is not None:
                    self._dispatch(event)
            if len(rows) < BATCH:
                return

    def _dispatch(self, event: Event) -> None:
        for subscriber in self.subscribers:
            if subscriber.overflowed or not subscriber.spec.selects(event):
                continue
            if subscriber.queue.qsize() >= QUEUE_LIMIT:
                subscriber.overflowed = True
                subscriber.queue.put_nowait(event)  # wakes the stream, which then ends
                continue
            subscriber.queue.put_nowait(event)


_hub: Hub | None = None


async def get_hub() -> Hub:
    """This process's hub, started on first use in the server's event loop."""
    global _hub
    loop = asyncio.get_running_loop()
    if _hub is None or _hub.loop is not loop:
        _hub = Hub(loop)
        _hub.start()
    await _hub.ready()
    return _hub


# --- Streams ----------------------------------------------------------------------------------


async def live_stream(spec: StreamRequest) -> AsyncIterator[bytes]:
    hub = await get_hub()
    subscriber = hub.subscribe(spec)
    subscriber.sent = spec.after if spec.after is not None else subscriber.start
    heartbeat = float(settings.SSE_HEARTBEAT_SECONDS)
    try:
        yield OPENING
        async for chunk in _backfill(subscriber):
            yield chunk
        next_ping = time.monotonic() + heartbeat
        while not subscriber.overflowed:
            try:
                event = await asyncio.wait_for(
                    subscriber.queue.get(), timeout=max(0.0, next_ping - time.monotonic())
                )
            except TimeoutError:
                yield ping_frame()
                next_ping = time.monotonic() + heartbeat
                continue
            chunk = _drain(subscriber, event)
            if chunk and not subscriber.overflowed:
                yield chunk
    finally:
        hub.unsubscribe(subscriber)


async def _backfill(subscriber: Subscriber) -> AsyncIterator[bytes]:
    """The outbox's events from the resume point up to where the hub took over."""
    spec, start = subscriber.spec, subscriber.start
    while subscriber.sent < start:
        rows = await _db(
            events_after,
            subscriber.sent,
            marketplace_id=spec.marketplace_id,
            patterns=spec.patterns,
            user_id=spec.user_id,
            limit=BATCH,
        )
        selected = [event for event in rows if position(event) <= start]
        if selected:
            subscriber.sent = position(selected[-1])
            yield b"".join(frame(event) for event in selected)
        if len(selected) < BATCH:
            subscriber.sent = max(subscriber.sent, start)


def _drain(subscriber: Subscriber, event: Event) -> bytes:
    """Frames for `event` and whatever else is queued, skipping what was already sent."""
    chunk = b""
    while True:
        if position(event) > subscriber.sent:
            chunk += frame(event)
            subscriber.sent = position(event)
        if subscriber.queue.empty():
            return chunk
        event = subscriber.queue.get_nowait()


def polling_stream(spec: StreamRequest) -> Iterator[bytes]:
    """The development server's stream: reads the outbox every SSE_POLL_SECONDS."""
    yield OPENING
    sent = spec.after if spec.after is not None else head()
    heartbeat, poll = float(settings.SSE_HEARTBEAT_SECONDS), float(settings.SSE_POLL_SECONDS)
    next_ping = time.monotonic() + heartbeat
    while True:
        rows = events_after(
            sent,
            marketplace_id=spec.marketplace_id,
            patterns=spec.patterns,
            user_id=spec.user_id,
            limit=BATCH,
        )
        if rows:
            sent = position(rows[-1])
            yield b"".join(frame(event) for event in rows)
        if time.monotonic() >= next_ping:
            yield ping_frame()
            next_ping = time.monotonic() + heartbeat
        if len(rows) < BATCH:
            time.sleep(poll)
