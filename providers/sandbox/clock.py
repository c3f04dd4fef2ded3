"""The simulators' test clock: real time plus an offset that only moves forward.

Fifteen-day payin expiry, ninety-day payout auto-cancel and ten-hour webhook retries have
to happen in a test that lasts milliseconds, so a simulator reads the time from here and a
test moves it with advance(). With no advance the clock is the wall clock, so a sandbox
left running behaves in real time.
"""

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime


class SimClock:
    """Simulated now = wall clock + offset (seconds since the epoch, UTC)."""

    def __init__(self, *, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset

    def now(self) -> float:
        with self._lock:
            return self._wall() + self._offset

    def wall(self) -> float:
        """Real time, for what the outside world checks (Svix timestamps)."""
        return self._wall()

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=UTC)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0


def iso(timestamp: float) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as Airtm (a Node service) writes dates."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
