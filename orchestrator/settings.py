"""Settings, read entirely from the environment (django-environ).

Every setting has a safe default for the embedded mode (SQLite, in-process tasks,
in-memory channel layer, sandbox providers); `.env.example` documents each one.
With DEBUG off the app refuses to start without real secrets.
"""

import base64
from decimal import Decimal
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

# Lets runtime code write the generic forms the type checker knows (QuerySet[Order]).
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.FileAwareEnv()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Where the embedded mode keeps its SQLite database and collected static files.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- Core -------------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=True)
_DEV_SECRET = "dev-only-insecure-secret-key-change-me"  # noqa: S105 - refused below when DEBUG is off
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET)
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
# Previous SECRET_KEYs, still accepted on what they signed (sessions, pagination cursors)
# while a rotation settles; see docs/operations.md.
SECRET_KEY_FALLBACKS = [k for k in env.list("SECRET_KEY_FALLBACKS", default=[]) if k]
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list this server's hosts when DEBUG is off.")

# --- HTTPS: TLS ends at the proxy in front of the web and SSE servers ---------------------------
# With DEBUG off the admin's session and CSRF cookies are sent over HTTPS only, and HTTPS
# answers carry HSTS. Set BEHIND_TLS_PROXY=true only when that proxy sets (and strips what
# clients send of) X-Forwarded-Proto; Django then knows which requests came over HTTPS.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)  # health checks use http
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_fsm",
    "channels",
    "orchestrator",
    "ledger",
    "providers",
    "escrow",
    "webhooks",
]

