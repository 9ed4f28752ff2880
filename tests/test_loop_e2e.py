"""The whole loop as a user runs it: the provider sandbox, ``reconciler run`` as a real process
on the sandbox's clock, the Slack stand-in, several simulated months, then ``plan``,
``alerts status`` and ``apply`` from the command line.

Months go by ten days at a time. Along the way the sandbox restates a finalized Akamai month,
a usage type spikes toward its commitment and a collecting Fastly month is lowered. The test
checks that the plan shows exactly those kinds (and the month-end finalizations: April, last
seen collecting on the 23rd, finalizes a week of usage higher, beyond the 1% finalize tolerance,
so its lines are ``finalized_changed``; May and June, last seen complete, finalize routinely),
that Slack
got one valid message per run with news (the restatement as critical), that the daemon wrote
its reports, that ``apply`` acknowledges everything and that acknowledged items stay quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from reconciler.alerts.outbox import outbox_t
from reconciler.cli.setup_cmds import to_toml
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.sandbox.slack import SlackStandIn, check_message
from reconciler.store.db import reader
from tests.loop_support import (
    CliResult,
    DaemonProcess,
    StateProbe,
    clean_environment,
    eventually,
    ordinary_totals,
    run_cli,
    sandbox_post,
)

START = date(2024, 4, 23)
STEP_DAYS = 10
STEPS = 8  # 2024-04-23 → 2024-07-12: April, May and June finalize on the way
END = date(2024, 7, 12)
SOURCES = ["fastly", "akamai"]
COMMITTED = "North America Bandwidth"
LOWERED = "Europe Requests"
RESTATED_PRODUCT = "1-ABC012"
WEBHOOK = "alerts"
SUMMARY = re.compile(r"^reconciler: (\S+) run (\d+): (\d+) items? \(([^)]*)\)$")


def scripted_events(spike_factor: Decimal) -> list[dict[str, Any]]:
    """What happens to the accounts, each injected just before the clock reaches its day."""
    return [
        {
            "kind": "restate",
            "provider": "akamai",
            "day": "2024-06-15",
            "month": "2024-05",
            "product": RESTATED_PRODUCT,
            "factor": "1.08",
        },
        {
            "kind": "spike",
            "provider": "fastly",
            "day": "2024-07-01",
            "month": "2024-07",
            "usage_type": COMMITTED,
            "factor": str(spike_factor),
        },
        {
            "kind": "decrease",
            "provider": "fastly",
            "day": "2024-07-05",
            "month": "2024-07",
            "usage_type": LOWERED,
            # Seen ten days after the last pull: below what two days had reached.
            "factor": "0.1",
        },
    ]


def loop_config(
    tmp_path: Path, sandbox: SandboxServer, edgerc: Path, commitment: Decimal
) -> dict[str, Any]:
    # The sandbox serves a day's usage on that day (no data lag).
    pulls = {"lookback_months": 3, "pull_every": "1s", "max_retries": 0, "data_lag": "0s"}
    return {
        "state": {"directory": str(tmp_path / "state")},
        "sources": [
            {
                "name": "fastly",
                "provider": "fastly",
                "base_url": sandbox.base_url,
                "token_env": "FASTLY_API_TOKEN",
                "finalize_after_days": 3,
                **pulls,
            },
            {
                "name": "akamai",
                "provider": "akamai",
                "base_url": sandbox.base_url,
                "edgerc": str(edgerc),
                "contracts": sandbox.contracts,
                **pulls,
            },
        ],
        "expectations": [
            {
                "name": f"{COMMITTED} commitment",
                "source": "fastly",
                "product": "cdn_usage",
                "usage_type": COMMITTED,
                "monthly_max": str(commitment),
                "unit": "GB",
            }
        ],
        # July's overage is forecast from its first two days (see expected_slack_summaries).
        "forecast": {"min_days": 2},
        "alerts": {"slack": {"min_severity": "warning"}},
        "reports": {
            "directory": str(tmp_path / "reports"),
            "every": "3s",
            "formats": ["html", "json"],
        },
        "daemon": {
            "listen": "",
            "jitter_s": 0,
            "first_pull_delay_s": 0,
            "alert_every_s": 1,
            "lease_ttl_s": 30,
            "stop_timeout_s": 10,
        },
    }


async def plan_json(config: Path, env: dict[str, str]) -> dict[str, Any]:
    result = await run_cli(config, "plan", "--no-refresh", "--json", env=env)
    assert result.code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def plan_items(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [*plan["drift"], *plan["findings"]]


async def outbox_states(state: StateProbe) -> list[str]:
    async with reader(state.engine).connect() as conn:
        query = select(outbox_t.c.state).order_by(outbox_t.c.id)
        return list((await conn.execute(query)).scalars())


async def wait_until_all_sent(state: StateProbe, count: int) -> None:
    async def probe() -> bool:
        states = await outbox_states(state)
        return len(states) >= count and set(states) == {"sent"}

    await eventually(probe, f"{count} alert messages marked sent")


def block_text(message: dict[str, Any]) -> str:
    parts: list[str] = []
    for block in message.get("blocks", []):
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(text["text"])
        for element in block.get("elements", []):
            if isinstance(element, dict) and "text" in element:
                parts.append(element["text"])
    return "\n".join(parts)


def restated_section(html: str) -> str:
    """The HTML report's "Restated lines" section ("" when it has none)."""
    start = html.find("<h2>Restated lines</h2>")
    if start == -1:
        return ""
    end = html.find("<h2>", start + 1)
    return html[start : end if end != -1 else len(html)]


