"""The HTML report in a real headless Chromium, driven over the DevTools protocol.

Asserts on what the browser reports: no console errors or exceptions, no request other than
the file itself (and data: URIs), every chart's SVG laid out with a non-zero box on a laptop
and a phone, no sideways scrolling on the phone, a PDF when printed, and a screenshot that
decodes as a real PNG. With ``RECONCILER_WRITE_SCREENSHOT=1`` the realistic report's
screenshot is saved as docs/report.png.

Chromium is Debian's ``chromium`` package; without it the tests skip, unless ``$CI`` is set:
then they fail.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from reconciler.reports.data import ReportRequest, gather_report
from reconciler.reports.html import render_html
from reconciler.store.db import create_engine, upgrade
from tests.reports.browser import Page, chromium, find_chromium
from tests.reports.png import decode_png
from tests.reports.seed import HOSTILE_PRODUCT, NOW, report_settings, seed_state

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "report.png"
CHART_BOXES = """JSON.stringify(Array.from(document.querySelectorAll('svg.chart')).map(svg => {
  const box = svg.getBoundingClientRect(); return [svg.id, box.width, box.height]; }))"""


@pytest.fixture
def chromium_path() -> str:
    found = find_chromium()
    if found is None:
        reason = "chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + " (required in CI)")
        pytest.skip(reason)
    return found


async def _render(tmp_path: Path, *, hostile: bool) -> Path:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}", create=True)
    try:
        await upgrade(engine)
        await seed_state(engine, hostile=hostile)
        settings = report_settings(tmp_path, hostile=hostile)
        data = await gather_report(engine, settings, ReportRequest.last_months(6, NOW), NOW)
    finally:
        await engine.dispose()
    path = tmp_path / "report.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path


def _problems(page: Page) -> list[str]:
    problems = []
    for event in page.events("Runtime.consoleAPICalled"):
        if event.params.get("type") in ("error", "assert"):
            problems.append(f"console {event.params['type']}: {event.params.get('args')}")
    for event in page.events("Log.entryAdded"):
        entry = event.params.get("entry", {})
        if entry.get("level") == "error":
            problems.append(f"log {entry.get('level')}: {entry.get('text')} {entry.get('url')}")
    for event in page.events("Runtime.exceptionThrown"):
        problems.append(f"exception: {event.params.get('exceptionDetails')}")
    for event in page.events("Page.javascriptDialogOpening"):
        problems.append(f"dialog: {event.params.get('message')}")
    return problems


def _requests(page: Page, allowed: str) -> list[str]:
    urls = [e.params["request"]["url"] for e in page.events("Network.requestWillBeSent")]
    assert allowed in urls
    return [url for url in urls if url != allowed and not url.startswith("data:")]


async def _chart_boxes(page: Page) -> list[Any]:
    import json

    boxes = json.loads(await page.evaluate(CHART_BOXES))
    assert len(boxes) == 6 + 6 + 2
    return [box for box in boxes if not (box[1] > 0 and box[2] > 0)]


async def test_report_in_chromium(tmp_path: Path, chromium_path: str) -> None:
    report = await _render(tmp_path, hostile=False)
    url = report.as_uri()
    async with chromium(chromium_path, tmp_path / "browser") as browser:
        page = await browser.new_page()
        await page.viewport(1280, 900)
        await page.load(url)
        assert await _chart_boxes(page) == []
        assert await page.evaluate("document.title") == "reconciler report 2024-01 – 2024-06"
        height = await page.evaluate("document.documentElement.scrollHeight")
        shot = await page.screenshot({"x": 0, "y": 0, "width": 1280, "height": min(height, 1700)})
        image = decode_png(shot, max_rows=700)
        assert (image.width, image.height) == (1280, min(height, 1700))
        assert len(image.colors()) > 50  # charts, chips and text, not a blank page
        assert image.pixel(10, 10)[:3] == (15, 23, 42)  # the dark header band
        if os.environ.get("RECONCILER_WRITE_SCREENSHOT"):
            DOCS_SCREENSHOT.write_bytes(shot)

        await page.viewport(390, 844, mobile=True)
        await page.load(url)
        assert await _chart_boxes(page) == []
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways on a phone by {overflow}px"
        phone = decode_png(await page.screenshot(), max_rows=400)
        assert phone.width == 780 and len(phone.colors()) > 20

        pdf = await page.pdf()
        assert pdf.startswith(b"%PDF-") and len(pdf) > 10_000
        assert _problems(page) == []
        assert _requests(page, url) == []


async def test_hostile_strings_do_not_run_in_chromium(tmp_path: Path, chromium_path: str) -> None:
    report = await _render(tmp_path, hostile=True)
    url = report.as_uri()
    async with chromium(chromium_path, tmp_path / "browser") as browser:
        page = await browser.new_page()
        await page.viewport(1280, 900)
        await page.load(url)
        counts = await page.evaluate(
            "[document.scripts.length, document.images.length,"
            " document.querySelectorAll('[onerror], b, i, u').length]"
        )
        assert counts == [0, 0, 0]
        body = await page.evaluate("document.body.innerText")
        assert HOSTILE_PRODUCT in body
        assert await _chart_boxes(page) == []
        assert _problems(page) == []
        assert _requests(page, url) == []


async def test_the_checks_catch_a_leaky_page(tmp_path: Path, chromium_path: str) -> None:
    """The same assertions fail on a page that loads a remote image and runs a script."""
    page_file = tmp_path / "leaky.html"
    page_file.write_text(
        "<!DOCTYPE html><html><head><title>x</title></head><body>"
        '<img src="http://127.0.0.1:9/pixel.png" alt="">'
        "<script>console.error('boom')</script></body></html>",
        encoding="utf-8",
    )
    async with chromium(chromium_path, tmp_path / "browser") as browser:
        page = await browser.new_page()
        await page.load(page_file.as_uri())
        assert _requests(page, page_file.as_uri()) == ["http://127.0.0.1:9/pixel.png"]
        assert any("boom" in problem for problem in _problems(page))
