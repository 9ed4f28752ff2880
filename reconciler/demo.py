"""``reconciler demo``: months of billing life, fast-forwarded against the embedded sandbox.

No configuration, credentials or network: the provider sandbox runs in-process on loopback.
A Fastly account and an Akamai contract are pulled daily while the simulated clock moves;
a reviewer applies the plan at each month start; along the way the sandbox restates a
finalized month, lowers a collecting month and pushes a usage type toward its commitment.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.alerts.delivery import DeliveryPolicy, Pacer, deliver_due
from reconciler.alerts.hook import outbox_hook
from reconciler.alerts.outbox import outbox_t
from reconciler.alerts.routes import WebhookResolver
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.demo_contract import demo_budget, demo_rates, demo_teams
from reconciler.display import plural
from reconciler.domain import Month, canonical_decimal
from reconciler.money import display
from reconciler.providers.http import HttpClient
from reconciler.reconcile.measures import MeasureKind, PeriodValue, month_value
from reconciler.reconcile.plan import Plan, render_text
from reconciler.refresh import refresh_source
from reconciler.reports.costs import gather_costs
from reconciler.reports.writer import write_report_set
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.costs import projected_invoices
from reconciler.store.db import create_engine, reader, upgrade
from reconciler.store.ingest import lines_t
from reconciler.store.review import apply_acknowledgements, build_plan

PERCENTILE_PRODUCT = "1-ABC012"  # Web Application Accelerator
PERCENTILE_STAT = "95/5 Mbps"
START = date(2024, 4, 1)
END = date(2024, 7, 15)
LAST_REVIEW = date(2024, 7, 1)
SANDBOX_PORT = 8787
COMMITTED_USAGE = "North America Bandwidth"
Progress = Callable[[date, int, int], None]


@dataclass
class DemoResult:
    directory: Path
    plan: Plan
    report_paths: list[Path]
    messages: list[dict[str, Any]]
    delivered: int
    pulls: int
    events: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    teams: str = ""


def demo_events() -> list[dict[str, Any]]:
    """What the sandbox does to the accounts along the way (after the last review)."""
    return [
        {
            "kind": "spike",
            "provider": "fastly",
            "day": "2024-07-05",
            "usage_type": COMMITTED_USAGE,
            "month": "2024-07",
            "factor": "3",
        },
        {
            "kind": "restate",
            "provider": "akamai",
            "day": "2024-07-08",
            "month": "2024-05",
            "product": "1-ABC012",
            "factor": "1.08",
        },
        {
            "kind": "decrease",
            "provider": "fastly",
            "day": "2024-07-10",
            "month": "2024-07",
            "usage_type": "Europe Requests",
            "factor": "0.6",
        },
    ]


def _describe(event: dict[str, Any]) -> str:
    what = {
        "spike": "usage of {usage_type} triples in {month} (toward its commitment)",
        "restate": "Akamai restates finalized {month} of product {product} (+8%)",
        "decrease": "Fastly lowers collecting {month} {usage_type} (-40%)",
    }[event["kind"]]
    return f"{event['day']}: " + what.format(**event)


def base_config(base_url: str, contracts: list[str], edgerc: str) -> dict[str, Any]:
    return {
        "sources": [
            {
                "name": "fastly",
                "provider": "fastly",
                "base_url": base_url,
                "token_env": "FASTLY_API_TOKEN",
                "finalize_after_days": 3,
                "lookback_months": 3,
                "pull_every": "1d",
                "data_lag": "0s",  # the sandbox serves a day's usage on that day
            },
            {
                "name": "akamai",
                "provider": "akamai",
                "base_url": base_url,
                "edgerc": edgerc,
                "contracts": contracts,
                "lookback_months": 3,
                "pull_every": "1d",
                "data_lag": "0s",  # the sandbox serves a day's usage on that day
                "invoices": True,  # the Invoicing API: its invoice totals are audited too
            },
        ],
        "teams": demo_teams(),
        "reports": {"formats": ["html", "md", "json", "focus-csv"], "months": 6},
        "daemon": {"listen": "127.0.0.1:9109"},
    }


async def highest_ordinary_month(sandbox: SandboxServer, http: HttpClient) -> Decimal:
    """The largest full-month total of the committed usage type before any event."""
    today = sandbox.state.today
    sandbox.state.set_today(END)
    highest = Decimal(0)
    try:
        for start, end in (("2024-01", "2024-03"), ("2024-04", "2024-06")):
            url = f"{sandbox.base_url}/billing/v3/usage-metrics?start_month={start}&end_month={end}"
            async with http.session.get(url, headers={"Fastly-Key": sandbox.fastly_token}) as r:
                body = json.loads(await r.text(), parse_float=Decimal)
            for record in body["data"]:
                if record["usage_type"] == COMMITTED_USAGE:
                    highest = max(highest, Decimal(str(record["quantity"])))
    finally:
        sandbox.state.set_today(today)
    return highest


def highest_percentile(sandbox: SandboxServer) -> Decimal:
    """The largest monthly 95/5 of Web Application Accelerator before any event."""
    data = sandbox.state.akamai
    contract = next(iter(data.contracts.values()))
    product = contract.product(PERCENTILE_PRODUCT)
    highest = Decimal(0)
    if product is None:
        return highest
    for month in Month(2024, 1).range_to(Month.of(END)):
        for period in data.periods(contract.contract_id, product, month, END, []):
            for stat in period["stats"]:
                if stat["statType"] == PERCENTILE_STAT:
                    highest = max(highest, Decimal(str(stat["value"])))
    return highest


def expectations(commitment: Decimal, percentile_commit: Decimal) -> list[dict[str, Any]]:
    return [
        {
            "name": f"{COMMITTED_USAGE} commitment",
            "source": "fastly",
            "product": "cdn_usage",
            "usage_type": COMMITTED_USAGE,
            "monthly_max": str(commitment),
            "unit": "GB",
        },
        {
            # Akamai sends each month in two periods: the 95/5 is the larger, never the sum.
            "name": "WAA 95/5 commitment",
            "source": "akamai",
            "product": PERCENTILE_PRODUCT,
            "usage_type": PERCENTILE_STAT,
            "monthly_max": str(percentile_commit),
        },
    ]


def config_toml(data: dict[str, Any]) -> str:
    from reconciler.cli.setup_cmds import to_toml

    header = (
        "# Written by 'reconciler demo'. The sources point at the provider sandbox.\n"
        "# To pull again,\n"
        f"# run 'reconciler sandbox serve --scenario demo --today {END} --port {SANDBOX_PORT} "
        "--edgerc-out sandbox.edgerc'\n"
        "# and 'FASTLY_API_TOKEN=sandbox-fastly-token reconciler plan --as-of "
        f"{END}' (the demo's injected events are not replayed).\n\n"
    )
    return header + to_toml(data) + "\n"


async def run_demo(
    directory: Path,
    *,
    progress: Progress | None = None,
    environ: dict[str, str] | None = None,
) -> DemoResult:
    """Run the whole demo into ``directory`` (created fresh by ``prepare_directory``)."""
    state_dir = directory / ".reconciler"
    database_url = f"sqlite+aiosqlite:///{(state_dir / 'state.db').resolve()}"
    scenario = named_scenario("demo", today=START).replace(akamai_split_periods=True)
    async with SandboxServer(scenario, host="127.0.0.1", port=0) as sandbox:
        edgerc = directory / "sandbox.edgerc"
        edgerc.write_text(sandbox.edgerc_text())
        edgerc.chmod(0o600)
        contracts = sandbox.contracts
        live = base_config(sandbox.base_url, contracts, str(edgerc))
        live["state"] = {"directory": str(state_dir.resolve())}
        environment = {"FASTLY_API_TOKEN": sandbox.fastly_token, **(environ or {})}
        engine = create_engine(database_url, create=True)
        try:
            await upgrade(engine)
            result = await _simulate(engine, sandbox, live, environment, directory, progress)
        finally:
            await engine.dispose()
    saved = base_config(f"http://127.0.0.1:{SANDBOX_PORT}", contracts, "sandbox.edgerc")
    saved["expectations"] = live["expectations"]
    saved["rates"] = live["rates"]
    (directory / "reconciler.toml").write_text(config_toml(saved), encoding="utf-8")
    edgerc_text = edgerc.read_text().replace(sandbox.address, f"127.0.0.1:{SANDBOX_PORT}")
    edgerc.write_text(edgerc_text)
    return result


async def _simulate(
    engine: AsyncEngine,
    sandbox: SandboxServer,
    config: dict[str, Any],
    environ: dict[str, str],
    directory: Path,
    progress: Progress | None,
) -> DemoResult:
    days = (END - START).days + 1
    pulls = 0
    events = demo_events()
    async with HttpClient() as http:
        # Commit to 20% above the busiest ordinary month: July's spike will break it.
        commitment = (await highest_ordinary_month(sandbox, http) * Decimal("1.2")).quantize(1)
        # 10% above the highest monthly 95/5: well under the sum of a month's two periods.
        percentile_commit = (highest_percentile(sandbox) * Decimal("1.1")).quantize(Decimal(1))
        config["expectations"] = [*expectations(commitment, percentile_commit), demo_budget()]
        config["rates"] = demo_rates()
        settings = settings_from_mapping(config)
        sandbox.state.add_events(events)
        for offset in range(days):
            today = START + timedelta(days=offset)
            sandbox.state.set_today(today)
            if today.day == 1 and today != START:
                await _review(engine, settings, today)
            clock = _fixed_clock(datetime.combine(today, time(6, 0), tzinfo=UTC))
            for source in ("fastly", "akamai"):
                outcome = await refresh_source(
                    engine,
                    settings,
                    source,
                    http,
                    today=today,
                    clock=clock,
                    environ=environ,
                    alert_hook=outbox_hook(settings),
                )
                if not outcome.ok:
                    raise RuntimeError(f"demo pull failed: {outcome.error}")
                pulls += 1
            if progress is not None:
                progress(today, offset + 1, days)
    now = datetime.combine(END, time(6, 0), tzinfo=UTC)
    async with reader(engine).connect() as conn:
        plan = await build_plan(conn, now)
        plan = replace(plan, invoices=tuple(await projected_invoices(conn, settings)))
    report_settings = settings.model_copy(
        update={"reports": settings.reports.model_copy(update={"directory": directory / "reports"})}
    )
    paths = await write_report_set(engine, report_settings, now)
    messages = await _pending_messages(engine)
    delivered = await _deliver_if_configured(engine, settings, environ)
    notes = await percentile_notes(engine, percentile_commit)
    teams = await team_note(engine, settings, now)
    return DemoResult(
        directory,
        plan,
        paths,
        messages,
        delivered,
        pulls,
        [_describe(e) for e in events],
        notes,
        teams,
    )


async def team_note(engine: AsyncEngine, settings: Settings, now: datetime) -> str:
    """The last reviewed month by team, and how the teams add up to the sources' bill."""
    month = Month.of(LAST_REVIEW) - 1
    async with reader(engine).connect() as conn:
        costs = await gather_costs(conn, settings, month, month, (), now)
    if costs.showback is None:
        return ""
    teams = " + ".join(
        f"{row.team} {display(row.amount, row.currency)}" for row in costs.showback.rows()
    )
    sources = " + ".join(f"{m.source} {display(m.amount, m.currency)}" for m in costs.months)
    total = sum((row.amount for row in costs.showback.rows()), Decimal(0))
    currency = costs.showback.rows()[0].currency
    return f"{month} by team: {teams} = {display(total, currency)} ({sources})"