def _stamp(path: Path) -> datetime:
    stamp = path.name.removeprefix("reconciler-report-").split(".")[0]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def fresh_report(directory: Path, since: datetime) -> Path | None:
    """The stem of the first html + json report pair written at or after ``since``."""
    stems = {
        p.with_suffix("")
        for p in directory.glob("reconciler-report-*.html")
        # A stamp is the write time cut to the second: not before ``since`` means written after.
        if _stamp(p) >= since and p.with_suffix(".json").is_file()
    }
    return min(stems, default=None)


async def wait_for_report(directory: Path, since: datetime) -> Path:
    async def probe() -> Path | None:
        return fresh_report(directory, since)

    return await eventually(probe, f"a report written since {since} in {directory}")


async def wait_for_messages(slack: SlackStandIn, count: int) -> None:
    async def probe() -> bool:
        return len(slack.received[WEBHOOK]) >= count

    await eventually(probe, f"{count} Slack messages (got {len(slack.received[WEBHOOK])})")


@dataclass
class LoopRun:
    """What a user saw along the way, captured once for the tests below."""

    commitment: Decimal = Decimal(0)
    first_plan: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    alerts_status: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Any] = field(default_factory=list)
    attempt_statuses: set[int] = field(default_factory=set)
    daemon_report_html: str = ""
    daemon_report_json: dict[str, Any] = field(default_factory=dict)
    cli_report: CliResult | None = None
    cli_report_html: str = ""
    applied: CliResult | None = None
    after_apply: dict[str, Any] = field(default_factory=dict)
    quiet_plan: dict[str, Any] = field(default_factory=dict)
    outbox_before_quiet_pull: int = -1
    outbox_after_quiet_pull: int = -1
    messages_after_stop: int = -1
    exit_code: int | None = None
    log: str = ""


