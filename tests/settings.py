"""Test settings: the main settings, pointed at the test services.

The suite runs against PostgreSQL and Redis (DATABASE_URL / REDIS_URL, which the Makefile
sets to the local services).
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/offerhub")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# Each xdist worker gets its own Redis database: tests clear the cache (FLUSHDB), which
# must not wipe another worker's rate-limit counters mid-test. (A Celery worker started by
# a test inherits its pytest worker's REDIS_URL already shifted.)
_xdist = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist.startswith("gw") and os.environ.get("OFFERHUB_TEST_WORKER") != "1":
    _base, _, _db = os.environ["REDIS_URL"].rpartition("/")
    if _db.isdigit():
        os.environ["REDIS_URL"] = f"{_base}/{(int(_db) + int(_xdist[2:])) % 16}"

from orchestrator.settings import *  # noqa: E402, F403

# A real Celery worker started by the `celery_worker` fixture runs with OFFERHUB_TEST_WORKER=1
# against the same test database; everywhere else tasks run eagerly, in-process.
if os.environ.get("OFFERHUB_TEST_WORKER") == "1":
    CELERY_TASK_ALWAYS_EAGER = False
    CELERY_BROKER_URL = os.environ["REDIS_URL"]
else:
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_BROKER_URL = "memory://"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING["root"] = {"handlers": ["console"], "level": "WARNING"}  # noqa: F405
# Test receivers listen on 127.0.0.1 over http: allowed only in webhook test mode (the SSRF
# tests turn it off).
WEBHOOK_TEST_MODE = True
