"""Test settings: the main settings, pointed at the test services.

The suite runs against PostgreSQL and Redis (DATABASE_URL / REDIS_URL, which the Makefile
sets to the local services); tasks run eagerly unless a test starts a real worker.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/offerhub")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

from orchestrator.settings import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = "memory://"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING["root"] = {"handlers": ["console"], "level": "WARNING"}  # noqa: F405
