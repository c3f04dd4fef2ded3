"""The Stellar key vault: the accounts whose secret seeds we hold, sealed at rest.

Invariants:
- Each seed comes from stellar-sdk `Keypair.random()` and is stored only sealed
  (envelope encryption): a fresh 256-bit data key encrypts the raw 32-byte seed with
  AES-GCM, and a master key from settings.STELLAR_KEY_ENCRYPTION_KEYS wraps that data key
  with AES-GCM. Both ciphertexts are bound to the account's public key (associated data),
  so sealed bytes copied onto another row do not decrypt.
- The first master key seals new keys; every listed key decrypts, so a key can be rotated
  in: `stellar_keys_rotate()` (`manage.py rotate_stellar_keys`) re-wraps every data key
  with the current master key, after which the old one may be removed. The seeds
  themselves are never re-encrypted, so rotation is cheap.
- Seeds are decrypted only in memory, to sign (`sign_transaction_xdr`), and never logged,
  returned or put in an exception message. A wrong or missing master key fails loudly
  with StellarKeyError.
- One key per (marketplace, role) and one wallet per user; `stellar_key_for` and
  `stellar_key_for_user` get or create them, safely under concurrency (the database's
  unique constraints decide which of two racing creations wins).
"""

import base64
import binascii
import hashlib
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone
from stellar_sdk import Keypair, TransactionEnvelope

from orchestrator.models import Marketplace, MarketplaceUser
from providers.models import StellarKey

logger = logging.getLogger(__name__)

_NONCE_BYTES = 12
_SEED_AAD = b"offerhub/stellar-seed/v1|"
_DATA_KEY_AAD = b"offerhub/stellar-data-key/v1|"
_ROTATE_BATCH = 200
_warned: set[str] = set()  # warnings already logged by this process


class StellarKeyError(Exception):
    """A sealed key cannot be used: missing or wrong master key, or corrupted data.

    Messages name the public key and the master key id, never secret material.
    """


class StellarSigningError(StellarKeyError):
    """Refused to sign: the transaction is unreadable or is not this key's to sign."""


def master_key_id(master_key: bytes) -> str:
    """A short public fingerprint of a master key, stored beside what it wrapped."""
    return hashlib.sha256(b"offerhub/stellar-kek-id|" + master_key).hexdigest()[:16]


