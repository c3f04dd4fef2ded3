"""With DEBUG off the settings refuse to load without each production secret, and the
embedded default (DEBUG on) loads with none."""

import base64
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

SETTINGS = Path(__file__).resolve().parents[2] / "orchestrator" / "settings.py"

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-real-secret-key-" + "x" * 40,
    "ALLOWED_HOSTS": "api.example.com",
    "STELLAR_KEY_ENCRYPTION_KEYS": base64.b64encode(b"k" * 32).decode(),
    "WEBHOOK_SECRET_KEYS": Fernet.generate_key().decode(),
}
LIVE = {
    **PRODUCTION,
    "PROVIDERS_MODE": "live",
    "AIRTM_API_KEY": "ak_live",
    "AIRTM_API_SECRET": "sk_live",
    "AIRTM_WEBHOOK_SECRET": "whsec_bGl2ZS1haXJ0bS13ZWJob29rLXNlY3JldA==",
    "TRUSTLESS_WORK_API_KEY": "tw_live",
}
# Everything the settings read that the test environment may hold, besides the services.
_READ = {
    *LIVE,
    "LOG_FORMAT",
    "DJANGO_SETTINGS_MODULE",
    "SANDBOX_URL",
    "AIRTM_BASE_URL",
    "BEHIND_TLS_PROXY",
    "SECURE_COOKIES",
    "SECURE_HSTS_SECONDS",
}


