"""Hostile provider and config strings stay text in HTML, SVG, Markdown, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.reports.data import ReportRequest, gather_report
from reconciler.reports.figures import build_figures
from reconciler.reports.focus import focus_rows, render_focus_csv
from reconciler.reports.html import render_html
from reconciler.reports.json_report import render_json
from reconciler.reports.markdown import md, render_markdown
from reconciler.reports.model import ReportData
from reconciler.reports.svg import text as svg_escape
from tests.reports.helpers import parse_html, parse_svg, svg_elements, svg_text
from tests.reports.seed import (
    HOSTILE_MESSAGE,
    HOSTILE_PRODUCT,
    HOSTILE_SERVICE,
    HOSTILE_USAGE,
    MONTHS,
    NOW,
    report_settings,
    seed_state,
)

SAFE_SVG_ELEMENTS = {
    "svg",
    "title",
    "defs",
    "pattern",
    "rect",
    "line",
    "text",
    "g",
    "path",
    "circle",
}


@pytest.fixture
async def hostile(engine: AsyncEngine, tmp_path: Path) -> ReportData:
    await seed_state(engine, hostile=True)
    settings = report_settings(tmp_path / "state", hostile=True)
    return await gather_report(engine, settings, ReportRequest.last_months(6, NOW), NOW)


async def test_html_shows_hostile_strings_as_text(hostile: ReportData) -> None:
    document = render_html(hostile)
    parsed = parse_html(document)
    names = parsed.names()
    assert "script" not in names and "img" not in names and "b" not in names and "i" not in names
    assert "u" not in names
    assert not [a for _, attrs in parsed.tags for a in attrs if a.startswith("on")]
    text = parsed.all_text()
    for hostile_string in (HOSTILE_PRODUCT, HOSTILE_USAGE, HOSTILE_MESSAGE, "<u>mallory</u>"):
        assert hostile_string in text, hostile_string
    assert "<i>evil</i> & co" in text  # an expectation name from the config
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document


async def test_svg_escapes_its_text(hostile: ReportData) -> None:
    figures = build_figures(hostile)
    image = next(f for s, f in figures.monthly if s.product == "image_optimizer")
    root = parse_svg(image.svg)  # strict XML: nothing broke out of an attribute or element
    assert svg_elements(root) <= SAFE_SVG_ELEMENTS
    assert HOSTILE_PRODUCT in svg_text(root) and HOSTILE_USAGE in svg_text(root)
    for figure in figures.all():
        assert svg_elements(parse_svg(figure.svg)) <= SAFE_SVG_ELEMENTS
    assert "<script" not in image.svg


def test_svg_text_drops_what_xml_cannot_hold() -> None:
    escaped = svg_escape("a\x00b\x1fc\ud800\"<>&'")
    assert escaped == "abc&quot;&lt;&gt;&amp;&#x27;"
    parse_svg(f'<svg xmlns="http://www.w3.org/2000/svg"><text>{escaped}</text></svg>')


async def test_markdown_keeps_hostile_strings_inert(hostile: ReportData) -> None:
    markdown = render_markdown(hostile, "r")
    text = markdown.text
    assert "<" not in text  # no raw HTML at all
    assert "[link](" not in text and "\\[link\\](javascript:alert(4))" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "\\`tick\\` \\*star\\*" in text
    header_cells = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header_cells = None
            continue
        # Every row of a table has as many unescaped pipes as its header.
        cells = len(re.findall(r"(?<!\\)\|", line))
        header_cells = header_cells or cells
        assert cells == header_cells, line
    for svg in markdown.charts.values():
        assert svg_elements(parse_svg(svg)) <= SAFE_SVG_ELEMENTS


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("# heading", "\\# heading"),
        ("1. item", "1\\. item"),
        ("- item", "\\- item"),
        ("a | b", "a \\| b"),
        ("![x](http://evil/)", "!\\[x\\](http://evil/)"),
        ("line\nbreak\r\n| x |", "line break \\| x \\|"),
        ("snake_case _em_", "snake_case \\_em\\_"),
        ("back\\slash", "back\\\\slash"),
        ("&amp;", "&amp;amp;"),
    ],
)
def test_md_escape(raw: str, escaped: str) -> None:
    assert md(raw) == escaped


async def test_json_and_csv_keep_strings_verbatim(engine: AsyncEngine, hostile: ReportData) -> None:
    data = json.loads(render_json(hostile))
    names = {s["product_name"] for s in data["series"]}
    assert HOSTILE_PRODUCT in names
    rows = list(csv.DictReader(io.StringIO(render_focus_csv(
        await focus_rows(engine, MONTHS[0], MONTHS[-1])
    ))))  # fmt: skip
    assert HOSTILE_PRODUCT in {row["ServiceName"] for row in rows}
    assert HOSTILE_USAGE in {row["SkuMeter"] for row in rows}
    assert HOSTILE_SERVICE not in {row["ServiceName"] for row in rows}  # per-service: not rows