def _master_keys() -> list[tuple[str, bytes]]:
    """(id, key) for every configured master key, the current (sealing) one first."""
    configured = list(settings.STELLAR_KEY_ENCRYPTION_KEYS)
    if not configured:
        raise ImproperlyConfigured("STELLAR_KEY_ENCRYPTION_KEYS is empty.")
    keys = []
    for position, text in enumerate(configured, start=1):
        try:
            key = base64.b64decode(text.encode(), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ImproperlyConfigured(
                f"STELLAR_KEY_ENCRYPTION_KEYS entry {position} is not base64 of 32 bytes."
            )
        keys.append((master_key_id(key), key))
    if configured[0] == settings.STELLAR_DEV_KEY_ENCRYPTION_KEY and "dev-key" not in _warned:
        _warned.add("dev-key")
        logger.warning(
            "Stellar secret seeds are sealed with the published development master key; "
            "set STELLAR_KEY_ENCRYPTION_KEYS before holding real funds."
        )
    return keys


def _seal_new_keypair() -> tuple[str, bytes, bytes, str]:
    """Generate an account: (public key, sealed seed, wrapped data key, master key id)."""
    keypair = Keypair.random()
    data_key = AESGCM.generate_key(bit_length=256)
    public = keypair.public_key
    seed_nonce = os.urandom(_NONCE_BYTES)
    sealed_seed = seed_nonce + AESGCM(data_key).encrypt(
        seed_nonce, keypair.raw_secret_key(), _SEED_AAD + public.encode()
    )
    kek_id, wrapped = _wrap(data_key, public)
    return public, sealed_seed, wrapped, kek_id


def _wrap(data_key: bytes, public: str) -> tuple[str, bytes]:
    kek_id, kek = _master_keys()[0]
    nonce = os.urandom(_NONCE_BYTES)
    aad = _DATA_KEY_AAD + public.encode() + b"|" + kek_id.encode()
    return kek_id, nonce + AESGCM(kek).encrypt(nonce, data_key, aad)


def _unwrap(key: StellarKey) -> bytes:
    """The data key of `key`, unwrapped with the master key that wrapped it."""
    masters = dict(_master_keys())
    kek = masters.get(key.master_key_id)
    if kek is None:
        raise StellarKeyError(
            f"The master key {key.master_key_id} that seals {key.public_key} is not in "
            "STELLAR_KEY_ENCRYPTION_KEYS."
        )
    blob = bytes(key.wrapped_data_key)
    aad = _DATA_KEY_AAD + key.public_key.encode() + b"|" + key.master_key_id.encode()
    try:
        return AESGCM(kek).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
    except InvalidTag:
        raise StellarKeyError(
            f"The data key of {key.public_key} does not decrypt with master key "
            f"{key.master_key_id}: wrong master key or corrupted data."
        ) from None


def _keypair(key: StellarKey) -> Keypair:
    """The signing keypair of `key`, decrypted in memory. Never log or return it."""
    blob = bytes(key.sealed_seed)
    try:
        seed = AESGCM(_unwrap(key)).decrypt(
            blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _SEED_AAD + key.public_key.encode()
        )
    except InvalidTag:
        raise StellarKeyError(f"The sealed seed of {key.public_key} is corrupted.") from None
    keypair = Keypair.from_raw_ed25519_seed(seed)
    if keypair.public_key != key.public_key:
        raise StellarKeyError(f"The sealed seed of {key.public_key} is for another account.")
    return keypair


def stellar_key_for(*, marketplace: Marketplace, role: str) -> StellarKey:
    """The marketplace's key for a platform `role`, created on first use.

    Raises:
        ValueError: `role` is not a platform role (users' wallets: stellar_key_for_user).
    """
    if role not in StellarKey.Role.values or role == StellarKey.Role.USER:
        raise ValueError(f"{role!r} is not a platform role.")
    existing = StellarKey.objects.filter(marketplace=marketplace, role=role, user=None).first()
    return existing or _create(marketplace=marketplace, role=role, user=None)


def stellar_key_for_user(*, user: MarketplaceUser) -> StellarKey:
    """The user's wallet key, created on first use."""
    existing = StellarKey.objects.filter(user=user).first()
    if existing is not None:
        return existing
    return _create(marketplace=user.marketplace, role=StellarKey.Role.USER, user=user)


def _create(*, marketplace: Marketplace, role: str, user: MarketplaceUser | None) -> StellarKey:
    public, sealed_seed, wrapped, kek_id = _seal_new_keypair()
    try:
        # A savepoint, so losing a race leaves an enclosing transaction usable.
        with transaction.atomic():
            key = StellarKey.objects.create(
                marketplace=marketplace,
                role=role,
                user=user,
                public_key=public,
                sealed_seed=sealed_seed,
                wrapped_data_key=wrapped,
                master_key_id=kek_id,
            )
    except IntegrityError:
        # Another process created it first; the unique constraint kept only theirs.
        if user is not None:
            return StellarKey.objects.get(user=user)
        return StellarKey.objects.get(marketplace=marketplace, role=role, user=None)
    logger.info("Created Stellar key %s for %s", public, role)
    return key


def stellar_keys_rotate() -> int:
    """Re-wrap every data key not yet under the current master key; return how many.

    Safe to interrupt and to run again: each batch commits on its own, and rows already
    under the current key are skipped.
    """
    current_id = _master_keys()[0][0]
    rotated = 0
    while True:
        with transaction.atomic():
            batch = list(
                StellarKey.objects.select_for_update(skip_locked=True)
                .exclude(master_key_id=current_id)
                .order_by("pk")[:_ROTATE_BATCH]
            )
            for key in batch:
                kek_id, wrapped = _wrap(_unwrap(key), key.public_key)
                StellarKey.objects.filter(pk=key.pk).update(
                    wrapped_data_key=wrapped, master_key_id=kek_id, rotated_at=timezone.now()
                )
        rotated += len(batch)
        if len(batch) < _ROTATE_BATCH:
            return rotated


def sign_transaction_xdr(
    key: StellarKey, xdr: str, network_passphrase: str, *, require_source: bool = True
) -> str:
    """Sign a transaction envelope with `key`; return the signed envelope as base64 XDR.

    The signature covers the network passphrase: signed for another network, the
    transaction is refused there (tx_bad_auth).

    Raises:
        StellarSigningError: the XDR is not a transaction envelope, or (with
            `require_source`) the transaction's source account is not `key`.
        StellarKeyError: the key cannot be decrypted.
    """
    try:
        envelope = TransactionEnvelope.from_xdr(xdr, network_passphrase)
    except Exception as exc:  # untrusted bytes: any decoding failure means "not an envelope"
        raise StellarSigningError(
            f"Not a transaction envelope ({type(exc).__name__}); nothing signed."
        ) from None
    source = envelope.transaction.source.account_id
    if require_source and source != key.public_key:
        raise StellarSigningError(
            f"The transaction's source is {source}, not {key.public_key}; refused to sign."
        )
    envelope.sign(_keypair(key))
    return envelope.to_xdr()
