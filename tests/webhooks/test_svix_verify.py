"""Our Svix verifier against signatures made by the independent `svix` library."""

import base64
from datetime import UTC, datetime, timedelta

import pytest
from svix.webhooks import Webhook

from webhooks import svix as ours

SECRET = "whsec_" + base64.b64encode(b"test-secret-of-thirty-two-bytes!").decode()
OTHER = "whsec_" + base64.b64encode(b"another-secret-thirty-two-bytes!").decode()
BODY = b'{"type":"payin.confirmed","data":{"id":"p1","amount":500.00}}'
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def signed(secret: str = SECRET, *, at: datetime = NOW, msg_id: str = "msg_1", body: bytes = BODY):
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(at.timestamp())),
        "svix-signature": signature,
    }


def verify(headers, body=BODY, secrets=(SECRET,), now=NOW):
    return ours.verify(
        headers=headers, body=body, secrets=list(secrets), now=now, tolerance_seconds=300
    )


def test_a_message_signed_by_the_svix_library_verifies():
    assert verify(signed()) == "msg_1"


def test_our_signature_is_what_the_svix_library_makes():
    stamp = int(NOW.timestamp())
    assert ours.sign(secret=SECRET, msg_id="msg_1", timestamp=stamp, body=BODY) == Webhook(
        SECRET
    ).sign("msg_1", NOW, BODY.decode())


def test_a_reserialised_body_does_not_verify():
    with pytest.raises(ours.WebhookSignatureError):
        verify(signed(), body=b'{"type": "payin.confirmed", "data": {"id": "p1", "amount": 500.0}}')


def test_another_secret_does_not_verify():
    with pytest.raises(ours.WebhookSignatureError):
        verify(signed(OTHER))


@pytest.mark.parametrize("skew", [timedelta(seconds=301), timedelta(seconds=-301)])
def test_timestamps_outside_five_minutes_are_refused(skew):
    with pytest.raises(ours.WebhookSignatureError, match="tolerance"):
        verify(signed(at=NOW + skew))


def test_timestamps_inside_five_minutes_pass():
    assert verify(signed(at=NOW - timedelta(seconds=299)))


def test_rotation_either_of_our_secrets_verifies():
    assert verify(signed(OTHER), secrets=(SECRET, OTHER))


def test_one_matching_entry_among_several_signatures_suffices():
    headers = signed()
    headers["svix-signature"] = "v1,bm90LWl0 v2,abc " + headers["svix-signature"]
    assert verify(headers)


def test_malformed_base64_entries_are_skipped_not_crashing():
    headers = signed()
    headers["svix-signature"] = "v1,@@@not-base64@@@"
    with pytest.raises(ours.WebhookSignatureError):
        verify(headers)


def test_white_labelled_webhook_headers_are_accepted():
    headers = {key.replace("svix-", "webhook-"): value for key, value in signed().items()}
    assert verify(headers) == "msg_1"


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_missing_headers_are_a_400_kind_of_error(missing):
    headers = signed()
    del headers[missing]
    with pytest.raises(ours.WebhookHeadersMissingError) as caught:
        verify(headers)
    assert caught.value.http_status == 400


def test_no_configured_secret_refuses_everything():
    with pytest.raises(ours.WebhookSignatureError):
        verify(signed(), secrets=())
