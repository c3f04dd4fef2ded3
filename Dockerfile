# Production image: the web process (gunicorn, WSGI), server-sent events (uvicorn, ASGI), the
# Celery worker and beat and, in the sandbox profile, the provider simulators all run from it
# with different commands (see docker-compose.yml and docs/operations.md).
FROM python:3.11-slim

# PYTHONPATH: /app's code wins over the copy pip installs (settings find templates/ from it).
# PROMETHEUS_MULTIPROC_DIR: several processes per container add their metrics up there.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/app/var \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

WORKDIR /app
# A fixed, numeric id: orchestrators (Kubernetes runAsNonRoot) can check it is not root.
RUN groupadd --system --gid 10001 app && \
    useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app

COPY pyproject.toml README.md manage.py ./
COPY orchestrator ./orchestrator
COPY ledger ./ledger
COPY providers ./providers
COPY escrow ./escrow
COPY webhooks ./webhooks
COPY templates ./templates
# Static files are collected at build time; production settings need real-looking secrets to
# load at all, so collectstatic gets throwaway ones that exist only in this RUN.
RUN pip install . && mkdir -p /app/var && \
    SECRET_KEY=collectstatic-only DEBUG=false ALLOWED_HOSTS=localhost \
    STELLAR_KEY_ENCRYPTION_KEYS="$(python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')" \
    WEBHOOK_SECRET_KEYS="$(python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')" \
    python manage.py collectstatic --noinput -v 0 && chown -R app:app /app/var

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "orchestrator.healthcheck"]
# Workers: WEB_CONCURRENCY (default 2 per core + 1); see orchestrator/gunicorn_config.py.
CMD ["gunicorn", "-c", "python:orchestrator.gunicorn_config", "orchestrator.wsgi:application"]