async def percentile_notes(engine: AsyncEngine, commit: Decimal) -> list[str]:
    """How the split 95/5 months were measured: the larger period, not the sum."""
    c = lines_t.c
    query = (
        select(c.month, c.quantity, c.status)
        .where(
            c.source == "akamai",
            c.product == PERCENTILE_PRODUCT,
            c.usage_type == PERCENTILE_STAT,
            c.present.is_(True),
        )
        .order_by(c.month, c.period_start)
    )
    months: dict[str, list[Decimal]] = {}
    statuses: dict[str, str] = {}
    async with reader(engine).connect() as conn:
        for row in (await conn.execute(query)).all():
            months.setdefault(row.month, []).append(row.quantity)
            statuses[row.month] = row.status
    notes = []
    for month, values in months.items():
        value = month_value(MeasureKind.PERCENTILE, [PeriodValue(START, v) for v in values])
        parts = " and ".join(canonical_decimal(v) for v in values)
        bound = "at least " if statuses[month] == "collecting" else ""
        notes.append(
            f"{month}: {plural(len(values), 'period')} at {parts} Mbps -> {bound}"
            f"{canonical_decimal(value)} (summed: {canonical_decimal(sum(values, Decimal(0)))}); "
            f"commitment {commit}"
        )
    return notes