MIDDLEWARE = [
    "orchestrator.api.middleware.RequestIdMiddleware",
    "orchestrator.api.middleware.RequestMetricsMiddleware",
    "orchestrator.api.middleware.BodySizeLimitMiddleware",
    "orchestrator.api.middleware.ApiErrorEnvelopeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "orchestrator.urls"
WSGI_APPLICATION = "orchestrator.wsgi.application"
ASGI_APPLICATION = "orchestrator.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
# Embedded default: SQLite under var/. Production and the test suite: PostgreSQL.
# (A blank DATABASE_URL, as in .env.example, means the default.)
DATABASES = {
    "default": env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'orchestrator.sqlite3'}"
    )
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # services own their transactions
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    # A reused connection is checked (one `SELECT 1` round trip) at each request's first
    # query, so a PostgreSQL restart costs no failed request; off saves that round trip and a
    # restart then fails the first request of each process (docs/operations.md).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool(
        "DATABASE_CONN_HEALTH_CHECKS", default=True
    )
    # Django's cursors bind client-side and are never prepared; the only server-side-binding
    # statement is the ledger's posting (ledger.sql), prepared on its 2nd run per connection,
    # which saves the server parsing and planning it on every transfer. Set it empty behind a
    # transaction-pooling proxy without prepared statements (PgBouncer < 1.21).
    _prepare = env.str("DATABASE_PREPARE_THRESHOLD", default="1")
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        int(_prepare) if _prepare else None
    )
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded server is threaded (and Airtm's webhooks arrive while a request waits on
    # Airtm): take the write lock at BEGIN and wait for it, instead of failing "database is
    # locked" when two transactions upgrade at once; WAL lets readers run beside a writer.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache (rate limits), Celery broker, channel layer ---------------------------------
REDIS_URL = env.str("REDIS_URL", default="")

CACHES: dict[str, Any] = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

CHANNEL_LAYERS: dict[str, Any] = {
    "default": (
        {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
        if REDIS_URL
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}

# Tasks run in-process unless a broker is configured (embedded default).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# The queue tasks are sent to and workers consume (queue-length metrics report it).
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Workers log through LOGGING below (JSON in production, secrets scrubbed), not Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "webhook-delivery-sweep": {"task": "webhooks.tasks.delivery_sweep", "schedule": 10.0},
    "idempotency-cleanup": {"task": "orchestrator.tasks.idempotency_cleanup", "schedule": 3600.0},
    "ledger-seal": {"task": "ledger.tasks.ledger_seal_task", "schedule": 5.0},
    "hold-expiry": {"task": "ledger.tasks.hold_expiry_sweep", "schedule": 30.0},
    "provider-janitor": {"task": "providers.tasks.provider_janitor", "schedule": 60.0},
    "inbound-webhook-sweep": {"task": "webhooks.tasks.inbound_webhook_sweep", "schedule": 300.0},
    "escrow-janitor": {"task": "escrow.tasks.escrow_janitor", "schedule": 60.0},
    "ledger-verify-nightly": {
        "task": "ledger.tasks.ledger_verify_task",
        "schedule": crontab(hour=3, minute=0),
    },
}

# --- Ledger -----------------------------------------------------------------------------------
# Seal new entries into the hash chain right after commit (in-process) or within this many
# seconds (Celery); beat also seals every 5 s.
LEDGER_SEAL_ON_COMMIT = env.bool("LEDGER_SEAL_ON_COMMIT", default=True)
LEDGER_SEAL_DEBOUNCE_SECONDS = env.int("LEDGER_SEAL_DEBOUNCE_SECONDS", default=2)

# --- Back-office: adjustments and reconciliation -----------------------------------------------
# A manual adjustment above this amount (in its currency) is posted only when a second staff
# member approves it; at or below it, it is posted when requested.
ADJUSTMENT_APPROVAL_THRESHOLD = Decimal(env.str("ADJUSTMENT_APPROVAL_THRESHOLD", default="100"))
# Checks of the ledger against each provider's records that verify_ledger runs after its own,
# by the kind of reconciliation case they open (each is `check(*, remote: bool)`).
RECONCILIATION_CHECKS = {
    "AIRTM": "providers.services.reconciliation.airtm_check",
    "TRUSTLESS_WORK": "escrow.services.reconciliation.trustless_work_check",
}
# A top-up or withdrawal still not final this long after it was made is a stuck object
# (top-ups waiting for the payer excepted: they expire on their own), and so is one Airtm
# could not be read for this many times, the last one included.
PROVIDER_STUCK_AFTER_SECONDS = env.int("PROVIDER_STUCK_AFTER_SECONDS", default=6 * 3600)
PROVIDER_ATTENTION_ATTEMPTS = env.int("PROVIDER_ATTENTION_ATTEMPTS", default=10)

# --- Providers: Airtm (top-ups, withdrawals) and Trustless Work (escrow) ----------------------
# "sandbox" points both at the project's simulators (manage.py run_sandbox, started by
# `make run`); "live" at the real services, whose credentials are then required.
PROVIDERS_MODE = env.str("PROVIDERS_MODE", default="sandbox")
if PROVIDERS_MODE not in ("sandbox", "live"):
    raise ImproperlyConfigured("PROVIDERS_MODE must be 'sandbox' or 'live'.")
SANDBOX_URL = env.str("SANDBOX_URL", default="http://127.0.0.1:8001").rstrip("/")
# Where marketplaces' users and providers reach this orchestrator (callback and webhook URLs).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
_LIVE = PROVIDERS_MODE == "live"


def _provider_setting(name: str, *, live: str, sandbox: str) -> str:
    """NAME, else the default of the providers' mode. Empty counts as unset (a blank line
    copied from .env.example, or docker-compose passing an unset variable through)."""
    return str(env.str(name, default="")) or (live if _LIVE else sandbox)


AIRTM_BASE_URL = _provider_setting(
    "AIRTM_BASE_URL",
    live="https://api.enterprise.airtm.com/v2",
    sandbox=f"{SANDBOX_URL}/airtm/v2",
).rstrip("/")
# Airtm returns no checkout URL; it is built from the payin id.
AIRTM_CHECKOUT_URL = _provider_setting(
    "AIRTM_CHECKOUT_URL",
    live="https://app.airtm.com/payin/{id}",
    sandbox=f"{SANDBOX_URL}/airtm/payin/{{id}}",
)
AIRTM_API_KEY = _provider_setting("AIRTM_API_KEY", live="", sandbox="sandbox-api-key")
AIRTM_API_SECRET = _provider_setting("AIRTM_API_SECRET", live="", sandbox="sandbox-api-secret")
# Svix endpoint secret(s), "whsec_<base64>"; several separated by spaces while rotating.
_SANDBOX_WEBHOOK_SECRET = "whsec_c2FuZGJveC1haXJ0bS13ZWJob29rLXNlY3JldC0wMQ=="  # noqa: S105
AIRTM_WEBHOOK_SECRETS = _provider_setting(
    "AIRTM_WEBHOOK_SECRET", live="", sandbox=_SANDBOX_WEBHOOK_SECRET
).split()
AIRTM_CONNECT_TIMEOUT = env.float("AIRTM_CONNECT_TIMEOUT", default=3.05)
AIRTM_READ_TIMEOUT = env.float("AIRTM_READ_TIMEOUT", default=10.0)
AIRTM_RATE_LIMIT_PER_SECOND = env.float("AIRTM_RATE_LIMIT_PER_SECOND", default=10.0)
AIRTM_WEBHOOK_TOLERANCE_SECONDS = env.int("AIRTM_WEBHOOK_TOLERANCE_SECONDS", default=300)
# Top-ups that nobody confirmed are canceled after this long (Airtm expires payins at 15 days).
TOPUP_EXPIRY_HOURS = env.int("TOPUP_EXPIRY_HOURS", default=24)
# Janitor: objects not final and untouched for this long are re-read from Airtm.
PROVIDER_JANITOR_STALE_SECONDS = env.int("PROVIDER_JANITOR_STALE_SECONDS", default=60)
if _LIVE and not (AIRTM_API_KEY and AIRTM_API_SECRET and AIRTM_WEBHOOK_SECRETS):
    raise ImproperlyConfigured(
        "PROVIDERS_MODE=live needs AIRTM_API_KEY, AIRTM_API_SECRET and AIRTM_WEBHOOK_SECRET."
    )

# Trustless Work (escrow contracts on Stellar), V1 REST API. The testnet API lives at
# https://dev.api.trustlesswork.com (set TRUSTLESS_WORK_BASE_URL and the testnet passphrase).
TRUSTLESS_WORK_BASE_URL = _provider_setting(
    "TRUSTLESS_WORK_BASE_URL",
    live="https://api.trustlesswork.com",
    sandbox=f"{SANDBOX_URL}/trustless-work",
).rstrip("/")
TRUSTLESS_WORK_API_KEY = _provider_setting(
    "TRUSTLESS_WORK_API_KEY", live="", sandbox="sandbox-trustless-work-key"
)
TRUSTLESS_WORK_CONNECT_TIMEOUT = env.float("TRUSTLESS_WORK_CONNECT_TIMEOUT", default=3.05)
# send-transaction waits for the ledger to close (about 5 s, sometimes more).
TRUSTLESS_WORK_READ_TIMEOUT = env.float("TRUSTLESS_WORK_READ_TIMEOUT", default=30.0)
TRUSTLESS_WORK_RATE_LIMIT_PER_MINUTE = env.int("TRUSTLESS_WORK_RATE_LIMIT_PER_MINUTE", default=50)
# Seconds between the looks that confirm an uncertain submission before it is resent.
TRUSTLESS_WORK_CONFIRM_DELAYS = [
    float(d) for d in env.list("TRUSTLESS_WORK_CONFIRM_DELAYS", default=["3", "6", "9"]) if d
]
if _LIVE and not TRUSTLESS_WORK_API_KEY:
    raise ImproperlyConfigured("PROVIDERS_MODE=live needs TRUSTLESS_WORK_API_KEY.")

# --- Escrowed orders --------------------------------------------------------------------------
# How long one process may talk to Trustless Work about an escrow before another may take
# over (longer than the slowest client call with its retries and confirmations).
ESCROW_LEASE_SECONDS = env.int("ESCROW_LEASE_SECONDS", default=300)
# The escrow janitor re-reads escrows whose chain step has been waiting this long.
ESCROW_JANITOR_STALE_SECONDS = env.int("ESCROW_JANITOR_STALE_SECONDS", default=60)
# After this many failed tries a chain step is flagged for attention (it is still retried).
ESCROW_STEP_ATTENTION_ATTEMPTS = env.int("ESCROW_STEP_ATTENTION_ATTEMPTS", default=10)
# Who bears the contract's fees on money refunded to a buyer: "platform" (the buyer gets
# back exactly what they paid) or "buyer".
ESCROW_REFUND_FEES = env.str("ESCROW_REFUND_FEES", default="platform")
if ESCROW_REFUND_FEES not in ("platform", "buyer"):
    raise ImproperlyConfigured("ESCROW_REFUND_FEES must be 'platform' or 'buyer'.")
# Sandbox only: create the escrow parties' accounts in the Trustless Work simulator and mint
# test USDC to the treasury that funds escrows. Never in live mode.
ESCROW_SANDBOX_PROVISIONING = not _LIVE and env.bool("ESCROW_SANDBOX_PROVISIONING", default=True)

# --- Stellar: network and the key vault -------------------------------------------------------
STELLAR_NETWORK_PASSPHRASE = _provider_setting(
    "STELLAR_NETWORK_PASSPHRASE",
    live="Public Global Stellar Network ; September 2015",
    sandbox="Test SDF Network ; September 2015",
)
STELLAR_USDC_ISSUER = _provider_setting(
    "STELLAR_USDC_ISSUER",
    live="GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN",
    sandbox="GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5",
)
# Master keys that wrap the data keys of the Stellar secret seeds (envelope encryption):
# base64 of 32 random bytes each, comma separated; the first encrypts, the others only
# decrypt until `manage.py rotate_stellar_keys` has re-wrapped everything with the first.
# The embedded default is a published development key: refused when DEBUG is off.
STELLAR_DEV_KEY_ENCRYPTION_KEY = "ZGV2LW9ubHktc3RlbGxhci1tYXN0ZXIta2V5LTMyYiE="
STELLAR_KEY_ENCRYPTION_KEYS = [
    k.strip() for k in env.list("STELLAR_KEY_ENCRYPTION_KEYS", default=[]) if k.strip()
] or ([STELLAR_DEV_KEY_ENCRYPTION_KEY] if DEBUG else [])
if not DEBUG and (
    not STELLAR_KEY_ENCRYPTION_KEYS or STELLAR_DEV_KEY_ENCRYPTION_KEY in STELLAR_KEY_ENCRYPTION_KEYS
):
    raise ImproperlyConfigured(
        "STELLAR_KEY_ENCRYPTION_KEYS must be set (and not to the development key) when DEBUG "
        "is off."
    )

# --- Outbound webhooks and SSE ---------------------------------------------------------------
# Fernet keys (url-safe base64 of 32 bytes, comma separated) sealing endpoint secrets at rest;
# the first seals, all open. Unset: one key derived from SECRET_KEY, with DEBUG on only (then
# changing SECRET_KEY would make every endpoint's secret unreadable).
WEBHOOK_SECRET_KEYS = [k.strip() for k in env.list("WEBHOOK_SECRET_KEYS", default=[]) if k.strip()]
if not WEBHOOK_SECRET_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("WEBHOOK_SECRET_KEYS must be set when DEBUG is off.")
    from webhooks.secrets import derived_key

    WEBHOOK_SECRET_KEYS = [derived_key(SECRET_KEY)]
for _n, _key in enumerate(WEBHOOK_SECRET_KEYS, 1):
    try:
        if len(base64.urlsafe_b64decode(_key.encode())) != 32:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            f"WEBHOOK_SECRET_KEYS entry {_n} is not a Fernet key (url-safe base64 of 32 bytes)."
        ) from None
# Test mode lets endpoints use http and loopback/private addresses (refused otherwise: SSRF).
WEBHOOK_TEST_MODE = env.bool("WEBHOOK_TEST_MODE", default=False)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_MAX_RESPONSE_BYTES = env.int("WEBHOOK_MAX_RESPONSE_BYTES", default=1024 * 1024)
# Retries: exponential from the base, capped, with jitter, until the window has passed.
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=5.0)
WEBHOOK_RETRY_MAX_DELAY_SECONDS = env.float("WEBHOOK_RETRY_MAX_DELAY_SECONDS", default=6 * 3600)
WEBHOOK_RETRY_WINDOW_SECONDS = env.float("WEBHOOK_RETRY_WINDOW_SECONDS", default=3 * 86400)
# An endpoint failing without a single success for this long is disabled.
WEBHOOK_AUTO_DISABLE_SECONDS = env.float("WEBHOOK_AUTO_DISABLE_SECONDS", default=5 * 86400)
# How long a queued or running delivery task owns its row; must exceed the timeout.
WEBHOOK_LEASE_SECONDS = env.float("WEBHOOK_LEASE_SECONDS", default=60.0)
# How stale a process's list of marketplaces with endpoints may be (webhooks.outbound).
WEBHOOK_ENDPOINT_INDEX_SECONDS = env.float("WEBHOOK_ENDPOINT_INDEX_SECONDS", default=5.0)
WEBHOOK_ROTATION_OVERLAP_SECONDS = env.int("WEBHOOK_ROTATION_OVERLAP_SECONDS", default=86400)
# SSE: a ping every so often; the outbox is read at least this often besides Redis wake-ups.
SSE_HEARTBEAT_SECONDS = env.float("SSE_HEARTBEAT_SECONDS", default=15.0)
SSE_POLL_SECONDS = env.float("SSE_POLL_SECONDS", default=1.0)

