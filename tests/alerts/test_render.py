"""Rendering: ordering, truncation, limits, escaping and number formats, all pure."""

from __future__ import annotations

import random
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.alerts.slack import (
    MAX_BLOCKS,
    MAX_HEADER_CHARS,
    MAX_SECTION_CHARS,
    MAX_TEXT_CHARS,
    clip,
    order_items,
    render_item,
    render_resolved_message,
    render_run_message,
    render_test_message,
    safe_link,
    slack_escape,
)
from reconciler.display import number as format_quantity
from reconciler.display import signed as format_signed
from reconciler.domain import (
    FindingKind,
    ItemCategory,
    LineStatus,
    Observation,
    PlanItem,
    Severity,
)
from reconciler.sandbox.slack import check_message
from tests.alerts.helpers import HOSTILE, HOSTILE_TEXT, make_item, plan_items, strings, unescaped

LABEL = "Full-Site Delivery / bandwidth [north-america] service svc-1"


def assert_within_limits(message: dict[str, Any]) -> None:
    check_message(message)  # the stand-in's Slack rules
    assert isinstance(message["text"], str) and message["text"].strip()
    assert len(message["text"]) <= MAX_TEXT_CHARS
    assert len(message["blocks"]) <= MAX_BLOCKS
    for block in message["blocks"]:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= MAX_HEADER_CHARS
        for text in [block.get("text"), *block.get("elements", [])]:
            if text is not None:
                assert len(text["text"]) <= MAX_SECTION_CHARS
                if text["type"] == "mrkdwn":
                    assert text["verbatim"] is True


def many_items(count: int, seed: int = 7) -> list[PlanItem]:
    rng = random.Random(seed)
    return [
        make_item(
            severity=rng.choice(list(Severity)),
            before=str(rng.randint(0, 10**6)),
            after=str(Decimal(rng.randint(0, 10**9)) / 100),
            fingerprint=f"fp{i:03d}",
        )
        for i in range(count)
    ]


def test_500_items_stay_within_limits_ordered_with_exact_more_count() -> None:
    items = many_items(500)
    message = render_run_message(source="prod", run_id=42, items=items)
    assert_within_limits(message)

    blocks = message["blocks"]
    assert blocks[0]["type"] == "header" and "prod" in blocks[0]["text"]["text"]
    assert "42" in blocks[0]["text"]["text"]
    item_texts = [b["text"]["text"] for b in blocks[3:] if b["type"] == "section"]
    expected = order_items(items)
    assert item_texts == [render_item(item) for item in expected[: len(item_texts)]]
    assert len(item_texts) >= 30

    shown = expected[: len(item_texts)]
    ranks = [item.severity.rank for item in shown]
    assert ranks == sorted(ranks, reverse=True)
    criticals = sum(item.severity is Severity.CRITICAL for item in items)
    assert criticals > len(shown)  # so every shown item must be critical
    assert all(item.severity is Severity.CRITICAL for item in shown)
    sizes = [abs(item.delta or Decimal(0)) for item in shown]
    assert sizes == sorted(sizes, reverse=True)

    more = blocks[-1]
    assert more["type"] == "context"
    assert more["elements"][0]["text"] == (
        f"…and {500 - len(item_texts)} more — run `reconciler plan`"
    )
    counts = blocks[1]["text"]["text"]
    for severity in Severity:
        number = sum(item.severity is severity for item in items)
        assert f"{number} {severity.value}" in counts
    assert counts.startswith("*500 items*")
    assert message["text"].startswith("reconciler: prod run 42: 500 items (")
    assert message["text"].endswith("…and 495 more")


def test_more_block_links_to_report_when_given() -> None:
    message = render_run_message(
        source="prod", run_id=1, items=many_items(60), report_url="https://r.example/run/1?a=1&b=2"
    )
    shown = sum(1 for b in message["blocks"][3:] if b["type"] == "section")
    assert message["blocks"][-1]["elements"][0]["text"] == (
        f"…and {60 - shown} more — <https://r.example/run/1?a=1&amp;b=2|open the full report>"
    )


def test_no_more_block_when_everything_fits() -> None:
    message = render_run_message(source="prod", run_id=1, items=many_items(3))
    assert [b["type"] for b in message["blocks"]] == ["header", "section", "divider"] + [
        "section"
    ] * 3
    assert "more" not in message["text"]