async def run_the_loop(tmp_path: Path) -> LoopRun:
    run = LoopRun()
    async with contextlib.AsyncExitStack() as stack:
        scenario = named_scenario("demo", today=START)
        sandbox = await stack.enter_async_context(SandboxServer(scenario, host="127.0.0.1", port=0))
        slack = await stack.enter_async_context(SlackStandIn())

        # Commit to 20% above the busiest ordinary month; July's spike projects 1.5 times the
        # commitment by month end, while July to date stays well under it.
        ordinary = await ordinary_totals(
            sandbox,
            COMMITTED,
            [("2024-01", "2024-03"), ("2024-04", "2024-06"), ("2024-07", "2024-07")],
            date(2024, 8, 15),
        )
        commitment = (max(ordinary.values()) * Decimal("1.2")).quantize(Decimal(1))
        spike = (commitment * Decimal("1.5") / ordinary["2024-07"]).quantize(Decimal("0.01"))
        run.commitment = commitment
        pending_events = scripted_events(spike)

        edgerc = tmp_path / "sandbox.edgerc"
        edgerc.write_text(sandbox.edgerc_text())
        edgerc.chmod(0o600)
        config = tmp_path / "reconciler.toml"
        config.write_text(to_toml(loop_config(tmp_path, sandbox, edgerc, commitment)))
        env = clean_environment(
            {
                "FASTLY_API_TOKEN": sandbox.fastly_token,
                "SLACK_WEBHOOK_URL": slack.webhook_url(WEBHOOK),
            }
        )
        state = StateProbe(tmp_path / "state" / "state.db")
        stack.push_async_callback(state.close)
        daemon = DaemonProcess(config, sandbox.base_url, tmp_path / "daemon.log", env)
        stack.push_async_callback(daemon.close)

        # The first pulls import the accounts.
        since = datetime.now(UTC)
        await daemon.start()
        await state.wait_for_pulls(SOURCES, since, daemon)
        run.first_plan = await plan_json(config, env)

        # Months go by, ten days at a time; each event is injected just before its day.
        today = START
        restatement_seen_at: datetime | None = None
        for _ in range(STEPS):
            until = today + timedelta(days=STEP_DAYS)
            due = [e for e in pending_events if date.fromisoformat(e["day"]) <= until]
            if due:
                await sandbox_post(sandbox, "/_sandbox/events", due)
                pending_events = [e for e in pending_events if e not in due]
            clock = await sandbox_post(sandbox, "/_sandbox/clock", {"advance_days": STEP_DAYS})
            # Taken once the clock moved: a pull claimed from now on sees the new day.
            since = datetime.now(UTC)
            today = date.fromisoformat(clock["today"])
            assert today == until
            await state.wait_for_pulls(SOURCES, since, daemon)
            if any(e["kind"] == "restate" for e in due):
                restatement_seen_at = datetime.now(UTC)
        assert pending_events == [] and today == END
        assert restatement_seen_at is not None

        run.plan = await plan_json(config, env)
        expected_messages = expected_slack_summaries(plan_items(run.plan)).total()
        await wait_for_messages(slack, expected_messages)
        await wait_until_all_sent(state, expected_messages)
        run.messages = list(slack.received[WEBHOOK])
        run.rejected = list(slack.rejected)
        run.attempt_statuses = {a.status for a in slack.attempts}

        # The daemon's scheduled report written after the restatement was pulled, and the
        # one a user asks for over the simulated months.
        out = tmp_path / "asked.html"
        status, run.cli_report, stem = await asyncio.gather(
            run_cli(config, "alerts", "status", "--json", env=env),
            run_cli(
                config, "report", "--from", "2024-04", "--to", "2024-07", "--out", str(out), env=env
            ),
            wait_for_report(tmp_path / "reports", restatement_seen_at),
        )
        assert status.code == 0, status.stderr
        run.alerts_status = json.loads(status.stdout)
        run.daemon_report_html = stem.with_suffix(".html").read_text(encoding="utf-8")
        run.daemon_report_json = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        run.cli_report_html = out.read_text(encoding="utf-8") if out.is_file() else ""

        # apply, then a day later with no new events.
        run.applied = await run_cli(config, "apply", "--auto-approve", "--by", "e2e", env=env)
        run.after_apply = await plan_json(config, env)
        run.outbox_before_quiet_pull = len(await outbox_states(state))
        await sandbox_post(sandbox, "/_sandbox/clock", {"advance_days": 1})
        since = datetime.now(UTC)
        await state.wait_for_pulls(SOURCES, since, daemon)
        run.quiet_plan = await plan_json(config, env)
        run.outbox_after_quiet_pull = len(await outbox_states(state))

        run.exit_code = await daemon.stop()
        run.log = daemon.log()
        run.messages_after_stop = len(slack.received[WEBHOOK])
    return run


