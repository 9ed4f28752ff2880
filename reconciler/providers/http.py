"""HTTP for provider clients: one shared session, bounded concurrency, retries, exact JSON.

:class:`HttpClient` owns the process's one :class:`aiohttp.ClientSession`. Every provider
request goes through :meth:`HttpClient.get_json`, which

- waits for a slot of the source's limiter (an :class:`asyncio.Semaphore` of
  ``max_concurrency``) and holds it for the request only, not while backing off;
- retries connection errors, timeouts, 429, 5xx and 202 ("still computing") at most
  ``max_retries`` times, sleeping ``Retry-After`` (seconds or an HTTP date) when the provider
  sends one, else an exponential backoff with full jitter, never longer than ``cap_s``;
- fails at once on any other status with a ProviderError (ProviderAuthError for 401/403)
  that names the source, the endpoint and the provider's own message;
- parses the body as exact JSON (:func:`reconciler.providers.normalize.loads_exact`): an HTML
  page, truncated or malformed JSON is a BadProviderDataError, never retried.

Retries are run by tenacity (:class:`tenacity.AsyncRetrying`): its wait is the provider's
Retry-After when given, its before-sleep hook logs each attempt. Requests never follow
redirects: an EdgeGrid signature is only valid for the URL it signed.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import tenacity
import yarl

from reconciler import __version__
from reconciler.errors import BadProviderDataError, ProviderAuthError, ProviderError
from reconciler.logs import redact
from reconciler.providers.normalize import clean, loads_exact

if TYPE_CHECKING:
    from reconciler.providers.base import PullStats
    from reconciler.settings import AkamaiSourceSettings, FastlySourceSettings

__all__ = ["HeaderFactory", "HttpClient", "RetryPolicy", "provider_message", "retry_after_s"]

log = logging.getLogger(__name__)

HeaderFactory = Callable[[yarl.URL], Mapping[str, str]]
"""Builds a request's headers right before each attempt (an EdgeGrid signature is per send)."""

RETRY_STATUSES: Final = frozenset({202, 408, 429}) | frozenset(range(500, 600))
AUTH_STATUSES: Final = frozenset({401, 403})
# A page is parsed whole: this bounds the memory one page may take (a 10,000-record Fastly
# page is a few MB; anything this large is refused before it is read to the end).
MAX_BODY_BYTES: Final = 32 * 1024 * 1024
OFF_LOOP_PARSE_BYTES: Final = 1024 * 1024  # bodies larger than this are parsed in a thread
_MESSAGE_LIMIT: Final = 300
_HTML_TITLE: Final = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class RetryPolicy:
    """How one source's requests are timed out and retried."""

    max_retries: int = 5
    cap_s: float = 60.0
    timeout_s: float = 60.0
    base_s: float = 0.5

    @classmethod
    def from_settings(cls, settings: FastlySourceSettings | AkamaiSourceSettings) -> RetryPolicy:
        return cls(
            max_retries=settings.max_retries,
            cap_s=settings.retry_cap_s,
            timeout_s=settings.timeout_s,
        )

    @property
    def timeout(self) -> aiohttp.ClientTimeout:
        # total bounds a whole attempt; connect and read bound a stalled socket sooner.
        return aiohttp.ClientTimeout(
            total=self.timeout_s,
            sock_connect=min(self.timeout_s, 10.0),
            sock_read=self.timeout_s,
        )

    def delay_s(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap_s)
        ceiling = min(self.cap_s, self.base_s * 2 ** (retry - 1))
        return rng.uniform(0, ceiling)


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        if text.replace(".", "", 1).isdigit():
            return float(text)
        return _date_delay(text, now)
    except (TypeError, ValueError, OverflowError):
        return None