# --- API --------------------------------------------------------------------------------------
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)  # 1 MiB
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
API_KEY_ENVIRONMENT = env.str("API_KEY_ENVIRONMENT", default="test")  # "live" or "test"
RATE_LIMIT_REQUESTS = env.int("RATE_LIMIT_REQUESTS", default=600)  # per key per window
RATE_LIMIT_WINDOW_SECONDS = env.int("RATE_LIMIT_WINDOW_SECONDS", default=60)
IDEMPOTENCY_TTL_HOURS = env.int("IDEMPOTENCY_TTL_HOURS", default=24)
IDEMPOTENCY_STALE_SECONDS = env.int("IDEMPOTENCY_STALE_SECONDS", default=300)
PAGINATION_DEFAULT_LIMIT = 20
PAGINATION_MAX_LIMIT = 100

REST_FRAMEWORK = {
    # Every endpoint subclasses orchestrator.api.views.ApiView, which sets authentication and
    # scope checks; these defaults only serve the public schema and docs views.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "orchestrator.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "OFFER-HUB Orchestrator API",
    "DESCRIPTION": "Balances, top-ups, withdrawals and escrowed orders for marketplaces.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Internationalisation, static -------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(VAR_DIR / "static"))

# --- Metrics (Prometheus) ---------------------------------------------------------------------
# GET /metrics answers only when enabled; with a token, only to "Authorization: Bearer <token>".
# Several processes (gunicorn workers) need PROMETHEUS_MULTIPROC_DIR: see docs/operations.md.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=False)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Celery queues whose length is reported (besides the default queue).
METRICS_CELERY_QUEUES = [q for q in env.list("METRICS_CELERY_QUEUES", default=[]) if q]
# A Celery worker serves its own counters (provider calls, webhook deliveries) on this port.
CELERY_WORKER_METRICS_PORT = env.int("CELERY_WORKER_METRICS_PORT", default=0)

# --- Logging: never log secrets; request ids on every line ------------------------------------
# "json" (one object per line, the default with DEBUG off) or "plain".
LOG_FORMAT = env.str("LOG_FORMAT", default="") or ("plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured("LOG_FORMAT must be 'json' or 'plain'.")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "orchestrator.context.RequestIdLogFilter"},
        "redact": {"()": "orchestrator.logs.SecretRedactingFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "orchestrator.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}
