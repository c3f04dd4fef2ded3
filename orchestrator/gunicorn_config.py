"""gunicorn's settings for the web process: `gunicorn -c python:orchestrator.gunicorn_config
orchestrator.wsgi:application` (the Dockerfile's command). Command-line options win.

- Workers: WEB_CONCURRENCY (gunicorn reads it itself), else 2 per core + 1, sync workers:
  each request holds one worker for its whole run, provider calls included.
- Logs: the application writes one JSON line per request itself (orchestrator.access, with
  the request id), so gunicorn's access log is off; gunicorn's own lines (start, worker
  boots and timeouts) go to stderr as JSON too, unless LOG_FORMAT=plain.
- Metrics: with PROMETHEUS_MULTIPROC_DIR set, the directory is emptied when the server
  starts and each exiting worker's live gauges are dropped (see orchestrator.metrics).
"""

import multiprocessing
import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count() * 2 + 1)
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
accesslog = None
errorlog = "-"
# A worker restarts after about this many requests (spread by the jitter), bounding leaks.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = max_requests // 10
if os.environ.get("LOG_FORMAT", "json") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "orchestrator.logs.JsonFormatter"}},
        "filters": {"redact": {"()": "orchestrator.logs.SecretRedactingFilter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            }
        },
        # No level: gunicorn's --log-level (default info) keeps deciding.
        "loggers": {"gunicorn.error": {"handlers": ["console"], "propagate": False}},
    }


def on_starting(server: Any) -> None:
    from orchestrator.metrics import multiprocess_dir_reset

    multiprocess_dir_reset()


def child_exit(server: Any, worker: Any) -> None:
    from orchestrator.metrics import multiprocess_process_dead

    multiprocess_process_dead(worker.pid)
