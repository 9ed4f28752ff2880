"""Heavy work runs off the daemon's event loop (where it would starve the watchdog and every
other job): a large provider page is parsed in a worker thread, reports are rendered in one.
Checked by where the work ran, not by timing it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.providers.base import PullStats
from reconciler.providers.http import OFF_LOOP_PARSE_BYTES, HttpClient, RetryPolicy
from reconciler.reports import writer
from tests.reports.seed import NOW, Seeded, report_settings

__all__ = ["Seeded"]


@pytest.fixture
async def pages() -> AsyncIterator[str]:
    big = json.dumps({"data": ["x" * 100] * (OFF_LOOP_PARSE_BYTES // 100 + 10)})

    async def small(_: web.Request) -> web.Response:
        return web.json_response({"data": []})

    async def large(_: web.Request) -> web.Response:
        return web.Response(text=big, content_type="application/json")

    app = web.Application()
    app.router.add_get("/small", small)
    app.router.add_get("/large", large)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_large_page_is_parsed_in_a_worker_thread(pages: str) -> None:
    threads: list[int] = []
    from reconciler.providers.normalize import loads_exact as parse

    def recording(data: Any) -> Any:
        threads.append(threading.get_ident())
        return parse(data)

    loop_thread = threading.get_ident()
    async with HttpClient() as client:
        for path in ("/small", "/large"):
            body, _ = await client.get_json(
                "src",
                path,
                pages + path,
                headers={},
                limiter=asyncio.Semaphore(1),
                policy=RetryPolicy(max_retries=0),
                stats=PullStats(),
                decode=recording,
            )
            assert "data" in body
    small_on, large_on = threads
    assert small_on == loop_thread  # a small page is not worth a thread hop
    assert large_on != loop_thread


async def test_reports_are_rendered_in_a_worker_thread(
    engine: AsyncEngine, seeded: Seeded, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: dict[str, int] = {}
    for name in ("render_html", "render_json", "render_markdown", "build_figures"):
        original = getattr(writer, name)

        def recording(*args: Any, _name: str = name, _original: Any = original) -> Any:
            threads[_name] = threading.get_ident()
            return _original(*args)

        monkeypatch.setattr(writer, name, recording)
    settings = report_settings(tmp_path / "state", formats=["html", "md", "json"], months=3)
    await writer.write_report_set(engine, settings, NOW)
    assert set(threads) == {"render_html", "render_json", "render_markdown", "build_figures"}
    assert threading.get_ident() not in threads.values()
