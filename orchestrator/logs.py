"""Log lines: plain text for a developer's terminal, or one JSON object per line for
production (LOG_FORMAT=json, the default with DEBUG off); every line carries the request id.

Secrets never reach a log line: SecretRedactingFilter (settings.LOGGING's "redact") scrubs
what looks like one of ours (API keys, webhook signing secrets, Stellar secret seeds, bearer
and Basic credentials) out of every message and exception text, the JSON formatter does too,
and structured fields whose names look secret (`extra={"api_secret": ...}`) are replaced, as
in the audit log. Code should not log secrets in the first place; this is
the net under it.
"""

import json
import logging
from datetime import UTC, datetime
from typing import Any

from orchestrator.redaction import redact, scrub

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "request_id", "taskName"}
)


class SecretRedactingFilter(logging.Filter):
    """Scrub secrets out of a record's message, arguments and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id,
    any `extra=` fields (secret-looking names redacted), and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),  # also when used without the filter
            "request_id": getattr(record, "request_id", "-"),
        }
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        for name, value in redact(extra).items():
            entry[name] = scrub(value) if isinstance(value, str) else value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = scrub(record.exc_text)
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str, ensure_ascii=False)
