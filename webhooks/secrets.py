"""Outbound webhook signing secrets: made, sealed at rest, opened only to sign.

A secret is "whsec_" + base64 of 32 random bytes (the Standard Webhooks form, which the
`standardwebhooks` and `svix` verifiers accept). It is returned to the marketplace once,
when made, and stored only as a Fernet token under settings.WEBHOOK_SECRET_KEYS: the first
key seals, every listed key opens (MultiFernet), so a key can be rotated in.
"""

import base64
import functools
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PREFIX = "whsec_"


class SecretUnreadableError(Exception):
    """A sealed secret does not open with any configured key (the message holds no secret)."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def derived_key(secret_key: str) -> str:
    """A Fernet key derived from Django's SECRET_KEY, the default when none is configured."""
    digest = hashlib.sha256(b"offerhub/webhook-secrets/v1|" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


@functools.cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("WEBHOOK_SECRET_KEYS is empty.")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "WEBHOOK_SECRET_KEYS entries must be Fernet keys (url-safe base64 of 32 bytes)."
        ) from exc


def _keys() -> MultiFernet:
    return _fernet(tuple(settings.WEBHOOK_SECRET_KEYS))


def seal(secret: str) -> str:
    return _keys().encrypt(secret.encode()).decode()


def unseal(sealed: str) -> str:
    try:
        return _keys().decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadableError(
            "A webhook secret does not open with WEBHOOK_SECRET_KEYS."
        ) from exc


def reseal(sealed: str) -> str:
    """The same secret sealed with the current (first) key."""
    return _keys().rotate(sealed.encode()).decode()
