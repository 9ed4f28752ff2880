"""The quiet plan's shapes, exactly: routine month closes as one line, services under their
account line, the summary line, --detailed-exitcode's threshold, and the Markdown plan."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from reconciler.domain import ItemCategory, LineStatus, Month, Observation, PlanItem, Severity
from reconciler.reconcile.plan import Plan, render_json, render_text, summary_line
from reconciler.reconcile.plan_markdown import escape, render_markdown

NOW = datetime(2024, 7, 15, 6, tzinfo=UTC)
FIN, COL = LineStatus.FINALIZED, LineStatus.COLLECTING


def item(
    kind: str,
    before: str | None,
    after: str | None,
    *,
    severity: Severity = Severity.WARNING,
    service: str = "",
    service_name: str = "",
    usage_type: str = "Europe Requests",
    month: str = "2024-07",
    status: tuple[LineStatus, LineStatus] = (COL, COL),
    category: ItemCategory = ItemCategory.DRIFT,
    source: str = "fastly",
) -> PlanItem:
    return PlanItem(
        category=category,
        kind=kind,
        severity=severity,
        fingerprint=f"{kind}-{source}-{usage_type}-{service}-{month}",
        source=source,
        provider="fastly",
        account="acct" if service else "",
        product="cdn_usage",
        usage_type=usage_type,
        region="Europe",
        service=service,
        month=Month.parse(month),
        before=Observation(Decimal(before), "", status[0]) if before else None,
        after=Observation(Decimal(after), "", status[1]) if after else None,
        service_name=service_name,
    )


def plan_of(*items: PlanItem) -> Plan:
    return Plan(3, NOW, items, {i.fingerprint: "h" for i in items})


def closes(n: int, month: str = "2024-06", changed: int = 0) -> list[PlanItem]:
    return [
        item(
            "finalized",
            "10",
            "10.5" if i < changed else "10",
            severity=Severity.INFO,
            usage_type=f"type {i}",
            month=month,
            status=(COL, FIN),
        )
        for i in range(n)
    ]


DECREASE = [
    item("decreased", "971.28", "647.52"),
    item("decreased", "187.776", "125.184", service="s1", service_name="www.example.com"),
    item("decreased", "240.921", "160.614", service="s2", service_name="static.example.com"),
    item("decreased", "36", "30", service="s3"),
]


def test_routine_month_closes_are_one_line_per_source_and_month() -> None:
    plan = plan_of(*closes(3), *closes(2, "2024-05", changed=1))
    assert render_text(plan) == (
        "reconciler has compared the latest usage with the last reviewed state and with the\n"
        "declared expectations. Review the items below; 'reconciler apply' acknowledges them.\n"
        "\n"
        "Symbols: + new   ~ changed   - disappeared   ! critical\n"
        "\n"
        "Source fastly (fastly):\n"
        "  Month closes (finalized within tolerance; recorded by 'apply'):\n"
        "    2024-05 finalized: 2 lines, 1 changed within tolerance\n"
        "    2024-06 finalized: 3 lines, total unchanged\n"
        "\n"
        "Plan: nothing to review; 2 month closes (5 lines finalized).\n"
    )
    assert sorted(plan.expected_acknowledgements()) == sorted(i.fingerprint for i in plan.items)


def test_service_lines_are_grouped_under_their_account_line_biggest_first() -> None:
    text = render_text(plan_of(*DECREASE, *closes(1)))
    assert text.splitlines()[5:11] == [
        "Source fastly (fastly):",
        "  ~ decreased          cdn_usage / Europe Requests [Europe]  2024-07",
        "      quantity: 971.28 → 647.52   (-323.76, -33.33%)   [collecting]",
        "      and 3 services: static.example.com (-80.307), www.example.com (-62.592), s3 (-6)",
        "  Month closes (finalized within tolerance; recorded by 'apply'):",
        "    2024-06 finalized: 1 line, total unchanged",
    ]
    assert text.splitlines()[-1] == "Plan: 4 decreased; 1 month close (1 line finalized)."


def test_service_lines_without_an_account_line_are_shown_with_their_names() -> None:
    text = render_text(plan_of(*DECREASE[1:]))
    assert (
        "  ~ decreased          cdn_usage / Europe Requests [Europe] service static.example.com"
        "  2024-07  (acct)"
    ) in text.splitlines()


def test_the_limit_counts_a_group_once_and_says_how_many_items_it_hid() -> None:
    other = [item("decreased", "5", "4", usage_type=f"u{i}") for i in range(2)]
    text = render_text(plan_of(*DECREASE, *other), limit_per_kind=1)
    assert "  … and 2 more decreased (see --json or --limit 0)" in text.splitlines()


@pytest.mark.parametrize(
    ("items", "minimum", "needs_review"),
    [
        (closes(3), Severity.WARNING, False),
        (closes(3), Severity.INFO, True),
        (DECREASE, Severity.WARNING, True),
        (DECREASE, Severity.CRITICAL, False),
        ([], Severity.INFO, False),
    ],
)
def test_detailed_exitcode_counts_items_at_or_above_the_minimum_severity(
    items: list[PlanItem], minimum: Severity, needs_review: bool
) -> None:
    assert plan_of(*items).needs_review(minimum) is needs_review


def test_summary_counts_review_items_and_month_closes_apart() -> None:
    assert summary_line(plan_of()) == "No changes. Usage matches expectations."
    assert summary_line(plan_of(DECREASE[0])) == "Plan: 1 decreased."


def test_json_marks_routine_items_names_services_and_stale_sources() -> None:
    import json

    data = json.loads(render_json(plan_of(DECREASE[1], *closes(1)), {"akamai": "HTTP 503"}))
    assert data["stale_sources"] == [{"source": "akamai", "error": "HTTP 503"}]
    assert [(d["kind"], d["routine"], d["service_name"]) for d in data["drift"]] == [
        ("decreased", False, "www.example.com"),
        ("finalized", True, ""),
    ]


def test_markdown_plan_exactly() -> None:
    assert render_markdown(plan_of(*DECREASE, *closes(2))) == (
        "### reconciler plan\n"
        "\n"
        "**Plan: 4 decreased; 1 month close (2 lines finalized).**\n"
        "\n"
        "#### Source fastly\n"
        "\n"
        "| | Change | Line | Month | Before | After | Difference |\n"
        "|---|---|---|---|---:|---:|---:|\n"
        "| \\~ | decreased (warning) | cdn\\_usage / Europe Requests \\[Europe\\]<br>and 3 "
        "services: static.example.com, www.example.com, s3 | 2024-07 | 971.28 | 647.52 | "
        "-323.76 (-33.33%) |\n"
        "\n"
        "- 2024-06 finalized: 2 lines, total unchanged\n"
        "\n"
        "_State serial 3; 'reconciler apply' acknowledges these items._\n"
    )


def test_markdown_escapes_provider_text_that_could_break_the_table() -> None:
    assert escape("a|b <script>\n`x` *y* [l](u)") == (
        "a\\|b \\<script\\> \\`x\\` \\*y\\* \\[l\\](u)"
    )


def test_markdown_stays_within_the_comment_size_and_says_what_it_left_out() -> None:
    many = [item("grew", "1", "2", usage_type=f"type {i:04}") for i in range(3000)]
    text = render_markdown(plan_of(*many), max_chars=20_000)
    assert len(text) <= 20_000
    shown = text.count("| ~ |") + text.count("| \\~ |")
    assert f"_… and {3000 - shown:,} more items not shown here" in text
    assert text.endswith("_State serial 3; 'reconciler apply' acknowledges these items._\n")


@pytest.mark.parametrize(
    ("start", "end", "status", "when"),
    [
        (None, None, FIN, "2024-05"),
        ("2024-05-01", "2024-05-31", FIN, "2024-05"),
        ("2024-05-01", "2024-05-15", FIN, "2024-05 (05-01..05-15)"),
        ("2024-05-16", "2024-05-31", FIN, "2024-05 (05-16..05-31)"),
        # The month to date, not a part of it.
        ("2024-05-01", "2024-05-15", COL, "2024-05"),
        ("2024-05-16", "2024-05-20", COL, "2024-05 (05-16..05-20)"),
    ],
)
def test_a_split_period_is_labelled_with_its_dates(
    start: str | None, end: str | None, status: LineStatus, when: str
) -> None:
    line = item("restated", "10", "11", month="2024-05", status=(status, status))
    line = dataclasses.replace(
        line,
        period_start=date.fromisoformat(start) if start else None,
        period_end=date.fromisoformat(end) if end else None,
    )
    assert line.when == when
    assert render_text(plan_of(line)).splitlines()[6] == (
        f"  ~ restated           cdn_usage / Europe Requests [Europe]  {when}"
    )


def test_an_item_whose_line_moved_on_shows_it_now() -> None:
    moved = dataclasses.replace(
        item("decreased", "971.28", "647.52"), current=Observation(Decimal("1100.5"), "", COL)
    )
    assert render_text(plan_of(moved)).splitlines()[6:9] == [
        "  ~ decreased          cdn_usage / Europe Requests [Europe]  2024-07",
        "      quantity: 971.28 → 647.52   (-323.76, -33.33%)   [collecting]",
        "      now: 1,100.5   [collecting]",
    ]
    still = dataclasses.replace(moved, current=moved.after)
    assert "now:" not in render_text(plan_of(still))
