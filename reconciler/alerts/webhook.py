"""Delivery of one message to a Slack incoming webhook, classified for the outbox.

The webhook URL is a secret: it is read from a :class:`~pydantic.SecretStr` only to make
the request and never appears in a log line, a result or an exception. Webhooks are named
in logs as ``webhook <name>``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

import aiohttp
from pydantic import SecretStr
from yarl import URL

from reconciler.domain import utcnow
from reconciler.errors import AlertDeliveryError
from reconciler.providers.base import is_loopback_host

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 200
_MAX_BODY_BYTES = 4_096


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    REFUSED = "refused"


# Answers about the webhook itself, not the message: a revoked or rotated URL, a channel
# deleted or archived, an app no longer allowed to post. Every message would get the same.
WEBHOOK_ERRORS = frozenset(
    {
        "no_service",
        "no_service_id",
        "no_team",
        "team_disabled",
        "invalid_token",
        "channel_not_found",
        "channel_is_archived",
        "action_prohibited",
        "posting_to_general_channel_denied",
        "user_not_found",
    }
)
_WEBHOOK_STATUSES = frozenset({401, 403, 404, 410})


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What Slack made of one message.

    ``delivered`` on any 2xx: the message was accepted, whatever the body says (an
    unexpected body is kept in ``reason`` and logged as a warning). ``rate_limited`` (429)
    carries ``retry_after_s`` when Slack said how long to wait (None: back off as usual).
    ``transient`` (5xx, connection error, timeout) is worth retrying. ``refused`` is about
    the webhook, not the message (404 ``no_service`` or ``channel_not_found``, 403, 410, a
    URL that is not valid): the webhook is stopped and its messages wait for a new URL.
    ``permanent`` is about this message (400 ``invalid_blocks``): it is not retried.
    ``reason`` is Slack's answer, truncated, or a short description of the failure.
    """

    status: DeliveryStatus
    reason: str
    http_status: int | None = None
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is DeliveryStatus.DELIVERED

    @property
    def retryable(self) -> bool:
        return self.status in (DeliveryStatus.RATE_LIMITED, DeliveryStatus.TRANSIENT)

    @property
    def permanent(self) -> bool:
        return self.status is DeliveryStatus.PERMANENT

    @property
    def refused(self) -> bool:
        return self.status is DeliveryStatus.REFUSED

    def describe(self, webhook: str) -> str:
        code = f"HTTP {self.http_status} " if self.http_status is not None else ""
        wait = f", retry after {self.retry_after_s:g}s" if self.retry_after_s is not None else ""
        return f"webhook {webhook}: {self.status.value} ({code}{self.reason}{wait})"

    def to_error(self, webhook: str) -> AlertDeliveryError:
        """The error to report for this result (meant for permanent failures)."""
        return AlertDeliveryError(self.describe(webhook))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(Decimal(text))
    except ArithmeticError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def classify(http_status: int, body: str, retry_after: str | None, now: datetime) -> DeliveryResult:
    """Turn Slack's HTTP answer into a :class:`DeliveryResult` (pure)."""
    reason = " ".join(body.split())[:MAX_REASON_CHARS] or f"HTTP {http_status}"
    if 200 <= http_status < 300:
        # Accepted: posting again would be a duplicate, whatever the body (OK, {"ok":true},
        # a proxy's page). The caller warns about a body that is not Slack's ``ok``.
        if body.strip() == "ok":
            return DeliveryResult(DeliveryStatus.DELIVERED, "ok", http_status)
        return DeliveryResult(DeliveryStatus.DELIVERED, f"unexpected answer: {reason}", http_status)
    if http_status == 429:
        wait = parse_retry_after(retry_after, now)
        return DeliveryResult(DeliveryStatus.RATE_LIMITED, reason, http_status, wait)
    if http_status >= 500 or http_status == 408:
        return DeliveryResult(DeliveryStatus.TRANSIENT, reason, http_status)
    if http_status in _WEBHOOK_STATUSES or body.strip() in WEBHOOK_ERRORS:
        return DeliveryResult(DeliveryStatus.REFUSED, reason, http_status)
    return DeliveryResult(DeliveryStatus.PERMANENT, reason, http_status)


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} to Slack")


