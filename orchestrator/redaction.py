"""What counts as a secret, for everything the orchestrator writes down: audit rows,
provider call records, idempotency records and log lines.

`redact` replaces the values of fields whose names look secret in structured data; `scrub`
replaces text shaped like one of the secrets we issue or hold (API keys, webhook signing
secrets, Stellar secret seeds, HTTP credentials) inside free text such as a log message.
"""

import re
from typing import Any

REDACTED = "[REDACTED]"
_SECRET_NAME = re.compile(r"secret|password|token|key_hash|raw_key|private|seed|signature", re.I)
_SECRET_TEXT = re.compile(
    r"ohk_(?:live|test)_[A-Za-z0-9_]+"  # our API keys
    r"|whsec_[A-Za-z0-9+/=_-]+"  # webhook signing secrets (ours and Airtm's Svix ones)
    r"|\bS[A-Z2-7]{55}\b"  # Stellar secret seeds (StrKey, 56 characters)
    r"|(?<=Bearer )[^\s\"',]+"  # any bearer credential
    r"|(?<=Basic )[A-Za-z0-9+/=]{8,}",  # HTTP Basic credentials (Airtm's)
)


def redact(value: Any) -> Any:
    """A copy of `value` with every field whose name looks secret replaced."""
    if isinstance(value, dict):
        return {
            key: REDACTED if _SECRET_NAME.search(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def scrub(text: str) -> str:
    """`text` with anything shaped like one of our secrets replaced by [REDACTED]."""
    return _SECRET_TEXT.sub(REDACTED, text)