def test_order_is_severity_then_size_then_input_order() -> None:
    items = [
        make_item(severity=Severity.INFO, before="0", after="1000000", fingerprint="info-big"),
        make_item(severity=Severity.WARNING, before="10", after="5", fingerprint="warn-5"),
        make_item(severity=Severity.CRITICAL, before="0", after="1", fingerprint="crit-a"),
        make_item(severity=Severity.WARNING, before="10", after="40", fingerprint="warn-30"),
        make_item(severity=Severity.CRITICAL, before="1", after="0", fingerprint="crit-b"),
        make_item(severity=Severity.WARNING, before=None, after="9", fingerprint="warn-new"),
        make_item(severity=Severity.WARNING, before="20", after="15", fingerprint="warn-5b"),
    ]
    assert [i.fingerprint for i in order_items(items)] == [
        "crit-a",
        "crit-b",
        "warn-30",
        "warn-5",
        "warn-5b",
        "warn-new",
        "info-big",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "0"),
        ("-0", "0"),
        ("0.000", "0"),
        ("1234567.50", "1,234,567.5"),
        ("-1234", "-1,234"),
        ("1E+6", "1,000,000"),
        ("0.000001", "0.000001"),
        ("12345678901234567890.123456789", "12,345,678,901,234,567,890.123456789"),
        ("999.999", "999.999"),
    ],
)
def test_format_quantity_is_exact(value: str, expected: str) -> None:
    assert format_quantity(Decimal(value)) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("5", "+5"), ("-5", "-5"), ("0", "0"), ("1000.25", "+1,000.25")]
)
def test_format_signed(value: str, expected: str) -> None:
    assert format_signed(Decimal(value)) == expected


def test_item_shows_line_month_transition_values_delta_percent_and_kind() -> None:
    item = make_item(severity=Severity.CRITICAL, before="1000000", after="1250000.5")
    text = render_item(item)
    assert text == (
        ":red_circle: *Full-Site Delivery / bandwidth [north-america] service svc-1* · 2024-05\n"
        "`grew` · critical · 1,000,000 GB → 1,250,000.5 GB · Δ +250,000.5 GB (+25%)\n"
        "collecting → finalized · account `acct-1`\n"
        "usage grew"
    )


@pytest.mark.parametrize(
    ("item", "expected_line_2", "expected_line_3"),
    [
        (
            make_item(before=None, after="5", after_status=LineStatus.COLLECTING),
            "`grew` · warning · — → 5 GB",
            "new, collecting · account `acct-1`",
        ),
        (
            make_item(after=None, before_status=LineStatus.FINALIZED, kind="disappeared"),
            "`disappeared` · warning · 100 GB → — ",
            "gone, was finalized · account `acct-1`",
        ),
        (
            make_item(before="0", after="3", after_status=LineStatus.COLLECTING),
            "`grew` · warning · 0 GB → 3 GB · Δ +3 GB",
            "collecting · account `acct-1`",
        ),
        (
            make_item(
                category=ItemCategory.FINDING,
                kind=FindingKind.OVER_EXPECTATION,
                before="1000",
                after="1500",
                after_status=LineStatus.COLLECTING,
            ),
            "`over_expectation` · warning · expected 1,000 GB · observed 1,500 GB"
            " · Δ +500 GB (+50%)",
            "collecting · account `acct-1`",
        ),
    ],
)
def test_item_variants(item: PlanItem, expected_line_2: str, expected_line_3: str) -> None:
    lines = render_item(item).split("\n")
    assert lines[1].rstrip() == expected_line_2.rstrip()
    assert lines[2] == expected_line_3


def test_unit_change_omits_a_meaningless_delta() -> None:
    item = make_item()
    item = PlanItem(
        **{
            **{f: getattr(item, f) for f in PlanItem.__dataclass_fields__},
            "after": Observation(Decimal("2"), "TB", LineStatus.FINALIZED),
            "kind": "unit_changed",
        }
    )
    assert "100 GB → 2 TB · unit changed" in render_item(item)
    assert "Δ" not in render_item(item)


