"""Users: create (201 new, 200 existing), get, and the filtered, cursor-paginated list."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator.models import AuditLog, Event, MarketplaceUser
from tests.orchestrator.support import envelope

pytestmark = pytest.mark.django_db


def create(client, **body):
    return client.post("/api/v1/users", body, format="json")


def ids(response) -> list[str]:
    return [user["id"] for user in response.json()["data"]]


def test_user_create_answers_201_with_a_prefixed_public_id(api):
    response = create(api, external_user_id="u1", email="a@example.com", type="SELLER")

    body = response.json()
    assert response.status_code == 201
    assert body["id"].startswith("usr_")
    assert len(body["id"]) == len("usr_") + 24
    assert (body["external_user_id"], body["email"], body["type"]) == (
        "u1",
        "a@example.com",
        "SELLER",
    )
    assert body["status"] == "ACTIVE"
    assert set(body) == {
        "id",
        "external_user_id",
        "email",
        "type",
        "status",
        "created_at",
        "updated_at",
    }


def test_user_create_defaults_to_both_and_no_email(api):
    response = create(api, external_user_id="u1")

    assert (response.json()["type"], response.json()["email"]) == ("BOTH", "")


def test_user_create_writes_an_audit_row_and_an_event(api):
    response = create(api, external_user_id="u1")

    user_id = response.json()["id"]
    audit = AuditLog.objects.get(action="user.created")
    event = Event.objects.get(type="user.created")
    assert (audit.object_type, audit.object_id) == ("user", user_id)
    assert audit.after == {
        "id": user_id,
        "external_user_id": "u1",
        "email": "",
        "type": "BOTH",
        "status": "ACTIVE",
    }
    assert (event.aggregate_type, event.aggregate_id, event.user_ids) == (
        "user",
        user_id,
        [user_id],
    )
    assert event.public_id.startswith("evt_")
    assert audit.public_id.startswith("aud_")


def test_the_same_external_id_again_returns_the_existing_user_with_200(api):
    first = create(api, external_user_id="u1", type="BUYER")

    again = create(api, external_user_id="u1", type="SELLER", email="new@example.com")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert MarketplaceUser.objects.count() == 1
    assert AuditLog.objects.filter(action="user.created").count() == 1
    assert Event.objects.filter(type="user.created").count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"external_user_id": ""}, "external_user_id"),
        ({"external_user_id": "x" * 201}, "external_user_id"),
        ({"external_user_id": "u", "email": "not-an-email"}, "email"),
        (
            {
                "external_user_id": "u",
                "email": "a" * 64 + "@" + "b" * 60 + ".example" * 20 + ".com",
            },
            "email",
        ),
        ({"external_user_id": "u", "type": "buyer"}, "type"),
        ({"external_user_id": "u", "status": "SUSPENDED"}, "status"),
        ({"external_user_id": "u", "id": "usr_mine"}, "id"),
    ],
)
def test_user_create_refuses_bad_input_and_names_the_field(api, body, field):
    response = api.post("/api/v1/users", body, format="json")

    assert response.status_code == 400
    assert envelope(response)["code"] == "VALIDATION_ERROR"
    assert set(envelope(response)["details"]["fields"]) == {field}
    assert not MarketplaceUser.objects.exists()
    assert not AuditLog.objects.filter(action="user.created").exists()


def test_user_get_returns_the_user(api):
    created = create(api, external_user_id="u1")

    fetched = api.get(f"/api/v1/users/{created.json()['id']}")

    assert fetched.status_code == 200
    assert fetched.json() == created.json()


def test_user_get_of_an_unknown_id_is_404(api):
    response = api.get("/api/v1/users/usr_000000000000000000000000")

    assert response.status_code == 404
    assert envelope(response)["code"] == "USER_NOT_FOUND"


def test_user_list_is_newest_first_in_the_pagination_envelope(api, make_user, marketplace):
    users = [make_user(marketplace) for _ in range(3)]

    response = api.get("/api/v1/users")

    assert response.status_code == 200
    assert set(response.json()) == {"data", "pagination"}
    assert ids(response) == [u.public_id for u in reversed(users)]
    assert response.json()["pagination"] == {"has_more": False, "next_cursor": None}


def test_user_list_walks_every_page_once_with_the_cursor(api, make_user, marketplace):
    users = [make_user(marketplace) for _ in range(5)]
    seen: list[str] = []
    pages = []
    cursor = None

    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/users", params).json()
        pages.append(page)
        seen += [u["id"] for u in page["data"]]
        cursor = page["pagination"]["next_cursor"]
        if not page["pagination"]["has_more"]:
            break

    assert seen == [u.public_id for u in reversed(users)]
    assert [len(p["data"]) for p in pages] == [2, 2, 1]
    assert [p["pagination"]["has_more"] for p in pages] == [True, True, False]
    assert pages[-1]["pagination"]["next_cursor"] is None


def test_user_list_has_more_is_false_on_an_exactly_full_page(api, make_user, marketplace):
    for _ in range(2):
        make_user(marketplace)

    response = api.get("/api/v1/users", {"limit": 2})

    assert len(response.json()["data"]) == 2
    assert response.json()["pagination"] == {"has_more": False, "next_cursor": None}


def test_user_list_filters_by_type_external_id_and_email(api, make_user, marketplace):
    buyer = make_user(marketplace, "BUYER", external_user_id="b-1")
    seller = make_user(marketplace, "SELLER", external_user_id="s-1")
    MarketplaceUser.objects.filter(pk=seller.pk).update(email="Seller@Example.com")

    by_type = api.get("/api/v1/users", {"type": "BUYER"})
    by_external = api.get("/api/v1/users", {"external_user_id": "s-1"})
    by_email = api.get("/api/v1/users", {"email": "seller@example.com"})
    combined = api.get("/api/v1/users", {"type": "BUYER", "external_user_id": "s-1"})

    assert ids(by_type) == [buyer.public_id]
    assert ids(by_external) == [seller.public_id]
    assert ids(by_email) == [seller.public_id]
    assert ids(combined) == []


def test_user_list_filters_by_creation_time(api, make_user, marketplace):
    now = timezone.now()
    old, mid, new = (make_user(marketplace) for _ in range(3))
    for user, age in ((old, 3), (mid, 2), (new, 1)):
        MarketplaceUser.objects.filter(pk=user.pk).update(created_at=now - timedelta(days=age))

    after = api.get("/api/v1/users", {"created_after": (now - timedelta(days=2)).isoformat()})
    before = api.get("/api/v1/users", {"created_before": (now - timedelta(days=2)).isoformat()})
    between = api.get(
        "/api/v1/users",
        {
            "created_after": (now - timedelta(days=2, hours=1)).isoformat(),
            "created_before": (now - timedelta(days=1, hours=1)).isoformat(),
        },
    )

    assert ids(after) == [new.public_id, mid.public_id]
    assert ids(before) == [old.public_id]
    assert ids(between) == [mid.public_id]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"page": "2"}, "page"),
        ({"type": "ADMIN"}, "type"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2026-13-40"}, "created_before"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "9" * 5000}, "limit"),
        ({"cursor": "forged"}, "cursor"),
    ],
)
def test_user_list_refuses_bad_filters_with_a_400_naming_them(api, params, field):
    response = api.get("/api/v1/users", params)

    assert response.status_code == 400
    assert envelope(response)["code"] == "VALIDATION_ERROR"
    assert field in envelope(response)["details"]["fields"]


def test_user_list_accepts_the_largest_page(api, make_user, marketplace):
    make_user(marketplace)

    response = api.get("/api/v1/users", {"limit": "100"})

    assert response.status_code == 200
    assert len(response.json()["data"]) == 1


def test_a_tampered_cursor_is_refused(api, make_user, marketplace):
    for _ in range(3):
        make_user(marketplace)
    cursor = api.get("/api/v1/users", {"limit": 1}).json()["pagination"]["next_cursor"]
    tampered = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")

    response = api.get("/api/v1/users", {"cursor": tampered})

    assert response.status_code == 400
    assert "cursor" in envelope(response)["details"]["fields"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_one_external_id_make_one_user(make_key, marketplace):
    _, raw = make_key(marketplace, ["write"])
    start = threading.Barrier(8)

    def call(_: int) -> tuple[int, str]:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
            start.wait(timeout=10)
            response = create(client, external_user_id="dup")
            return response.status_code, response.json()["id"]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(8)))

    assert sorted(status for status, _ in results) == [200] * 7 + [201]
    assert len({user_id for _, user_id in results}) == 1
    assert MarketplaceUser.objects.filter(external_user_id="dup").count() == 1
    assert AuditLog.objects.filter(action="user.created").count() == 1
