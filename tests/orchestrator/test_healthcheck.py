"""The containers' health check (python -m orchestrator.healthcheck)."""

from urllib.parse import urlsplit

import pytest
from django.test import override_settings

from orchestrator.healthcheck import allowed_host, healthy


@pytest.mark.parametrize(
    ("allowed", "host"),
    [("", "localhost"), ("*", "localhost"), ("api.example.com,web", "api.example.com")],
)
def test_the_check_names_a_host_django_accepts(monkeypatch, allowed: str, host: str) -> None:
    monkeypatch.setenv("ALLOWED_HOSTS", allowed)
    assert allowed_host() == host


def test_a_subdomain_wildcard_becomes_its_domain(monkeypatch) -> None:
    monkeypatch.setenv("ALLOWED_HOSTS", ".example.com")
    assert allowed_host() == "example.com"


@pytest.mark.django_db
def test_a_serving_server_is_healthy_and_a_silent_port_is_not(live_server, monkeypatch) -> None:
    monkeypatch.setenv("ALLOWED_HOSTS", "api.example.com")
    port = urlsplit(live_server.url).port
    assert port is not None

    with override_settings(ALLOWED_HOSTS=["api.example.com"]):
        assert healthy(port)
    with override_settings(ALLOWED_HOSTS=["elsewhere.example.com"]):
        assert not healthy(port)  # the 400 Django answers a host it does not serve
    assert not healthy(1)
