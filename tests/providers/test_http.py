"""The HTTP layer: Retry-After, backoff, error messages, limits, TLS, cursor guards."""

from __future__ import annotations

import asyncio
import random
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from reconciler.errors import BadProviderDataError, ProviderError
from reconciler.providers.base import PullStats
from reconciler.providers.http import HttpClient, RetryPolicy, provider_message, retry_after_s
from reconciler.providers.paging import CursorGuard

NOW = datetime(2024, 7, 10, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Wed, 10 Jul 2024 12:00:30 GMT", 30.0),
        ("Wed, 10 Jul 2024 11:00:00 GMT", 0.0),  # in the past: now
        (None, None),
        ("", None),
        ("soon", None),
        ("-3", None),
    ],
)
def test_retry_after_seconds_or_http_date(header: str | None, expected: float | None) -> None:
    assert retry_after_s(header, NOW) == expected


def test_backoff_has_full_jitter_grows_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=5, cap_s=4.0, base_s=0.5)
    rng = random.Random(3)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [policy.delay_s(retry, None, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # the whole range is used: full jitter
        assert min(delays) < ceiling * 0.2
    assert policy.delay_s(1, 2.5, rng) == 2.5  # Retry-After wins...
    assert policy.delay_s(1, 120.0, rng) == 4.0  # ...up to the cap


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Fastly legacy
        (
            b'{"msg": "Provided credentials are missing or invalid", "detail": "bad token"}',
            "Provided credentials are missing or invalid; bad token",
        ),
        # Fastly / Akamai problem+json
        (
            b'{"type": "https://api.fastly.com/errors/400", "title": "Bad Request", '
            b'"detail": "start_month is required", "status": 400}',
            "Bad Request; start_month is required",
        ),
        # Fastly errors list
        (
            b'{"errors": [{"code": "invalid_parameter", "detail": "limit too big", "id": "1", '
            b'"status": "400", "title": "Bad Request"}]}',
            "Bad Request: limit too big (invalid_parameter)",
        ),
        # Akamai Billing API
        (
            b'{"type": "/billing/error-types/1", "title": "Bad Request", "incidentId": "x", '
            b'"errors": [{"type": "/billing/error-types/1", '
            b'"title": "Field \'start\' is invalid"}]}',
            "Bad Request; Field 'start' is invalid",
        ),
        # Akamai Contract API
        (
            b'{"type": "/contract-api/error-types/E400", "status": "400", "title": '
            b'"Erroneous data input.", "errors": [{"title": "from", "detail": "too old"}]}',
            "Erroneous data input.; from: too old",
        ),
        (b"<html><head><title>502 Bad Gateway</title></head></html>", "HTML page: 502 Bad Gateway"),
        (b"upstream connect error", "upstream connect error"),
        (b"", "(empty body)"),
    ],
)
def test_provider_message_reads_every_error_shape(body: bytes, expected: str) -> None:
    assert provider_message(body) == expected


def test_provider_message_is_short_and_redacted() -> None:
    from reconciler.logs import register_secret

    register_secret("s3cr3t-value-123")
    message = provider_message(b'{"detail": "token s3cr3t-value-123 rejected"}')
    assert message == "token *** rejected"
    message = provider_message(b'{"title": "' + b"x" * 1000 + b'"}')
    assert len(message) == 300 and message.endswith("…")


def test_cursor_guard_stops_repeats_and_pages_past_total() -> None:
    guard = CursorGuard("src", "/x", limit=10)
    assert guard.advance("", "a", 10, 25) == "a"
    assert guard.advance("a", "b", 10, 25) == "b"
    with pytest.raises(BadProviderDataError, match='"a" was already used'):
        guard.advance("b", "a", 5, 25)

    guard = CursorGuard("src", "/x", limit=10)
    cursor = ""
    with pytest.raises(BadProviderDataError, match="page 2 repeats the records of page 1"):
        for index in range(10):  # empty pages under fresh cursors never end the pull
            cursor = guard.advance(cursor, f"c{index}", 0, 25, []) or ""
    guard = CursorGuard("src", "/x", limit=10)
    with pytest.raises(BadProviderDataError, match="next_cursor is not a string"):
        guard.advance("", 17, 1, None)


async def test_http_client_must_be_open() -> None:
    client = HttpClient()
    with pytest.raises(RuntimeError, match="not open"):
        await client.get_json(
            "src",
            "/x",
            "http://127.0.0.1:9/x",
            headers={},
            limiter=asyncio.Semaphore(1),
            policy=RetryPolicy(),
            stats=PullStats(),
        )


def make_certificate(key: Path, cert: Path) -> None:
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
async def self_signed_server(tmp_path: Path) -> AsyncIterator[int]:
    """An https server on loopback with a certificate nobody trusts."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    await asyncio.to_thread(make_certificate, key, cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"data": []})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_certificates_are_verified_and_not_retried(
    self_signed_server: int, http: HttpClient
) -> None:
    stats = PullStats()
    with pytest.raises(ProviderError, match="TLS error") as caught:
        async with asyncio.timeout(20):
            await http.get_json(
                "src",
                "/billing/v3/usage-metrics",
                f"https://127.0.0.1:{self_signed_server}/billing/v3/usage-metrics",
                headers={},
                limiter=asyncio.Semaphore(1),
                policy=RetryPolicy(max_retries=3, cap_s=0.01),
                stats=stats,
            )
    assert "certificate" in str(caught.value).lower()
    assert stats.api_calls == 1 and stats.retries == 0