def _date_delay(text: str, now: datetime) -> float:
    when = email.utils.parsedate_to_datetime(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def _rate_limit_reset_s(headers: Mapping[str, str], now: datetime) -> float | None:
    """Fastly's ``Fastly-RateLimit-Reset`` (epoch seconds) when no Retry-After came."""
    if headers.get("Fastly-RateLimit-Remaining", "").strip() != "0":
        return None
    reset = headers.get("Fastly-RateLimit-Reset", "").strip()
    if not reset.isdigit():
        return None
    return max(int(reset) - now.timestamp(), 0.0)


def provider_message(body: bytes | bytearray, content_type: str = "") -> str:
    """The provider's own words from an error body, in any of the documented shapes.

    Fastly: ``{"msg", "detail"}``, problem+json ``{"title", "detail"}`` and
    ``{"errors": [{"title", "detail", "code"}]}``; Akamai: problem+json, with ``errors``
    (Billing API, Contract API). Anything else: an HTML page's title or the text itself.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        message = _json_message(data)
        if message:
            return _clip(message)
    if "html" in content_type.lower() or body.lstrip()[:1] == b"<":
        match = _HTML_TITLE.search(body)
        title = match.group(1).decode("utf-8", "replace").strip() if match else ""
        return _clip(f"HTML page{': ' + title if title else ''}")
    text = body.decode("utf-8", "replace").strip()
    return _clip(text) if text else "(empty body)"


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _json_message(data: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for key in ("msg", "title", "message", "detail"):
        text = _text(data.get(key))
        if text and text not in parts:
            parts.append(text)
    errors = data.get("errors")
    if isinstance(errors, list):
        for error in errors:
            if not isinstance(error, dict):
                continue
            pieces = [_text(error.get(k)) for k in ("title", "detail")]
            text = ": ".join(p for p in pieces if p)
            code = _text(error.get("code"))
            if code:
                text = f"{text} ({code})" if text else code
            if text:
                parts.append(text)
    return "; ".join(parts)


def _clip(text: str) -> str:
    text = redact(clean(" ".join(text.split())))
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


class _Retryable(Exception):
    """One failed attempt that may succeed if tried again."""

    def __init__(
        self, reason: str, status: int | None, wait_s: float | None = None, why: str = ""
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.wait_s = wait_s
        self.why = why  # what asked for wait_s


class _ProviderWait(tenacity.wait.wait_base):
    """The wait before a retry: the provider's Retry-After (or rate-limit reset) when it sent
    one, else exponential backoff with full jitter; never longer than the policy's cap."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        asked = failure.wait_s if isinstance(failure, _Retryable) else None
        return self.policy.delay_s(retry_state.attempt_number, asked, self.rng)


def _log_retry(source: str, endpoint: str, policy: RetryPolicy) -> Callable[..., None]:
    """tenacity's before_sleep: one warning per retry, with its number and wait."""

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if not isinstance(failure, _Retryable):  # pragma: no cover (only _Retryable retries)
            return
        delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
        why = f" ({failure.why})" if failure.wait_s is not None else ""
        log.warning(
            "source '%s': %s: %s; retry %d/%d in %.2fs%s",
            source,
            endpoint,
            failure.reason,
            retry_state.attempt_number,
            policy.max_retries,
            delay,
            why,
        )

    return before_sleep


class HttpClient:
    """The process's one HTTP session for provider APIs; use as an async context manager.

    ``sleep`` waits between retries (tests pass one that records the waits instead).
    """

    def __init__(
        self,
        *,
        user_agent: str | None = None,
        seed: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._user_agent = user_agent or f"reconciler/{__version__}"
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random(seed)
        self._sleep = sleep

    async def __aenter__(self) -> HttpClient:
        # Certificates are always verified (the default ssl context); no proxies from the
        # environment: a plain-HTTP proxy would change what an EdgeGrid signature covers.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            trust_env=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpClient is not open: use 'async with HttpClient() as http'")
        return self._session

    async def get_json(
        self,
        source: str,
        endpoint: str,
        url: yarl.URL | str,
        *,
        headers: Mapping[str, str] | HeaderFactory,
        limiter: asyncio.Semaphore,
        policy: RetryPolicy,
        stats: PullStats,
        decode: Callable[[bytes | bytearray], Any] = loads_exact,
    ) -> tuple[Any, Mapping[str, str]]:
        """GET ``url`` and return its exact JSON body and response headers.

        ``endpoint`` names the request in errors and logs (a path, no query); ``headers`` is
        a mapping or a function of the URL called before each attempt; ``decode`` turns the
        JSON body into what is returned (ValueError: not valid JSON).
        """
        target = url if isinstance(url, yarl.URL) else yarl.URL(url)
        attempts = policy.max_retries + 1
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=_ProviderWait(policy, self._rng),
            retry=tenacity.retry_if_exception_type(_Retryable),
            before_sleep=_log_retry(source, endpoint, policy),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    # The limiter is held for the request only, never while backing off.
                    async with limiter:
                        stats.api_calls += 1
                        if attempt.retry_state.attempt_number > 1:
                            stats.retries += 1
                        body, response_headers = await self._attempt(
                            source, endpoint, target, headers, policy, decode
                        )
        except _Retryable as failure:
            tries = "attempt" if attempts == 1 else "attempts"
            raise ProviderError(
                source,
                endpoint,
                f"gave up after {attempts} {tries}: {failure.reason}",
                status=failure.status,
            ) from failure
        stats.pages += 1
        return body, response_headers

    async def _attempt(
        self,
        source: str,
        endpoint: str,
        url: yarl.URL,
        headers: Mapping[str, str] | HeaderFactory,
        policy: RetryPolicy,
        decode: Callable[[bytes | bytearray], Any],
    ) -> tuple[Any, Mapping[str, str]]:
        request_headers = headers(url) if callable(headers) else headers
        try:
            async with self.session.get(
                url,
                headers=request_headers,
                timeout=policy.timeout,
                allow_redirects=False,
            ) as response:
                body = await self._read(source, endpoint, response)
                status = response.status
                content_type = response.headers.get("Content-Type", "")
                response_headers = response.headers.copy()
        except aiohttp.ClientSSLError as e:
            # A certificate problem does not go away by asking again.
            raise ProviderError(source, endpoint, f"TLS error: {e}") from e
        except TimeoutError as e:
            raise _Retryable(f"timed out after {policy.timeout_s:g}s", None) from e
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            raise _Retryable(f"{type(e).__name__}: {redact(str(e))}", None) from e
        except aiohttp.ClientResponseError as e:
            # aiohttp's parser refused the response (bad status line, bad Content-Length):
            # a broken proxy or connection, worth another try, then a provider error.
            first_line = str(e.message).strip().splitlines()[:1]
            raise _Retryable(f"malformed HTTP response: {_clip(' '.join(first_line))}", None) from e
        if status in RETRY_STATUSES:
            now = datetime.now(UTC)
            reason = f"HTTP {status}: {provider_message(body, content_type)}"
            wait = retry_after_s(response_headers.get("Retry-After"), now)
            if wait is not None:
                raise _Retryable(reason, status, wait, "Retry-After")
            wait = _rate_limit_reset_s(response_headers, now) if status == 429 else None
            raise _Retryable(reason, status, wait, "Fastly-RateLimit-Reset")
        if status in AUTH_STATUSES:
            raise ProviderAuthError(
                source, endpoint, provider_message(body, content_type), status=status
            )
        if 300 <= status < 400:
            where = response_headers.get("Location", "?")
            raise ProviderError(source, endpoint, f"unexpected redirect to {where}", status=status)
        if not 200 <= status < 300:
            message = provider_message(body, content_type)
            raise ProviderError(source, endpoint, message, status=status)
        if len(body) > OFF_LOOP_PARSE_BYTES:
            # Parsing a large page takes long enough to starve the event loop (the watchdog,
            # the other pulls): a worker thread does it.
            decoded = await asyncio.to_thread(
                self._decode, source, endpoint, body, content_type, decode
            )
            return decoded, response_headers
        return self._decode(source, endpoint, body, content_type, decode), response_headers

    async def _read(
        self, source: str, endpoint: str, response: aiohttp.ClientResponse
    ) -> bytearray:
        length = response.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise BadProviderDataError(
                source, endpoint, f"response of {length} bytes is larger than {MAX_BODY_BYTES}"
            )
        # One buffer grown in place: the body is held once, not as chunks and their join.
        body = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            if len(body) + len(chunk) > MAX_BODY_BYTES:
                raise BadProviderDataError(
                    source, endpoint, f"response is larger than {MAX_BODY_BYTES} bytes"
                )
            body += chunk
        return body

    @staticmethod
    def _decode(
        source: str,
        endpoint: str,
        body: bytes | bytearray,
        content_type: str,
        decode: Callable[[bytes | bytearray], Any],
    ) -> Any:
        kind = content_type.split(";")[0].strip().lower()
        if "html" in kind or (not kind.endswith("json") and body.lstrip()[:1] == b"<"):
            page = provider_message(body, "text/html")
            raise BadProviderDataError(
                source, endpoint, f"expected JSON, got {kind or 'an untyped body'} ({page})"
            )
        try:
            return decode(body)
        except ValueError as e:
            raise BadProviderDataError(
                source, endpoint, f"response is not valid JSON ({len(body)} bytes): {e}"
            ) from e
