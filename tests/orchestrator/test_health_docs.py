"""Liveness, readiness, the OpenAPI document and the interactive docs: all public."""

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.orchestrator.support import protected_routes

pytestmark = pytest.mark.django_db


def test_health_is_public_and_ok():
    response = APIClient().get("/api/v1/health")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["version"]


def test_health_ignores_a_bad_key():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer nonsense")

    response = client.get("/api/v1/health")

    assert response.status_code == 200


@pytest.mark.redis
def test_readiness_checks_database_and_redis():
    response = APIClient().get("/api/v1/health/ready")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ready"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["redis"]["latency_ms"] >= 0


@override_settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_readiness_is_503_naming_redis_when_it_is_down():
    response = APIClient().get("/api/v1/health/ready")

    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    assert response.json()["checks"]["redis"]["status"] == "error"
    assert response.json()["checks"]["database"]["status"] == "ok"


def test_readiness_is_503_naming_the_database_when_it_fails(monkeypatch):
    def down() -> str:
        raise ConnectionError("db gone")

    monkeypatch.setattr("orchestrator.api.health._ping_database", down)

    response = APIClient().get("/api/v1/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"status": "error", "error": "ConnectionError"}
    assert b"db gone" not in response.content


def test_openapi_document_is_openapi_3_json_with_the_users_api():
    response = APIClient().get("/api/v1/openapi.json")

    schema = response.json()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/")
    assert "json" in response["Content-Type"]
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"]
    assert {"get", "post"} <= set(schema["paths"]["/api/v1/users"])
    assert "get" in schema["paths"]["/api/v1/users/{user_id}"]
    assert "/api/v1/health" in schema["paths"]


def test_openapi_document_lists_every_protected_route():
    paths = APIClient().get("/api/v1/openapi.json").json()["paths"]

    missing = [r.openapi_path for r in protected_routes() if r.openapi_path not in paths]

    assert not missing


def test_openapi_document_names_the_bearer_api_key_on_protected_operations():
    schema = APIClient().get("/api/v1/openapi.json").json()

    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ohk_<env>_key_...",
    }
    orders = schema["paths"]["/api/v1/orders"]["post"]
    assert {"ApiKey": []} in orders["security"]
    operation_ids = [op["operationId"] for item in schema["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


@pytest.mark.parametrize(
    ("path", "marker"), [("/api/v1/docs", b"swagger"), ("/api/v1/redoc", b"redoc")]
)
def test_interactive_docs_are_html_pages_pointing_at_the_schema(path, marker):
    response = APIClient().get(path)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert marker in response.content.lower()
    assert b"/api/v1/openapi.json" in response.content
