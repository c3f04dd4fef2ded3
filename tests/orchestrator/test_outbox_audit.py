"""The event outbox and the audit log: written in the caller's transaction, append-only."""

import pytest
from django.db import connection, transaction
from django.db.utils import IntegrityError

from orchestrator.audit import audit_record
from orchestrator.context import Actor, acting_as
from orchestrator.events import DomainEvent, publish
from orchestrator.models import AuditLog, Event, MarketplaceUser
from orchestrator.redaction import REDACTED
from orchestrator.services import marketplace_create, user_create

pytestmark = pytest.mark.django_db


class Probe(DomainEvent):
    type = "probe.happened"
    aggregate_type = "probe"


class RollbackError(Exception):
    pass


def create_user_then_fail(marketplace) -> None:
    """Create a user inside a transaction that then fails; the event existed inside it."""
    with transaction.atomic():
        user_create(marketplace=marketplace, external_user_id="ghost", type="BOTH")
        seen = Event.objects.filter(type="user.created").count()
        raise RollbackError(seen)


@pytest.mark.django_db(transaction=True)
def test_publish_outside_a_transaction_is_refused(marketplace):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        publish(Probe(marketplace_id=marketplace.pk, aggregate_id="p_1"))

    assert not Event.objects.filter(type="probe.happened").exists()


@pytest.mark.django_db(transaction=True)
def test_audit_record_outside_a_transaction_is_refused(marketplace):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit_record(action="probe.done", object_type="probe", object_id="p_1", marketplace_id=None)

    assert not AuditLog.objects.filter(action="probe.done").exists()


def test_publish_inside_a_transaction_writes_the_event(marketplace):
    with transaction.atomic():
        record = publish(Probe(marketplace_id=marketplace.pk, aggregate_id="p_1", user_ids=("u",)))

    stored = Event.objects.get(pk=record.pk)
    assert (stored.type, stored.aggregate_type, stored.aggregate_id) == (
        "probe.happened",
        "probe",
        "p_1",
    )
    assert stored.user_ids == ["u"]
    assert stored.payload == {"aggregate_id": "p_1"}
    assert stored.public_id.startswith("evt_")


def test_a_rolled_back_change_leaves_no_event_and_no_audit_row(marketplace):
    with pytest.raises(RollbackError) as failed:
        create_user_then_fail(marketplace)

    assert failed.value.args == (1,)
    assert not MarketplaceUser.objects.filter(external_user_id="ghost").exists()
    assert not Event.objects.filter(type="user.created").exists()
    assert not AuditLog.objects.filter(action="user.created").exists()


def test_audit_rows_name_the_actor_request_and_address(api):
    response = api.post(
        "/api/v1/users", {"external_user_id": "a"}, format="json", HTTP_X_REQUEST_ID="trace-1"
    )

    row = AuditLog.objects.get(action="user.created")
    assert row.actor_kind == "api_key"
    assert row.actor_id.startswith("key_")
    assert (row.request_id, row.ip, row.object_id) == (
        "trace-1",
        "127.0.0.1",
        response.json()["id"],
    )
    assert Event.objects.get(type="user.created").request_id == "trace-1"


def test_audit_rows_outside_requests_name_the_acting_system(marketplace):
    with acting_as(Actor(kind="system", id="job-7")), transaction.atomic():
        row = audit_record(
            action="probe.done", object_type="probe", object_id="p_1", marketplace_id=None
        )

    assert (row.actor_kind, row.actor_id) == ("system", "job-7")


def test_audit_snapshots_redact_secret_looking_fields(marketplace):
    with transaction.atomic():
        row = audit_record(
            action="probe.done",
            object_type="probe",
            object_id="p_1",
            marketplace_id=marketplace.pk,
            before={"password": "hunter2", "name": "a"},
            after={"nested": [{"api_token": "t0k", "raw_key": "ohk_x"}], "key_hash": "abc"},
        )

    row.refresh_from_db()
    assert row.before == {"password": REDACTED, "name": "a"}
    assert row.after == {
        "nested": [{"api_token": REDACTED, "raw_key": REDACTED}],
        "key_hash": REDACTED,
    }


@pytest.mark.postgres
@pytest.mark.parametrize("table", ["orchestrator_event", "orchestrator_auditlog"])
@pytest.mark.parametrize(
    "statement",
    ["UPDATE {} SET created_at = now()", "DELETE FROM {}"],
    ids=["update", "delete"],
)
def test_the_database_refuses_to_change_events_and_audit_rows(api, table, statement):
    api.post("/api/v1/users", {"external_user_id": "a"}, format="json")
    before = (Event.objects.count(), AuditLog.objects.count())

    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement.format(table))

    assert before[0] >= 1
    assert before[1] >= 1
    assert (Event.objects.count(), AuditLog.objects.count()) == before


@pytest.mark.postgres
@pytest.mark.parametrize("model", [Event, AuditLog])
def test_the_orm_cannot_change_events_or_audit_rows_either(api, model):
    api.post("/api/v1/users", {"external_user_id": "a"}, format="json")
    row = model.objects.first()

    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.filter(pk=row.pk).update(created_at=row.created_at)
    with pytest.raises(IntegrityError), transaction.atomic():
        row.delete()

    assert model.objects.filter(pk=row.pk).exists()


def test_the_api_key_acts_only_for_its_own_request(api):
    api.post("/api/v1/users", {"external_user_id": "a"}, format="json", HTTP_X_REQUEST_ID="req-1")

    later = marketplace_create(name="Later", slug="later")

    row = AuditLog.objects.get(action="marketplace.created", object_id=later.public_id)
    assert (row.actor_kind, row.actor_id, row.request_id, row.ip) == ("system", "system", "", None)
