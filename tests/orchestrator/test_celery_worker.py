"""The real-worker harness: tasks sent from a test run in a separate Celery process."""

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.models import IdempotencyRecord
from orchestrator.tasks import idempotency_cleanup
from tests.worker import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_idempotency_cleanup_runs_in_a_real_worker_and_deletes_only_expired_records(
    celery_worker, make_key, marketplace
):
    key, _ = make_key(marketplace)
    now = timezone.now()
    for name, expires in (("old", now - timedelta(seconds=1)), ("fresh", now + timedelta(hours=1))):
        IdempotencyRecord.objects.create(
            api_key=key, method="POST", path="/x", key=name, fingerprint="f", expires_at=expires
        )

    idempotency_cleanup.delay()

    wait_until(lambda: not IdempotencyRecord.objects.filter(key="old").exists())
    assert IdempotencyRecord.objects.filter(key="fresh").exists()
    assert any("idempotency_cleanup" in line for line in celery_worker.output)