class SlackWebhookClient:
    """Posts messages to incoming webhooks over one shared :class:`aiohttp.ClientSession`.

    The client never retries by itself: it reports what happened and the caller (the
    outbox) decides when to try again.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._timeout_s = timeout_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"SlackWebhookClient(timeout_s={self._timeout_s:g})"

    async def post(
        self, url: SecretStr, payload: dict[str, Any], *, name: str = "default"
    ) -> DeliveryResult:
        """Send ``payload`` to the webhook; never raises for network or Slack failures."""
        data = json.dumps(payload, ensure_ascii=False, default=_json_default).encode()
        return await self.post_bytes(url, data, name=name)

    async def post_bytes(
        self,
        url: SecretStr,
        data: bytes,
        *,
        name: str = "default",
        headers: dict[str, str] | None = None,
        redact: tuple[str, ...] = (),
        any_body: bool = False,
    ) -> DeliveryResult:
        """POST a JSON body (Slack, or another channel's webhook) and classify the answer;
        ``redact`` names more secrets (a signing key) never to echo from the body;
        ``any_body``: a 2xx needs no ``ok`` body to be quiet (PagerDuty, Teams, webhooks)."""
        secret = url.get_secret_value()
        problem = webhook_url_problem(secret)
        if problem is not None:
            result = DeliveryResult(DeliveryStatus.REFUSED, problem)
            log.warning("%s", result.describe(name))
            return result
        sent_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}

        try:
            async with self._session.post(
                secret,
                data=data,
                headers=sent_headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                raw = await _read_prefix(response, _MAX_BODY_BYTES)
                body = _redact(raw.decode("utf-8", errors="replace"), secret)
                for other in redact:
                    body = body.replace(other, "<secret>") if other else body
                result = classify(
                    response.status, body, response.headers.get("Retry-After"), self._clock()
                )
        except TimeoutError:
            result = DeliveryResult(
                DeliveryStatus.TRANSIENT, f"timed out after {self._timeout_s:g}s"
            )
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):
            result = DeliveryResult(DeliveryStatus.REFUSED, "the webhook URL is not valid")
        except (aiohttp.ClientError, OSError) as e:
            result = DeliveryResult(DeliveryStatus.TRANSIENT, _describe_error(e))
        if any_body and result.delivered:
            result = DeliveryResult(DeliveryStatus.DELIVERED, "ok", result.http_status)
        level = (
            (logging.DEBUG if result.reason == "ok" else logging.WARNING)
            if result.delivered
            else logging.INFO
            if result.retryable
            else logging.WARNING
        )
        log.log(level, "%s", result.describe(name))
        return result


def webhook_url_problem(text: str) -> str | None:
    """Why a webhook URL is refused before anything is sent (``config check`` says it too),
    or None. Never quotes the URL: it is the credential."""
    if not _usable_url(text):
        return "the webhook URL is not valid"
    if not _private_url(text):
        # The URL is the credential: over plain http anyone on the path could post.
        return "the webhook URL must use https (plain http only to a loopback address)"
    return None


def _usable_url(text: str) -> bool:
    try:
        parsed = URL(text)
    except (TypeError, ValueError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def _private_url(text: str) -> bool:
    parsed = URL(text)
    return parsed.scheme == "https" or is_loopback_host(parsed.host or "")


def _redact(text: str, secret: str) -> str:
    """Remove the URL, and its token, should an answer ever echo them."""
    text = text.replace(secret, "<webhook url>")
    token = secret.rstrip("/").rsplit("/", 1)[-1]
    return text.replace(token, "<token>") if len(token) >= 8 else text


async def _read_prefix(response: aiohttp.ClientResponse, limit: int) -> bytes:
    raw = b""
    while len(raw) < limit and (chunk := await response.content.read(limit - len(raw))):
        raw += chunk
    return raw


def _describe_error(error: BaseException) -> str:
    """A failure's kind and OS reason, without exception text (which may quote the URL)."""
    kind = type(error).__name__
    os_error = error.os_error if isinstance(error, aiohttp.ClientConnectorError) else error
    code = getattr(os_error, "errno", None)
    return f"{kind}: {os.strerror(code)}" if isinstance(code, int) else kind
