"""A team's report charts its usage as the showback counts it where Akamai reporting groups
break the contract's products down: pulled from the sandbox over loopback into a real state,
on SQLite and PostgreSQL. A group's team charts the group's part of a volume, the contract
line's team what no group covers, a team owning both never the contract line on top; a
percentile is never shared: the contract's stays whole with its team."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import Month
from reconciler.reports.data import ReportRequest, gather_report
from reconciler.reports.model import Series
from reconciler.sandbox.akamai_cp_codes import cp_codes
from reconciler.sandbox.akamai_reporting_groups import SHARES
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.ingest import lines_t
from tests.test_reporting_groups_e2e import groups_config, pull, sandbox, sandbox_groups
from tests.test_showback_e2e import NOW

__all__ = ["sandbox"]

JUNE, JULY = Month(2024, 6), Month(2024, 7)
WAA = "Web Application Accelerator"
AMD = "Adaptive Media Delivery"
STORAGE = "NetStorage"
VOLUMES = ("Total MB", "Total Hits")
IN_NO_GROUP = 1 - SHARES[0] - SHARES[1]  # the sandbox's groups: 40% and 25% of each stat

# (product name, usage type, region, service): a volume's series is the product's
SeriesName = tuple[str, str, str, str]


async def charts(
    engine: AsyncEngine, settings: Settings, team: str | None
) -> dict[SeriesName, Series]:
    request = ReportRequest(JUNE, JULY, team=team, max_series=10_000)
    data = await gather_report(engine, settings, request, NOW)
    assert data.series_total == len(data.series)  # every series charted
    named: dict[SeriesName, Series] = {}
    for s in data.series:
        name = (s.product_name, s.usage_type, s.region, s.service)
        assert name not in named, name
        named[name] = s
    return named


def june(series: dict[SeriesName, Series], product: str, usage_type: str) -> Decimal:
    point = series[(product, usage_type, "", "")].point(JUNE)
    assert point is not None
    return point.quantity


def both_config(sandbox: SandboxServer, tmp_path: Path) -> dict[str, Any]:
    """web owns the Web Application Accelerator and NetStorage contract lines and the video
    group; radio (declared first, so web's product rules do not own it) the other group."""
    config = groups_config(sandbox, tmp_path, sandbox_groups(sandbox))
    video, radio = sandbox_groups(sandbox)
    config["teams"] = [
        {"name": "radio", "match": [{"reporting_group": radio}]},
        {
            "name": "web",
            "match": [
                {"reporting_group": video},
                {"source": "akamai", "product": WAA},
                {"source": "akamai", "product": STORAGE},
            ],
        },
    ]
    return config


async def test_the_contract_line_s_team_charts_what_no_reporting_group_covers(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_from_mapping(groups_config(sandbox, tmp_path, sandbox_groups(sandbox)))
    await pull(engine, settings, sandbox)
    whole = await charts(engine, settings, None)
    web, video, radio = [await charts(engine, settings, t) for t in ("web", "video", "radio")]
    for usage_type in VOLUMES:
        contract = june(whole, WAA, usage_type)
        groups = june(video, WAA, usage_type) + june(radio, WAA, usage_type)
        assert contract > 0 and groups > 0
        # web owns the contract line: it charts the contract less what the groups used.
        assert june(web, WAA, usage_type) == contract - groups == contract * IN_NO_GROUP
        assert june(video, WAA, usage_type) == contract * SHARES[0]
    # The collecting month is projected from web's part of it.
    for usage_type in VOLUMES:
        ours, theirs = web[(WAA, usage_type, "", "")], whole[(WAA, usage_type, "", "")]
        assert ours.projection is not None and theirs.projection is not None
        expected = theirs.projection.projected * IN_NO_GROUP
        assert abs(ours.projection.projected - expected) <= Decimal("0.01"), usage_type
    # web owns no group: nothing of the other products is its.
    assert {name[0] for name in web} == {WAA}


async def test_a_team_owning_the_contract_line_and_a_group_counts_each_part_once(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_from_mapping(both_config(sandbox, tmp_path))
    await pull(engine, settings, sandbox)
    whole = await charts(engine, settings, None)
    web, radio = await charts(engine, settings, "web"), await charts(engine, settings, "radio")
    for usage_type in VOLUMES:
        contract = june(whole, WAA, usage_type)
        # What no group covers and the video group's part: all but radio's, never more.
        assert june(web, WAA, usage_type) == contract - june(radio, WAA, usage_type)
        assert june(web, WAA, usage_type) == contract * (1 - SHARES[1])
        # Of a product web owns no contract line of, only its group's part.
        assert june(web, AMD, usage_type) == june(whole, AMD, usage_type) * SHARES[0]
    # A level is not shared: the contract's holds the group's, so web charts it alone.
    stored = june(whole, STORAGE, "Storage GB")
    assert stored > 0 and june(web, STORAGE, "Storage GB") == stored
    assert june(radio, STORAGE, "Storage GB") == stored * SHARES[1]


async def test_a_percentile_stays_whole_with_the_contract_line_s_team(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    video, _ = sandbox_groups(sandbox)
    group = f"reporting group {video}"
    settings = settings_from_mapping(both_config(sandbox, tmp_path))
    await pull(engine, settings, sandbox)
    whole = await charts(engine, settings, None)
    web = await charts(engine, settings, "web")
    for usage_type in ("95/5 Mbps", "Peak Mbps"):
        contract = whole[(WAA, usage_type, "GLOBAL", "")]
        # The contract's figure, as the whole-account report charts it: not a part of it.
        assert web[(WAA, usage_type, "GLOBAL", "")].points == contract.points
        # The group's own figure is a series of its own, never added to the contract's.
        own = web[(WAA, usage_type, "GLOBAL", group)]
        assert [p.quantity for p in own.points] == [p.quantity * SHARES[0] for p in contract.points]
        # Of a product whose contract line is not web's, only the group's series.
        amd = {name[3] for name in web if name[:2] == (AMD, usage_type)}
        assert amd == {group}


async def test_in_a_month_held_by_cp_codes_and_groups_the_groups_alone_break_it_down(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    # The source was pulled by CP code, then switched to reporting groups; June, pulled
    # again after the switch, holds both (the CP codes' lines made present again here, as
    # a month that kept them does).
    contract_id = sandbox.contracts[0]
    product = sandbox.state.akamai.contracts[contract_id].products[0]
    codes = cp_codes(sandbox.state.scenario.seed, contract_id, product)
    config = groups_config(sandbox, tmp_path, [])
    by_code = {**config["sources"][0], "cp_codes": True, "reporting_groups": []}
    await pull(engine, settings_from_mapping({**config, "sources": [by_code]}), sandbox)
    config = groups_config(sandbox, tmp_path, sandbox_groups(sandbox))
    config["teams"] = [
        *config["teams"][:2],
        {"name": "edge", "match": [{"cp_code": str(codes[0])}]},
        {"name": "media", "match": [{"source": "akamai", "product": product.name}]},
    ]
    settings = settings_from_mapping(config)
    await pull(engine, settings, sandbox)
    async with engine.begin() as conn:
        kept = lines_t.update().where(
            lines_t.c.month == str(JUNE), lines_t.c.service.in_([str(c) for c in codes])
        )
        assert (await conn.execute(kept.values(present=True))).rowcount > 0
    whole = await charts(engine, settings, None)
    media = await charts(engine, settings, "media")
    # The contract's percentile stays whole with its team: no CP code breaks it down.
    for usage_type in ("95/5 Mbps", "Peak Mbps"):
        name = (product.name, usage_type, "GLOBAL", "")
        june_points = [p for p in media[name].points if p.month == JUNE]
        assert june_points == [p for p in whole[name].points if p.month == JUNE]
    # A volume: what no group covers, and none of it the CP codes' (edge's is not used).
    for usage_type in VOLUMES:
        assert june(media, product.name, usage_type) == (
            june(whole, product.name, usage_type) * IN_NO_GROUP
        )
    edge = await charts(engine, settings, "edge")
    assert all(s.point(JUNE) is None for s in edge.values())
