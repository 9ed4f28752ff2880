"""Showback end to end: two sources pulled from the sandbox, teams owning Fastly services and
Akamai products, a shared money commitment and unallocated lines, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.demo_contract import demo_akamai_rates
from reconciler.domain import Month, PlanItem
from reconciler.money import Money
from reconciler.providers.http import HttpClient
from reconciler.reports.data import ReportRequest, gather_report
from reconciler.reports.html import render_html
from reconciler.reports.json_report import report_json
from reconciler.reports.markdown import render_markdown
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.review import build_plan
from tests.e2e_support import pull_both, sandbox, sandbox_sources
from tests.test_cost_e2e import contract

TODAY = date(2024, 7, 10)
NOW = datetime(2024, 7, 10, 12, tzinfo=UTC)
COMMIT = "2000 USD"  # far above Akamai's rated month: the shortfall is shared


def showback_settings(sandbox: SandboxServer, tmp_path: Path, **more: Any) -> Settings:
    return settings_from_mapping(showback_config(sandbox, tmp_path, **more))


def showback_config(sandbox: SandboxServer, tmp_path: Path, **more: Any) -> dict[str, Any]:
    return dict(
        {
            "sources": sandbox_sources(sandbox, tmp_path),
            "rates": [*contract(), *demo_akamai_rates()],
            "commitments": [
                {"name": "Akamai commit", "source": "akamai", "currency": "USD", "amount": COMMIT}
            ],
            "teams": [
                {
                    "name": "web",
                    "match": [
                        {"source": "fastly", "service": "www.*"},
                        {"source": "akamai", "product": "Web Application Accelerator"},
                    ],
                },
                {"name": "api", "match": [{"source": "fastly", "service": "api.example.com"}]},
                {"name": "idle", "match": [{"source": "fastly", "service": "nothing-*"}]},
            ],
        },
        **more,
    )


async def pull_all(engine: AsyncEngine, settings: Settings, sandbox: SandboxServer) -> None:
    await pull_both(engine, settings, sandbox, TODAY, clock=lambda: NOW)


async def test_teams_and_unallocated_add_up_to_every_month_of_the_bill(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = showback_settings(sandbox, tmp_path)
    await pull_all(engine, settings, sandbox)
    report = await gather_report(
        engine, settings, ReportRequest(Month(2024, 5), Month(2024, 7)), NOW
    )
    assert report.costs is not None and report.costs.showback is not None
    showback = report.costs.showback
    bill: dict[tuple[Month, str], Decimal] = defaultdict(Decimal)
    for cost in report.costs.months:
        bill[(cost.month, cost.state)] += Money(cost.amount, cost.currency).rounded()
    teams: dict[tuple[Month, str], Decimal] = defaultdict(Decimal)
    by_team: dict[str, Decimal] = defaultdict(Decimal)
    for row in showback.months:
        teams[(row.month, row.state)] += row.amount
        by_team[row.team] += row.amount
        assert row.total == bill[(row.month, row.state)]
    assert teams == bill  # finalized, collecting and projected months alike
    assert set(by_team) == {"web", "api", "unallocated"}  # "idle" owns nothing
    assert all(amount > 0 for amount in by_team.values())
    # The commitment lifts Akamai's months to the commit; the shortfall is shared.
    june = [c for c in report.costs.months if c.source == "akamai" and c.month == Month(2024, 6)]
    assert [Money(c.amount, c.currency).display() for c in june] == ["2,000.00 USD"]
    shared = {r.team for r in showback.months if r.month == Month(2024, 6) and r.shared}
    assert {"web", "unallocated"} <= shared
    # Every format shows the teams with the unallocated share of the whole account.
    html = render_html(report)
    june_web = next(r for r in showback.months if (r.team, r.state) == ("web", "finalized"))
    assert "<h2>Teams</h2>" in html and "unallocated (incl. shared)" in html
    assert Money(june_web.amount, june_web.currency).display() in html
    markdown = render_markdown(report, "all").text
    assert "## Teams" in markdown and "| unallocated (incl. shared) |" in markdown


async def test_a_team_report_and_a_team_budget(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    budget = {"name": "api budget", "source": "fastly", "team": "api", "monthly_budget": "1 USD"}
    settings = showback_settings(sandbox, tmp_path, expectations=[budget])
    await pull_all(engine, settings, sandbox)
    async with engine.connect() as conn:
        plan = await build_plan(conn, NOW)
    over: list[PlanItem] = [i for i in plan.items if i.kind == "over_budget"]
    assert {str(i.month) for i in over} == {"2024-05", "2024-06", "2024-07"}
    assert all(i.message.startswith("api budget: ") for i in over)
    request = ReportRequest(Month(2024, 5), Month(2024, 7), team="api")
    data = await gather_report(engine, settings, request, NOW)
    document = report_json(data)
    rows = document["teams"]["months"]
    assert {r["team"] for r in rows} == {"api"}
    # The budget findings are the api team's; the whole account's drift is not.
    items = document["findings"]["open"]["items"]
    assert items and {i["kind"] for i in items} == {"over_budget"}
    june = next(r for r in rows if r["month"] == "2024-06" and r["state"] == "finalized")
    (june_item,) = [i for i in over if str(i.month) == "2024-06"]
    assert june_item.after is not None and str(june_item.after.quantity) == june["amount"]
    text = render_markdown(data, "team-api").text
    assert "## Team api" in text and "| unallocated" not in text
    assert json.loads(json.dumps(document))["teams"]["team"] == "api"


async def test_state_list_and_config_check_name_the_owners(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path, state_url: str
) -> None:
    from reconciler.cli.setup_cmds import to_toml
    from tests.test_cli import run

    config = showback_config(sandbox, tmp_path, state={"database_url": state_url})
    await pull_all(engine, settings_from_mapping(config), sandbox)
    (tmp_path / "reconciler.toml").write_text(to_toml(config), encoding="utf-8")
    env = {"FASTLY_API_TOKEN": sandbox.fastly_token}

    listed = run("state", "list", "--json", "--month", "2024-06", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    lines = [json.loads(x) for x in listed.stdout.splitlines()]
    owners = {(x["source"], x["service_name"] or x["product_name"]): x["owner"] for x in lines}
    assert owners[("fastly", "www.example.com")] == "web"
    assert owners[("fastly", "api.example.com")] == "api"
    assert owners[("fastly", "static.example.com")] == "unallocated"
    assert owners[("akamai", "Web Application Accelerator")] == "web"
    assert {x["owner"] for x in lines if x["source"] == "fastly" and not x["service"]} == {"shared"}
    api = run("state", "list", "--team", "api", "--month", "2024-06", cwd=tmp_path, env=env)
    rows = api.stdout.splitlines()
    assert rows and all(r.endswith("  team api") and "api.example.com" in r for r in rows)
    unknown = run("state", "list", "--team", "ap", cwd=tmp_path, env=env)
    assert unknown.returncode == 1
    assert "--team: no team named 'ap' (declared: web, api, idle, unallocated)" in unknown.stderr

    out = tmp_path / "api.md"
    args = ("--format", "md", "--from", "2024-05", "--to", "2024-07", "--as-of", "2024-07-10")
    written = run("report", "--team", "api", *args, "--out", str(out), cwd=tmp_path, env=env)
    assert written.returncode == 0, written.stderr
    assert written.stdout.strip() == str(out)
    text = out.read_text(encoding="utf-8")
    assert "## Cost of team api" in text and "## Team api" in text
    assert "| akamai |" not in text.split("## Cost of team api")[1].split("\n## ")[0]

    checked = run("config", "check", cwd=tmp_path, env=env)
    warnings = [x for x in checked.stderr.splitlines() if x.startswith("warning: ")]
    assert (
        "warning: teams[2].match[0] (idle: source=fastly service=nothing-*) is the first "
        "match of no line in the state" in warnings
    )
    unowned = [w for w in warnings if "no [[teams]] rule matches" in w]
    assert any("fastly service static.example.com" in w for w in unowned)
    assert not any("fastly  product" in w for w in unowned)  # shared account lines are not listed


async def test_the_focus_export_tags_each_row_with_its_owner_as_the_report_splits_it(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    from reconciler.reports.focus import focus_rows

    settings = showback_settings(sandbox, tmp_path)
    await pull_all(engine, settings, sandbox)
    first, last = Month(2024, 5), Month(2024, 6)
    report = await gather_report(engine, settings, ReportRequest(first, last), NOW)
    assert report.costs is not None and report.costs.showback is not None
    rows = await focus_rows(engine, first, last, (), settings)
    effective: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in rows:
        team = json.loads(row["Tags"])["team"]
        if row["EffectiveCost"]:
            effective[(row["BillingPeriodStart"][:7], team)] += Decimal(row["EffectiveCost"])
    finalized = [r for r in report.costs.showback.months if r.state == "finalized"]
    assert {(str(r.month), r.team) for r in finalized} == set(effective)
    for r in finalized:
        # Rows of shared cost are split exactly, the report's amounts to the cent: rounding
        # rows (less than a cent each) make each team's rows add up to its report amount.
        assert effective[(str(r.month), r.team)] == r.amount, r
    rounding = [r for r in rows if r["ChargeDescription"].startswith("rounding of team ")]
    assert rounding and all(r["ChargeCategory"] == "Adjustment" for r in rounding)
    assert all(0 < abs(Decimal(r["EffectiveCost"])) < Decimal("0.01") for r in rounding)
    # A shared Fastly account line is one row per owner, its cost split among them.
    account = [r for r in rows if r["x_Source"] == "fastly" and r["ChargeCategory"] == "Usage"]
    keys = defaultdict(set)
    for row in account:
        keys[(row["x_LineKey"], row["ChargeClass"])].add(json.loads(row["Tags"])["team"])
    assert any(len(teams) == 3 for teams in keys.values())


async def test_akamai_cp_codes_are_read_and_own_their_share_of_the_product(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    from fractions import Fraction

    from reconciler.reconcile.allocation import exact_shares
    from reconciler.refresh import refresh_source
    from reconciler.sandbox.akamai_cp_codes import cp_codes
    from reconciler.store.costs import load_context

    contract_id = sandbox.contracts[0]
    product = sandbox.state.akamai.contracts[contract_id].products[0]
    codes = cp_codes(sandbox.state.scenario.seed, contract_id, product)
    config = showback_config(sandbox, tmp_path)
    config["sources"] = [{**config["sources"][1], "cp_codes": True}]
    config["commitments"] = []
    config["teams"] = [{"name": "edge", "match": [{"cp_code": str(codes[0])}]}]
    settings = settings_from_mapping(config)
    sandbox.state.set_today(TODAY)
    async with HttpClient() as http:
        outcome = await refresh_source(engine, settings, "akamai", http, today=TODAY)
    assert outcome.ok, outcome.error
    june = Month(2024, 6)
    async with engine.connect() as conn:
        context = await load_context(conn, settings, "akamai", "akamai", [june])
    services = {x.service for x in context.lines if x.product == product.product_id}
    assert services == {"", *(str(c) for c in codes)}
    # The product's priced volume is shared by its CP codes: edge's CP code carries half.
    priced = [
        c
        for c in context.sheet.lines
        if c.line.product == product.product_id and c.line.additive and c.amount
    ]
    assert priced and all(not c.line.service for c in priced)
    shares = exact_shares(context.sheet, context.lines, settings.teams, settings.showback)
    assert (
        shares.months[("akamai", june, "USD")]["edge"]
        == sum((Fraction(c.amount) for c in priced), Fraction(0)) / 2
    )


async def test_a_team_budget_adds_up_the_team_s_share_of_every_source(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    from reconciler.reconcile.allocation import allocate
    from reconciler.store.costs import load_context

    settings = showback_settings(sandbox, tmp_path)
    await pull_all(engine, settings, sandbox)
    june = Month(2024, 6)
    web: dict[str, Decimal] = {}
    async with engine.connect() as conn:
        for source in settings.sources:
            context = await load_context(conn, settings, source.name, source.provider, [june])
            shares = allocate(context.sheet, context.lines, settings.teams, settings.showback)
            web[source.name] = shares.team_total("web", june, "USD")
    assert all(amount > 0 for amount in web.values())
    # Above what web spends in either source, below what it spends in both.
    budget_amount = max(web.values()) + (min(web.values()) / 2).quantize(Decimal("0.01"))
    budget = {"name": "web budget", "team": "web", "monthly_budget": f"{budget_amount} USD"}
    await pull_all(engine, showback_settings(sandbox, tmp_path, expectations=[budget]), sandbox)
    async with engine.connect() as conn:
        plan = await build_plan(conn, NOW)
    over = [i for i in plan.items if i.kind == "over_budget" and str(i.month) == "2024-06"]
    total = Money(web["akamai"] + web["fastly"], "USD")
    parts = f"akamai {Money(web['akamai'], 'USD')} + fastly {Money(web['fastly'], 'USD')}"
    # One finding for the month, of the budget's first source, naming both sources' shares.
    assert [(i.source, i.message.split(", over")[0]) for i in over] == [
        ("fastly", f"web budget: 2024-06 costs {total} ({parts})")
    ]


async def test_a_team_report_shows_the_team_s_own_cost_and_usage_charts(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    usage = {"source": "fastly", "usage_type": "North America Bandwidth"}
    expectations = [{**usage, "team": "api", "monthly_max": "900"}, {**usage, "monthly_max": "9e9"}]
    settings = showback_settings(sandbox, tmp_path, expectations=expectations)
    await pull_all(engine, settings, sandbox)
    first, last = Month(2024, 5), Month(2024, 7)
    whole = await gather_report(engine, settings, ReportRequest(first, last), NOW)
    data = await gather_report(engine, settings, ReportRequest(first, last, team="api"), NOW)
    assert data.costs is not None and data.costs.showback is not None
    assert whole.costs is not None
    # The Cost section is api's own: per source and month, its apportioned share.
    team_rows = {(r.month, r.state): r.amount for r in data.costs.showback.rows()}
    own: dict[tuple[Month, str], Decimal] = defaultdict(Decimal)
    for cost in data.costs.months:
        own[(cost.month, cost.state)] += cost.amount
    assert own == team_rows
    assert {c.source for c in data.costs.months} == {"fastly"}  # api owns nothing at Akamai
    account = sum((c.amount for c in whole.costs.months if c.state == "finalized"), Decimal(0))
    own_total = sum((c.amount for c in data.costs.months if c.state == "finalized"), Decimal(0))
    assert 0 < own_total < account
    (invoice,) = data.costs.invoices  # api's share of Fastly's projected July
    assert invoice.amount == team_rows[(Month(2024, 7), "projected")]
    assert data.costs.audit == () and data.costs.commitments == ()
    # api owns one Fastly service and no account-level line: its charts are its service's.
    assert data.series and {s.source for s in data.series} == {"fastly"}
    team_usage = {(u.month, u.usage_type): u.quantity for u in data.costs.showback.usage_rows()}
    charted = {
        (p.month, s.usage_type): p.quantity for s in data.series if s.kind.adds_up for p in s.points
    }
    assert charted and charted.items() <= team_usage.items()
    # Each chart carries its own expectations: the team's on its report, the account's on it.
    bands = {
        (report is whole, s.usage_type): s.band.high
        for report in (whole, data)
        for s in report.series
        if s.source == "fastly" and s.band is not None
    }
    assert bands == {(True, "North America Bandwidth"): Decimal("9e9"),
                     (False, "North America Bandwidth"): Decimal(900)}  # fmt: skip
    text = render_markdown(data, "team-api").text
    assert "## Cost of team api" in text and "Projected share of the invoice" in text
    assert "Team api's lines per product and usage type" in text
    assert "### Invoice audit" not in text
    html = render_html(data)
    assert "<h2>Cost of team api</h2>" in html


__all__ = ["sandbox"]  # the fixture
