"""ASGI entry point (uvicorn): the same Django application, able to stream SSE."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

application = get_asgi_application()
