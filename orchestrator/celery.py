"""The Celery application. Tasks are thin wrappers around services (see STYLE.md)."""

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

app = Celery("orchestrator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The current app is thread-local; make this one every thread's default, or shared tasks
# sent from another thread (a threaded web server) resolve against an empty default app.
app.set_default()


@worker_init.connect
def _serve_metrics(**kwargs: Any) -> None:
    """With CELERY_WORKER_METRICS_PORT set, the worker's main process serves the counters of
    its pool (provider calls, webhook deliveries) to Prometheus on that port. A prefork pool
    needs PROMETHEUS_MULTIPROC_DIR (emptied here) so the children's counts add up."""
    from django.conf import settings

    port: int = settings.CELERY_WORKER_METRICS_PORT
    if not port:
        return
    from prometheus_client import start_http_server

    from orchestrator.metrics import multiprocess_dir_reset, process_registry

    multiprocess_dir_reset()
    start_http_server(port, registry=process_registry())


@worker_process_shutdown.connect
def _forget_process(**kwargs: Any) -> None:
    from orchestrator.metrics import multiprocess_process_dead

    multiprocess_process_dead(os.getpid())
