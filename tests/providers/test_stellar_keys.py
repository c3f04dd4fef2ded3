"""The Stellar key vault: sealing, rotation, signing, and secrets that never leak."""

import base64
import logging
import os
import threading
from collections.abc import Callable

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import IntegrityError, connection, connections
from django.test import override_settings
from stellar_sdk import Account, Keypair, Network, TransactionBuilder, TransactionEnvelope
from stellar_sdk.exceptions import BadSignatureError

from orchestrator.models import Marketplace, MarketplaceUser
from providers.models import StellarKey
from providers.stellar import keys as vault
from providers.stellar.keys import (
    StellarKeyError,
    StellarSigningError,
    master_key_id,
    sign_transaction_xdr,
    stellar_key_for,
    stellar_key_for_user,
    stellar_keys_rotate,
)

pytestmark = pytest.mark.django_db

TESTNET = Network.TESTNET_NETWORK_PASSPHRASE
KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
KEY_C = base64.urlsafe_b64encode(b"C?" * 16).decode()  # url-safe alphabet is accepted too


@pytest.fixture
def known_keypair(monkeypatch: pytest.MonkeyPatch) -> Keypair:
    """The next key the vault generates, so tests can look for its seed."""
    keypair = Keypair.random()
    monkeypatch.setattr("providers.stellar.keys.Keypair.random", lambda: keypair)
    return keypair


def stranger() -> str:
    """Another account (not via Keypair.random, which `known_keypair` replaces)."""
    return Keypair.from_raw_ed25519_seed(os.urandom(32)).public_key


def unsigned_tx(source: str, passphrase: str = TESTNET) -> str:
    builder = TransactionBuilder(Account(source, 41), passphrase, base_fee=100)
    builder.append_bump_sequence_op(bump_to=100).add_time_bounds(0, 0)
    return builder.build().to_xdr()


def signed_by(envelope: TransactionEnvelope, public_key: str) -> bool:
    kp = Keypair.from_public_key(public_key)
    for decorated in envelope.signatures:
        if decorated.signature_hint == kp.signature_hint():
            try:
                kp.verify(envelope.hash(), decorated.signature)
            except BadSignatureError:
                continue
            return True
    return False