def test_hostile_strings_are_inert_everywhere() -> None:
    items = [
        make_item(text=HOSTILE_TEXT, kind=HOSTILE_TEXT, unit="<!here>", fingerprint=str(i))
        for i in range(60)
    ]
    messages = [
        render_run_message(
            source=HOSTILE_TEXT,
            run_id=1,
            items=items,
            resolved=items[:3],
            see_all_hint="reconciler plan <!channel>",
        ),
        render_run_message(
            source=HOSTILE_TEXT,
            run_id=1,
            items=items[:2],
            report_url="javascript:alert(1)<!channel>",
        ),
        render_resolved_message(source=HOSTILE_TEXT, items=items),
        render_test_message(hostname=HOSTILE_TEXT, version="<!channel>"),
    ]
    for message in messages:
        assert_within_limits(message)
        for text in strings(message):
            assert unescaped(text) == [], text
            for hostile in HOSTILE:
                if hostile != "&":  # a lone "&" is covered by unescaped()
                    assert hostile not in text
    assert "&lt;!channel&gt;" in messages[0]["blocks"][3]["text"]["text"]
    assert "&lt;https://evil|click&gt;" in messages[0]["text"]


def test_report_link_cannot_break_out() -> None:
    link = safe_link("https://r.example/a|<!channel> b>c&d", "open")
    assert link == "<https://r.example/a%7C%3C!channel%3E%20b%3Ec&amp;d|open>"
    assert safe_link("javascript:alert(1)", "x") is None
    assert safe_link("file:///etc/passwd", "x") is None
    assert safe_link("https://", "x") is None
    assert safe_link(None, "x") is None


def test_long_strings_are_clipped_without_splitting_entities() -> None:
    long = "&" * 5000
    item = make_item(text=long)
    message = render_run_message(source=long, run_id=10**30, items=[item], resolved=[item] * 500)
    assert_within_limits(message)
    for text in strings(message):
        assert unescaped(text) == []
    assert clip("&amp;&amp;", 7) == "&amp;…"
    assert clip("abc", 3) == "abc"
    assert slack_escape("<&>") == "&lt;&amp;&gt;"


def test_resolved_in_run_message_and_alone() -> None:
    resolved = [
        make_item(category=ItemCategory.FINDING, kind="projected_overage", fingerprint=str(i))
        for i in range(300)
    ]
    run = render_run_message(source="prod", run_id=3, items=[], resolved=resolved)
    assert_within_limits(run)
    listing = run["blocks"][-1]["text"]["text"]
    assert listing.startswith("*:white_check_mark: Resolved (300)*\n• Full-Site Delivery")
    shown = listing.count("\n• ")
    assert listing.endswith(f"…and {300 - shown} more resolved")

    assert run["text"] == "reconciler: prod run 3: no new items\n300 resolved"

    alone = render_resolved_message(source="prod", items=resolved[:2], run_id=3)
    assert_within_limits(alone)
    assert alone["text"] == "reconciler: prod · run 3: 2 findings resolved"
    assert alone["blocks"][1]["text"]["text"] == (
        "*:white_check_mark: 2 resolved*\n"
        f"• {LABEL} · 2024-05 · projected_overage\n• {LABEL} · 2024-05 · projected_overage"
    )


def test_test_message_is_labelled() -> None:
    message = render_test_message(hostname="edge-1", version="1.2.3")
    assert_within_limits(message)
    assert message["text"].startswith("[TEST]")
    assert "[TEST]" in message["blocks"][0]["text"]["text"]
    assert "1.2.3" in message["blocks"][1]["text"]["text"]


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(plan_items, max_size=80),
    resolved=st.lists(plan_items, max_size=5),
    source=st.text(max_size=300),
    run_id=st.integers(min_value=0, max_value=10**12),
)
def test_any_items_render_within_limits_and_escaped(
    items: list[PlanItem], resolved: list[PlanItem], source: str, run_id: int
) -> None:
    message = render_run_message(source=source, run_id=run_id, items=items, resolved=resolved)
    assert_within_limits(message)
    for text in strings(message):
        assert unescaped(text) == []
    sections = [b for b in message["blocks"] if b["type"] == "section"]
    shown = max(0, len(sections) - 1 - (1 if resolved else 0)) if items else 0
    if len(items) > shown:
        match = re.fullmatch(
            r"…and (\d+) more — run `reconciler plan`", message["blocks"][-1]["elements"][0]["text"]
        )
        assert match is not None and int(match.group(1)) == len(items) - shown


def test_max_items_limits_the_items_listed() -> None:
    from reconciler.alerts.slack import render_run_message as render

    items = [make_item(fingerprint=f"f{i}", text=f"item{i}") for i in range(12)]
    payload = render(source="s", run_id=1, items=items, max_items=5)
    listed = [
        b
        for b in payload["blocks"]
        if b["type"] == "section" and b["text"]["text"].startswith(":large_orange_circle: *item")
    ]
    assert len(listed) == 5
    assert "and 7 more" in str(payload["blocks"])
