# Production image: the web (gunicorn, WSGI), SSE (uvicorn, ASGI), Celery worker and beat all
# run from it with different commands (see docker-compose.yml).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/app/var

WORKDIR /app
RUN groupadd --system app && useradd --system --gid app --home /app app

COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY ledger ./ledger
COPY providers ./providers
COPY escrow ./escrow
COPY webhooks ./webhooks
COPY templates ./templates
COPY manage.py ./
RUN pip install . && mkdir -p /app/var && \
    SECRET_KEY=collectstatic-only DEBUG=false ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput -v 0 && chown -R app:app /app/var

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4).status == 200 else 1)"
CMD ["gunicorn", "orchestrator.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