def stored_bytes(key: StellarKey) -> bytes:
    """Every byte the database holds for the row, straight from SQL."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT public_key, sealed_seed, wrapped_data_key, master_key_id "
            "FROM providers_stellarkey WHERE id = %s",
            [key.pk],
        )
        row = cursor.fetchone()
    assert row is not None
    return b"|".join(bytes(v) if not isinstance(v, str) else v.encode() for v in row)


def secret_forms(keypair: Keypair) -> list[bytes]:
    raw = keypair.raw_secret_key()
    return [raw, keypair.secret.encode(), base64.b64encode(raw), raw.hex().encode()]


def test_a_sealed_key_signs_and_stellar_sdk_verifies_the_signature(
    marketplace: Marketplace,
) -> None:
    key = stellar_key_for(marketplace=marketplace, role=StellarKey.Role.RELEASE_SIGNER)

    signed = sign_transaction_xdr(key, unsigned_tx(key.public_key), TESTNET)

    envelope = TransactionEnvelope.from_xdr(signed, TESTNET)
    assert signed_by(envelope, key.public_key)
    assert key.public_key.startswith("G")
    assert len(key.public_key) == 56


def test_a_signature_for_another_network_does_not_verify_on_this_one(
    marketplace: Marketplace,
) -> None:
    key = stellar_key_for(marketplace=marketplace, role=StellarKey.Role.PLATFORM)
    public = Network.PUBLIC_NETWORK_PASSPHRASE

    signed = sign_transaction_xdr(key, unsigned_tx(key.public_key, public), public)

    assert signed_by(TransactionEnvelope.from_xdr(signed, public), key.public_key)
    assert not signed_by(TransactionEnvelope.from_xdr(signed, TESTNET), key.public_key)


def test_keys_are_one_per_marketplace_role_and_one_per_user(
    make_marketplace: Callable[..., Marketplace],
    make_user: Callable[..., MarketplaceUser],
) -> None:
    first, second = make_marketplace(), make_marketplace()
    buyer = make_user(first)

    platform = stellar_key_for(marketplace=first, role=StellarKey.Role.PLATFORM)
    resolver = stellar_key_for(marketplace=first, role=StellarKey.Role.DISPUTE_RESOLVER)
    other_platform = stellar_key_for(marketplace=second, role=StellarKey.Role.PLATFORM)
    wallet = stellar_key_for_user(user=buyer)

    assert stellar_key_for(marketplace=first, role=StellarKey.Role.PLATFORM) == platform
    assert stellar_key_for_user(user=buyer) == wallet
    assert wallet.role == StellarKey.Role.USER
    assert wallet.marketplace_id == first.pk
    publics = {k.public_key for k in (platform, resolver, other_platform, wallet)}
    assert len(publics) == 4
    with pytest.raises(ValueError, match="not a platform role"):
        stellar_key_for(marketplace=first, role=StellarKey.Role.USER)


def test_the_database_refuses_a_user_role_without_a_user(marketplace: Marketplace) -> None:
    with pytest.raises(IntegrityError, match="user_iff_user_role"):
        StellarKey.objects.create(
            marketplace=marketplace,
            role=StellarKey.Role.USER,
            public_key="G" + "A" * 55,
            sealed_seed=b"x",
            wrapped_data_key=b"x",
            master_key_id="x",
        )


def test_the_stored_row_holds_no_form_of_the_seed(
    marketplace: Marketplace, known_keypair: Keypair
) -> None:
    key = stellar_key_for(marketplace=marketplace, role=StellarKey.Role.TREASURY)

    stored = stored_bytes(key)

    assert key.public_key == known_keypair.public_key
    for form in secret_forms(known_keypair):
        assert form not in stored
    # Sealed: 12-byte nonce + 32-byte seed + 16-byte tag; the data key likewise.
    assert len(bytes(key.sealed_seed)) == 12 + 32 + 16
    assert len(bytes(key.wrapped_data_key)) == 12 + 32 + 16


def test_secrets_stay_out_of_repr_str_logs_and_errors(
    marketplace: Marketplace, known_keypair: Keypair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = stellar_key_for(marketplace=marketplace, role=StellarKey.Role.APPROVER)
    sign_transaction_xdr(key, unsigned_tx(key.public_key), TESTNET)
    errors = []
    for bad in ("not-xdr", unsigned_tx(stranger())):
        with pytest.raises(StellarSigningError) as info:
            sign_transaction_xdr(key, bad, TESTNET)
        errors.append(str(info.value))
    with (
        override_settings(STELLAR_KEY_ENCRYPTION_KEYS=[KEY_C]),
        pytest.raises(StellarKeyError) as e,
    ):
        sign_transaction_xdr(key, unsigned_tx(key.public_key), TESTNET)
    errors.append(str(e.value))

    shown = "\n".join([repr(key), str(key), caplog.text, *errors]).encode()
    assert repr(key) == f"<StellarKey approver {known_keypair.public_key}>"
    assert known_keypair.public_key.encode() in shown
    for form in secret_forms(known_keypair):
        assert form not in shown


def test_sign_refuses_a_transaction_from_another_account(marketplace: Marketplace) -> None:
    key = stellar_key_for(marketplace=marketplace, role=StellarKey.Role.PLATFORM)
    other = stranger()

    with pytest.raises(StellarSigningError, match="refused to sign"):
        sign_transaction_xdr(key, unsigned_tx(other), TESTNET)
    signed = sign_transaction_xdr(key, unsigned_tx(other), TESTNET, require_source=False)

    assert signed_by(TransactionEnvelope.from_xdr(signed, TESTNET), key.public_key)


def test_rotation_rewraps_every_key_and_old_master_keys_decrypt_until_then(
    make_marketplace: Callable[..., Marketplace],
) -> None:
    with override_settings(STELLAR_KEY_ENCRYPTION_KEYS=[KEY_A]):
        made = [
            stellar_key_for(marketplace=make_marketplace(), role=role)
            for role in (StellarKey.Role.PLATFORM, StellarKey.Role.RELEASE_SIGNER)
        ]
    id_a, id_b = master_key_id(b"A" * 32), master_key_id(b"B" * 32)
    assert {k.master_key_id for k in made} == {id_a}

    with override_settings(STELLAR_KEY_ENCRYPTION_KEYS=[KEY_B, KEY_A]):
        # Before rotation the old key still decrypts; new keys are sealed with the new one.
        sign_transaction_xdr(made[0], unsigned_tx(made[0].public_key), TESTNET)
        newer = stellar_key_for(marketplace=made[0].marketplace, role=StellarKey.Role.TREASURY)
        assert newer.master_key_id == id_b
        assert stellar_keys_rotate() == 2
        assert stellar_keys_rotate() == 0

    rows = list(StellarKey.objects.order_by("pk"))
    assert {k.master_key_id for k in rows} == {id_b}
    assert all(k.rotated_at is not None for k in rows if k.pk != newer.pk)
    with override_settings(STELLAR_KEY_ENCRYPTION_KEYS=[KEY_B]):
        for key in rows:
            signed = sign_transaction_xdr(key, unsigned_tx(key.public_key), TESTNET)
            assert signed_by(TransactionEnvelope.from_xdr(signed, TESTNET), key.public_key)
    with (
        override_settings(STELLAR_KEY_ENCRYPTION_KEYS=[KEY_A]),
        pytest.raises(StellarKeyError, match=rf"master key {id_b} .* is not in"),
    ):
        sign_transaction_xdr(rows[0], unsigned_tx(rows[0].public_key), TESTNET)


def test_the_rotate_command_reports_what_it_rewrapped(marketplace: Marketplace) -> None:
    with override_settings(STELLAR_KEY_ENCRYPTION_KEYS=[KEY_A]):
        stellar_key_for(marketplace=marketplace, role=StellarKey.Role.PLATFORM)
    out: list[str] = []

    with override_settings(STELLAR_KEY_ENCRYPTION_KEYS=[KEY_C, KEY_A]):
        call_command("rotate_stellar_keys", stdout=_Collect(out))

    assert "Re-wrapped 1 Stellar key(s)." in "".join(out)
    assert StellarKey.objects.get().master_key_id == master_key_id(b"C?" * 16)


class _Collect:
    def __init__(self, into: list[str]) -> None:
        self.into = into

    def write(self, text: str) -> None:
        self.into.append(text)

    def flush(self) -> None:
        pass


def test_a_wrong_master_key_fails_loudly(marketplace: Marketplace) -> None:
    with override_settings(STELLAR_KEY_ENCRYPTION_KEYS=[KEY_A]):
        key = stellar_key_for(marketplace=marketplace, role=StellarKey.Role.PLATFORM)
    # Pretend the row says it is wrapped by C, which is configured: the tag check fails.
    StellarKey.objects.filter(pk=key.pk).update(master_key_id=master_key_id(b"C?" * 16))
    key.refresh_from_db()

    with (
        override_settings(STELLAR_KEY_ENCRYPTION_KEYS=[KEY_C]),
        pytest.raises(StellarKeyError, match=r"does not decrypt .* wrong master key"),
    ):
        sign_transaction_xdr(key, unsigned_tx(key.public_key), TESTNET)


def test_sealed_bytes_copied_to_another_row_do_not_decrypt(marketplace: Marketplace) -> None:
    one = stellar_key_for(marketplace=marketplace, role=StellarKey.Role.PLATFORM)
    two = stellar_key_for(marketplace=marketplace, role=StellarKey.Role.APPROVER)
    StellarKey.objects.filter(pk=two.pk).update(
        sealed_seed=one.sealed_seed, wrapped_data_key=one.wrapped_data_key
    )
    two.refresh_from_db()

    with pytest.raises(StellarKeyError, match=two.public_key):
        sign_transaction_xdr(two, unsigned_tx(two.public_key), TESTNET)


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_master_key_is_a_configuration_error(
    marketplace: Marketplace, value: str
) -> None:
    with (
        override_settings(STELLAR_KEY_ENCRYPTION_KEYS=[value]),
        pytest.raises(ImproperlyConfigured, match="entry 1 is not base64 of 32 bytes"),
    ):
        stellar_key_for(marketplace=marketplace, role=StellarKey.Role.PLATFORM)


def test_the_development_master_key_is_used_with_a_warning(
    marketplace: Marketplace, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vault, "_warned", set())
    caplog.set_level(logging.WARNING, logger="providers.stellar.keys")

    stellar_key_for(marketplace=marketplace, role=StellarKey.Role.PLATFORM)
    stellar_key_for(marketplace=marketplace, role=StellarKey.Role.APPROVER)

    warnings = [r for r in caplog.records if "development master key" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.postgres
def test_concurrent_first_uses_create_exactly_one_key(
    transactional_db: None, make_marketplace: Callable[..., Marketplace]
) -> None:
    marketplace = make_marketplace()
    barrier = threading.Barrier(8)
    results: list[object] = []

    def race() -> None:
        try:
            barrier.wait(timeout=30)
            key = stellar_key_for(marketplace=marketplace, role=StellarKey.Role.DISPUTE_RESOLVER)
            results.append(key.public_key)
        except Exception as exc:  # collected, asserted on below
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 8
    assert len(set(results)) == 1, results
    assert StellarKey.objects.filter(marketplace=marketplace).count() == 1
