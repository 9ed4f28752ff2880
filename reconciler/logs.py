"""Logging to stderr, one line per event, with journald priority prefixes under systemd.

Known secret values are registered here and replaced by ``***`` in every record, as a last
line of defence: no code path is meant to log one in the first place.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import sys
import threading
import urllib.parse

_PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Never let ``value`` reach a log line, in any encoding it may travel in (values shorter
    than 6 characters are ignored)."""
    if len(value) >= 6:
        with _secrets_lock:
            _secrets.update(encodings(value))


def encodings(value: str) -> set[str]:
    """``value`` as it may appear in a URL, a JSON string, an HTTP header or HTML."""
    raw = value.encode("utf-8")
    forms = {
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
        urllib.parse.quote(value),  # a URL path keeps its slashes
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        html.escape(value),
        base64.b64encode(raw).decode("ascii"),
        base64.urlsafe_b64encode(raw).decode("ascii"),
        base64.b64encode(raw).decode("ascii").rstrip("="),
        base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
    }
    return {form for form in forms if len(form) >= 6}


def redact(text: str) -> str:
    with _secrets_lock:
        # Longest first: a secret's encoding may contain the secret itself.
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class RedactingFormatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__("%(message)s" if journald else "%(asctime)s %(levelname)s %(message)s")
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record)).replace("\n", " | ")
        if self.journald:
            return f"<{_PRIORITIES.get(record.levelno, 6)}>{line}"
        return line


def setup_logging(verbosity: int = 0) -> None:
    level = logging.DEBUG if verbosity > 1 else logging.INFO if verbosity == 1 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(journald=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party loggers are chatty (SQL statements, every job execution) and may print URLs
    # with secrets in them at debug level: only their warnings, unless -vvv.
    third_party = logging.DEBUG if verbosity > 2 else logging.WARNING
    for noisy in ("aiohttp", "sqlalchemy", "apscheduler", "alembic", "tenacity"):
        logging.getLogger(noisy).setLevel(third_party)