def expected_slack_summaries(items: list[dict[str, Any]]) -> Counter[tuple[str, int, str]]:
    """One message per run with news: the restatement (critical) in Akamai's run, the
    projected overage in Fastly's run at the start of July, the decrease in its run after, and
    April's finalized_changed lines in each source's run that saw April finalized. Restated
    (or changed) stats the provider marks not billable are info, below the routes' minimum."""
    restated = sum(1 for i in items if i["kind"] == "restated" and i["severity"] == "critical")
    decreased = sum(1 for i in items if i["kind"] == "decreased")
    changed = Counter(
        i["source"]
        for i in items
        if i["kind"] == "finalized_changed" and i["severity"] == "warning"
    )
    # Counted message by message: two runs may well carry the same summary (say, six
    # decreases in one and six finalized changes in another).
    return Counter(
        [
            ("akamai", restated, f"{restated} critical"),
            ("fastly", 1, "1 warning"),
            ("fastly", decreased, f"{decreased} warning"),
            # April's finalization beyond the tolerance, in each source's run of May 3rd.
            *((source, n, f"{n} warning") for source, n in changed.items()),
        ]
    )


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> LoopRun:
    return asyncio.run(run_the_loop(tmp_path_factory.mktemp("loop")))


def test_an_import_is_not_drift(loop: LoopRun) -> None:
    assert loop.first_plan["drift"] == [] and loop.first_plan["findings"] == []


def test_the_plan_shows_exactly_what_happened(loop: LoopRun) -> None:
    items = plan_items(loop.plan)
    kinds = Counter(i["kind"] for i in items)
    assert set(kinds) == {
        "restated",
        "decreased",
        "projected_overage",
        "finalized",
        "finalized_changed",
    }, kinds
    assert loop.plan["summary"] == dict(kinds)

    restated = [i for i in items if i["kind"] == "restated"]
    assert {(i["source"], i["product"], i["month"]) for i in restated} == {
        ("akamai", RESTATED_PRODUCT, "2024-05")
    }
    # A billed stat restated is critical; the stats Akamai marks not billable are info.
    assert {(i["usage_type"], i["severity"]) for i in restated} == {
        ("Total MB", "critical"),
        ("95/5 Mbps", "info"),
        ("Total Hits", "info"),
        ("Peak Mbps", "info"),
    }
    for item in restated:
        before, after = Decimal(item["before"]["quantity"]), Decimal(item["after"]["quantity"])
        assert after == before * Decimal("1.08")
        assert item["before"]["status"] == item["after"]["status"] == "finalized"

    decreased = [i for i in items if i["kind"] == "decreased"]
    assert {(i["source"], i["usage_type"], i["month"]) for i in decreased} == {
        ("fastly", LOWERED, "2024-07")
    }
    # The account-level line and each of the scenario's five services.
    assert len(decreased) == 6 and len({i["service"] for i in decreased}) == 6
    assert {i["severity"] for i in decreased} == {"warning"}
    for item in decreased:
        # Two days' usage before, twelve days at a tenth of the rate after.
        before, after = Decimal(item["before"]["quantity"]), Decimal(item["after"]["quantity"])
        assert after == before * Decimal("0.6")
        assert item["after"]["status"] == "collecting"

    (overage,) = [i for i in items if i["kind"] == "projected_overage"]
    assert (overage["source"], overage["month"], overage["severity"]) == (
        "fastly",
        "2024-07",
        "warning",
    )
    assert Decimal(overage["before"]["quantity"]) == loop.commitment
    assert Decimal(overage["after"]["quantity"]) > loop.commitment

    finalized = [i for i in items if i["kind"] == "finalized"]
    changed = [i for i in items if i["kind"] == "finalized_changed"]
    for source in SOURCES:
        months = {i["month"] for i in finalized + changed if i["source"] == source}
        assert months == {"2024-04", "2024-05", "2024-06"}, source
    assert {i["severity"] for i in finalized} == {"info"}
    for item in finalized:  # within 1% of the last collecting value
        before, after = Decimal(item["before"]["quantity"]), Decimal(item["after"]["quantity"])
        assert abs(after - before) * 100 <= before

    # April was last seen collecting on the 23rd: its volumes finalize a week's usage higher.
    assert {i["month"] for i in changed} == {"2024-04"}
    # Warnings, but info for stats the provider marks not billable.
    assert {i["severity"] for i in changed} <= {"warning", "info"}
    assert any(i["severity"] == "warning" for i in changed)
    assert {i["source"] for i in changed} == set(SOURCES)
    for item in changed:
        assert (item["before"]["status"], item["after"]["status"]) == ("collecting", "finalized")
        before, after = Decimal(item["before"]["quantity"]), Decimal(item["after"]["quantity"])
        assert abs(after - before) * 100 > before
        assert "beyond the finalize tolerance" in item["message"]


