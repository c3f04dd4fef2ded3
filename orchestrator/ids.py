"""Prefixed public ids (`usr_…`, `ord_…`). Integer primary keys never leave the process."""

import secrets
import string
from collections.abc import Callable

_ALPHABET = string.ascii_letters + string.digits
PUBLIC_ID_LENGTH = 24  # characters after the prefix: about 142 random bits


def new_public_id(prefix: str) -> str:
    # One read of 144 random bits written as 24 base-62 digits (about 142.9 bits survive);
    # a secrets.choice per character would cost a system call each.
    value = int.from_bytes(secrets.token_bytes(18), "big")
    chars = []
    for _ in range(PUBLIC_ID_LENGTH):
        value, digit = divmod(value, 62)
        chars.append(_ALPHABET[digit])
    return prefix + "".join(chars)


def public_id_factory(prefix: str) -> Callable[[], str]:
    """A default= callable for a model's public id field (migrations need a named function)."""
    return _FACTORIES[prefix]


def _make(prefix: str) -> Callable[[], str]:
    def factory() -> str:
        return new_public_id(prefix)

    factory.__name__ = factory.__qualname__ = "new_" + prefix.rstrip("_") + "_id"
    return factory


PREFIXES = (
    *("mkt_", "key_", "usr_", "evt_", "aud_", "acc_", "je_", "hld_"),
    *("topup_", "wd_", "ord_", "esc_", "dsp_", "ms_", "whk_", "dlv_"),
    *("rec_", "adj_"),
)
_FACTORIES = {prefix: _make(prefix) for prefix in PREFIXES}
# Module attributes, so migrations can name each default by its import path.
globals().update({factory.__name__: factory for factory in _FACTORIES.values()})
