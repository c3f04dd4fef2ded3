"""The Celery application. Tasks are thin wrappers around services (see STYLE.md)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

app = Celery("orchestrator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The current app is thread-local; make this one every thread's default, or shared tasks
# sent from another thread (a threaded web server) resolve against an empty default app.
app.set_default()