def _fixed_clock(moment: datetime) -> Callable[[], datetime]:
    def clock() -> datetime:
        return moment

    return clock


async def _review(engine: AsyncEngine, settings: Settings, today: date) -> None:
    """The monthly review: a reviewer applies the plan."""
    now = datetime.combine(today, time(5, 0), tzinfo=UTC)
    async with reader(engine).connect() as conn:
        plan = await build_plan(conn, now)
    if not plan.empty:
        await apply_acknowledgements(
            engine,
            settings,
            serial=plan.serial,
            expected=plan.expected_acknowledgements(),
            who="demo reviewer",
            note=f"monthly review {today:%Y-%m}",
            now=now,
        )


async def _pending_messages(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with reader(engine).connect() as conn:
        rows = (
            await conn.execute(
                select(outbox_t.c.payload)
                .where(outbox_t.c.state == "pending")
                .order_by(outbox_t.c.id)
            )
        ).all()
    return [json.loads(row.payload) for row in rows]


async def _deliver_if_configured(
    engine: AsyncEngine, settings: Settings, environ: dict[str, str]
) -> int:
    if WebhookResolver(settings, environ).get("default", "fastly") is None:
        return 0
    import aiohttp

    async with aiohttp.ClientSession(trust_env=False) as session:
        report = await deliver_due(
            engine,
            settings,
            SlackWebhookClient(session),
            now=datetime.now(UTC),
            environ=environ,
            policy=DeliveryPolicy(),
            pacer=Pacer(1.0),
            ignore_backoff=True,
        )
    return report.sent


def render_plan(plan: Plan) -> str:
    return render_text(plan, limit_per_kind=5)
