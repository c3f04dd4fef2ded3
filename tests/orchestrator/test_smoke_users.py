import pytest

pytestmark = pytest.mark.django_db


def test_user_create_then_get(api):
    created = api.post("/api/v1/users", {"external_user_id": "u1"}, format="json")

    fetched = api.get(f"/api/v1/users/{created.json()['id']}")

    assert created.status_code == 201
    assert fetched.json()["external_user_id"] == "u1"
