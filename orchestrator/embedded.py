"""The embedded default's stand-in for Celery beat: periodic tasks on a daemon thread.

With no broker, tasks run in-process (CELERY_TASK_ALWAYS_EAGER), and nothing would run the
beat schedule: the provider janitor, hold expiry, ledger sealing. `manage.py serve` starts
this thread beside the web server so the first run behaves like production, only smaller.
Only interval schedules (seconds) run here; crontab ones (the nightly verification) are for
a real beat.
"""

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from orchestrator.context import Actor, acting_as

logger = logging.getLogger(__name__)


class PeriodicTasks(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="embedded-beat", daemon=True)
        self._stop_event = threading.Event()
        self.schedule: dict[str, float] = {
            entry["task"]: float(entry["schedule"])
            for entry in settings.CELERY_BEAT_SCHEDULE.values()
            if isinstance(entry["schedule"], int | float)
        }

    def run(self) -> None:
        from orchestrator.celery import app

        due = {name: time.monotonic() + interval for name, interval in self.schedule.items()}
        while not self._stop_event.wait(1.0):
            now = time.monotonic()
            for name, at in due.items():
                if at > now:
                    continue
                due[name] = now + self.schedule[name]
                self._run_one(app, name)

    def _run_one(self, app: Any, name: str) -> None:
        try:
            with acting_as(Actor(kind="system", id=name)):
                app.tasks[name].apply()
        except Exception:  # a failing task must not stop the others
            logger.exception("periodic task %s failed", name)
        finally:
            close_old_connections()

    def stop(self) -> None:
        self._stop_event.set()