def load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> ModuleType:
    """Execute orchestrator/settings.py afresh under `env` (a module of its own)."""
    for name in _READ | {f"{n}_FILE" for n in _READ}:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    spec = importlib.util.spec_from_file_location("settings_under_test", SETTINGS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def without(env: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != name}


def test_production_settings_load_with_every_secret(monkeypatch, tmp_path) -> None:
    settings = load(monkeypatch, tmp_path, **PRODUCTION)

    assert settings.DEBUG is False
    assert settings.LOG_FORMAT == "json"
    assert settings.LOGGING["handlers"]["console"]["formatter"] == "json"
    assert [PRODUCTION["WEBHOOK_SECRET_KEYS"]] == settings.WEBHOOK_SECRET_KEYS


def test_live_providers_load_with_their_credentials(monkeypatch, tmp_path) -> None:
    settings = load(monkeypatch, tmp_path, **LIVE)

    assert settings.PROVIDERS_MODE == "live"
    assert [LIVE["AIRTM_WEBHOOK_SECRET"]] == settings.AIRTM_WEBHOOK_SECRETS


@pytest.mark.parametrize(
    "missing", ["SECRET_KEY", "ALLOWED_HOSTS", "STELLAR_KEY_ENCRYPTION_KEYS", "WEBHOOK_SECRET_KEYS"]
)
def test_production_refuses_to_start_without(monkeypatch, tmp_path, missing: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=missing):
        load(monkeypatch, tmp_path, **without(PRODUCTION, missing))


@pytest.mark.parametrize(
    "missing",
    ["AIRTM_API_KEY", "AIRTM_API_SECRET", "AIRTM_WEBHOOK_SECRET", "TRUSTLESS_WORK_API_KEY"],
)
def test_live_providers_refuse_to_start_without(monkeypatch, tmp_path, missing: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=missing):
        load(monkeypatch, tmp_path, **without(LIVE, missing))


def test_production_refuses_the_published_development_keys(monkeypatch, tmp_path) -> None:
    dev_secret = "dev-only-insecure-secret-key-change-me"
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        load(monkeypatch, tmp_path, **{**PRODUCTION, "SECRET_KEY": dev_secret})
    dev_key = "ZGV2LW9ubHktc3RlbGxhci1tYXN0ZXIta2V5LTMyYiE="
    with pytest.raises(ImproperlyConfigured, match="STELLAR_KEY_ENCRYPTION_KEYS"):
        load(monkeypatch, tmp_path, **{**PRODUCTION, "STELLAR_KEY_ENCRYPTION_KEYS": dev_key})


def test_a_malformed_webhook_secret_key_is_refused(monkeypatch, tmp_path) -> None:
    env = {**PRODUCTION, "WEBHOOK_SECRET_KEYS": f"{Fernet.generate_key().decode()},not-a-key"}
    with pytest.raises(ImproperlyConfigured, match="WEBHOOK_SECRET_KEYS entry 2"):
        load(monkeypatch, tmp_path, **env)


def test_secrets_can_come_from_files(monkeypatch, tmp_path) -> None:
    """Docker secrets: NAME_FILE=/run/secrets/name instead of NAME."""
    secret_file = tmp_path / "secret_key"
    secret_file.write_text(PRODUCTION["SECRET_KEY"])
    env = {**without(PRODUCTION, "SECRET_KEY"), "SECRET_KEY_FILE": str(secret_file)}

    settings = load(monkeypatch, tmp_path, **env)

    assert PRODUCTION["SECRET_KEY"] == settings.SECRET_KEY


def test_the_embedded_default_needs_no_secret_and_logs_plain_text(monkeypatch, tmp_path) -> None:
    settings = load(monkeypatch, tmp_path, DEBUG="true")

    assert settings.LOG_FORMAT == "plain"
    assert settings.ALLOWED_HOSTS == ["*"]
    assert len(settings.WEBHOOK_SECRET_KEYS) == 1  # derived from the development SECRET_KEY


def test_log_format_can_be_chosen(monkeypatch, tmp_path) -> None:
    assert load(monkeypatch, tmp_path, DEBUG="true", LOG_FORMAT="json").LOG_FORMAT == "json"
    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT"):
        load(monkeypatch, tmp_path, DEBUG="true", LOG_FORMAT="xml")


def test_blank_provider_settings_count_as_unset(monkeypatch, tmp_path) -> None:
    """A blank line copied from .env.example, or compose passing `${NAME:-}` through."""
    blank = dict.fromkeys(["AIRTM_BASE_URL", "AIRTM_API_KEY", "AIRTM_WEBHOOK_SECRET"], "")
    settings = load(monkeypatch, tmp_path, DEBUG="true", SANDBOX_URL="http://sb:8090", **blank)

    assert settings.AIRTM_BASE_URL == "http://sb:8090/airtm/v2"
    assert settings.AIRTM_API_KEY == "sandbox-api-key"
    assert settings.AIRTM_WEBHOOK_SECRETS != []


def test_a_copy_of_env_example_loads(monkeypatch, tmp_path) -> None:
    """Every blank line of .env.example means "the default"."""
    example = SETTINGS.parents[1] / ".env.example"
    values = dict(
        line.split("=", 1)
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name in values:
        monkeypatch.delenv(name, raising=False)
    settings = load(monkeypatch, tmp_path, **values)

    assert settings.LOG_FORMAT == "plain"
    assert settings.AIRTM_BASE_URL.endswith("/airtm/v2")
    assert settings.METRICS_CELERY_QUEUES == []
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"


def test_production_cookies_are_https_only_and_hsts_is_on(monkeypatch, tmp_path) -> None:
    settings = load(monkeypatch, tmp_path, **PRODUCTION)

    assert settings.SESSION_COOKIE_SECURE is True
    assert settings.CSRF_COOKIE_SECURE is True
    assert settings.SECURE_HSTS_SECONDS == 31_536_000
    assert not hasattr(settings, "SECURE_PROXY_SSL_HEADER")  # only when the proxy is trusted

    behind = load(monkeypatch, tmp_path, **PRODUCTION, BEHIND_TLS_PROXY="true")
    assert behind.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")


def test_the_embedded_default_sends_cookies_over_plain_http(monkeypatch, tmp_path) -> None:
    settings = load(monkeypatch, tmp_path)

    assert settings.SESSION_COOKIE_SECURE is False
    assert settings.SECURE_HSTS_SECONDS == 0