def test_slack_got_one_valid_message_per_run_with_news(loop: LoopRun) -> None:
    items = plan_items(loop.plan)
    expected = expected_slack_summaries(items)
    assert loop.rejected == [] and loop.attempt_statuses == {200}
    for message in loop.messages:
        check_message(message)  # what Slack itself would accept
    summaries = [SUMMARY.match(m["text"].splitlines()[0]) for m in loop.messages]
    assert all(summaries), [m["text"] for m in loop.messages]
    matched = [s for s in summaries if s is not None]
    assert Counter((s[1], int(s[3]), s[4]) for s in matched) == expected
    assert len({s[2] for s in matched}) == len(matched)  # never two messages for one run
    announced = [i for i in items if i["severity"] in ("warning", "critical")]
    assert sum(int(s[3]) for s in matched) == len(announced) > len(matched)
    assert not any("`finalized`" in block_text(m) for m in loop.messages)  # info stays out

    (restatement,) = [
        m
        for m in loop.messages
        if m["text"].startswith("reconciler: akamai") and "critical" in m["text"].splitlines()[0]
    ]
    text = block_text(restatement)
    critical = [i for i in items if i["kind"] == "restated" and i["severity"] == "critical"]
    assert text.count("`restated` · critical") == len(critical)
    assert "`restated` · info" not in text  # not-billable stats stay below the minimum
    assert "2024-05" in text

    status = loop.alerts_status
    assert status["waiting"] == 0 and status["failed"] == [], status
    assert status["counts"]["sent"] == expected.total()


def test_the_daemon_reports_name_the_restated_product(loop: LoopRun) -> None:
    (restated, *_) = [i for i in plan_items(loop.plan) if i["kind"] == "restated"]
    assert restated["product_name"] in restated_section(loop.daemon_report_html)
    lines = loop.daemon_report_json["restated"]
    assert {(r["product"], r["month"]) for r in lines} == {(RESTATED_PRODUCT, "2024-05")}
    assert loop.daemon_report_json["months"] == {"first": "2024-02", "last": "2024-07"}


def test_the_daemon_writes_html_and_json_reports(loop: LoopRun) -> None:
    assert loop.daemon_report_html.lstrip().lower().startswith("<!doctype html")
    assert loop.daemon_report_json["format_version"]
    assert {h["source"] for h in loop.daemon_report_json["health"]} == set(SOURCES)


def test_a_report_over_the_simulated_months_names_the_restated_product(loop: LoopRun) -> None:
    assert loop.cli_report is not None and loop.cli_report.code == 0, loop.cli_report
    (restated, *_) = [i for i in plan_items(loop.plan) if i["kind"] == "restated"]
    assert restated["product_name"] in restated_section(loop.cli_report_html)


def test_apply_acknowledges_and_acknowledged_items_stay_quiet(loop: LoopRun) -> None:
    applied = loop.applied
    assert applied is not None and applied.code == 0, applied
    count = len(plan_items(loop.plan))
    assert f"Apply complete! {count} items acknowledged." in applied.stdout
    assert plan_items(loop.after_apply) == []
    # A day later, with no new events: nothing to review, nothing queued for Slack again.
    assert plan_items(loop.quiet_plan) == [], loop.quiet_plan["summary"]
    assert loop.outbox_after_quiet_pull == loop.outbox_before_quiet_pull == len(loop.messages)
    assert loop.messages_after_stop == len(loop.messages)


def test_sigterm_stops_the_daemon_cleanly(loop: LoopRun) -> None:
    assert loop.exit_code == 0, loop.log
    assert "Traceback" not in loop.log, loop.log
    assert "stopped" in loop.log.rstrip().splitlines()[-1]
