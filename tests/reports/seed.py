"""A realistic state for report tests, written straight into the SQLModel tables.

Two sources over six months (2024-01..2024-06, "now" is 2024-06-15 12:00 UTC): a Fastly
account with account-level lines and per-service lines that break one of them down again,
and an Akamai contract with geographic regions and months split into two periods. Past months
are finalized, June is collecting; one Fastly and one Akamai line were restated after they
were finalized; runs succeeded and failed; findings of several kinds are open, acknowledged
and resolved. With ``hostile`` set, provider strings are HTML/Markdown/SVG injections.

:class:`Seeded` carries what a test needs to check a report without reading it back from
the database: expected month totals, the restated lines, the findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from reconciler.domain import LineKey, Month
from tests.reports.names import (
    AKAMAI,
    AKAMAI_CONTRACT,
    CURRENT,
    FASTLY,
    FASTLY_ACCOUNT,
    HOSTILE_MESSAGE,
    HOSTILE_PRODUCT,
    HOSTILE_SERVICE,
    HOSTILE_USAGE,
    MONTHS,
    NOW,
)
from tests.reports.seed_findings import write_findings

__all__ = [
    "AKAMAI",
    "AKAMAI_CONTRACT",
    "CURRENT",
    "FASTLY",
    "FASTLY_ACCOUNT",
    "HOSTILE_MESSAGE",
    "HOSTILE_PRODUCT",
    "HOSTILE_SERVICE",
    "HOSTILE_USAGE",
    "MONTHS",
    "NOW",
    "Seeded",
    "report_settings",
    "seed_state",
]
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.tables import (
    LineVersion,
    PullRun,
    SourceRow,
    UsageLineRow,
)

D = Decimal


@dataclass(frozen=True)
class SeriesSpec:
    source: str
    product: str
    product_name: str
    usage_type: str
    unit: str
    # month index -> list of (region, period_start day, period_end day or 0 = month end, qty)
    parts: tuple[tuple[str, int, int, Decimal], ...]
    monthly: tuple[Decimal, ...]


@dataclass
class Seeded:
    """What was written: expected totals per (source, product, usage_type, unit) and month."""

    now: datetime
    totals: dict[tuple[str, str, str, str], dict[Month, Decimal]] = field(default_factory=dict)
    statuses: dict[tuple[str, str, str, str], dict[Month, str]] = field(default_factory=dict)
    restated: dict[int, tuple[Decimal, Decimal]] = field(default_factory=dict)
    line_ids: dict[str, int] = field(default_factory=dict)
    runs: dict[str, list[int]] = field(default_factory=dict)
    findings: dict[str, str] = field(default_factory=dict)
    account_lines: int = 0
    pending_lines: list[tuple[str, UsageLineRow, list[tuple[int, Decimal, str]]]] = field(
        default_factory=list
    )
    pending_restated: list[tuple[UsageLineRow, Decimal, Decimal]] = field(default_factory=list)


def report_settings(state_directory: Any, *, hostile: bool = False, **reports: Any) -> Settings:
    """Settings naming the two seeded sources and expectations drawn on the charts."""
    expectations: list[dict[str, Any]] = [
        {
            "name": "NA bandwidth commitment",
            "source": FASTLY,
            "product": "cdn_usage",
            "usage_type": "North America Bandwidth",
            "monthly_max": "50000",
            "monthly_min": "30000",
            "unit": "GB",
        },
        {
            "name": "WAA contract",
            "source": AKAMAI,
            "product": "Web Application Accelerator",
            "usage_type": "Total MB",
            "monthly_quantity": "330",
            "tolerance": "10%",
            "unit": "GB",
            "invoices": {"2024-04": "331"},
        },
        {
            "name": "requests in another unit",
            "source": FASTLY,
            "usage_type": "North America Requests",
            "monthly_max": "1",
            "unit": "requests",
        },
    ]
    if hostile:
        expectations.append(
            {
                "name": "<i>evil</i> & co",
                "source": FASTLY,
                "product": "image*",
                "monthly_max": "9000",
            }
        )
    return settings_from_mapping(
        {
            "state": {"directory": str(state_directory)},
            "sources": [
                {"name": FASTLY, "provider": "fastly"},
                {"name": AKAMAI, "provider": "akamai", "contracts": [AKAMAI_CONTRACT]},
            ],
            "expectations": expectations,
            "reports": reports,
        }
    )


def _specs(hostile: bool) -> list[SeriesSpec]:
    na = "North America"
    image_name = HOSTILE_PRODUCT if hostile else "Image Optimizer"
    image_usage = HOSTILE_USAGE if hostile else "Images"
    return [
        SeriesSpec(
            FASTLY,
            "cdn_usage",
            "Full-Site Delivery",
            "North America Bandwidth",
            "GB",
            ((na, 1, 0, D(1)),),
            (D("41000.25"), D("43500"), D("46000.5"), D("44800"), D("48200"), D("30100.75")),
        ),
        SeriesSpec(
            FASTLY,
            "cdn_usage",
            "Full-Site Delivery",
            "North America Requests",
            "unit",
            ((na, 1, 0, D(1)),),
            (D(812000000), D(790500000), D(845000000), D(901000000), D(880000000), D(455000000)),
        ),
        SeriesSpec(
            FASTLY,
            "cdn_usage",
            "Full-Site Delivery",
            "Europe Bandwidth",
            "GB",
            (("Europe", 1, 0, D(1)),),
            (D("12050.5"), D("12800"), D("13100"), D("12950"), D("13400.125"), D("6900")),
        ),
        SeriesSpec(
            FASTLY,
            "image_optimizer",
            image_name,
            image_usage,
            "unit",
            (("Global", 1, 0, D(1)),),
            (D(5200), D(6100), D(7000), D(7900), D(8800), D(5000)),
        ),
        SeriesSpec(
            AKAMAI,
            "1-ABC012",
            "Web Application Accelerator",
            "Total MB",
            "GB",
            (
                ("Americas", 1, 15, D("0.3")),
                ("Americas", 16, 0, D("0.3")),
                ("EMEA", 1, 15, D("0.2")),
                ("EMEA", 16, 0, D("0.2")),
            ),
            (D(310), D(325), D(300), D(345), D(352), D(190)),
        ),
        SeriesSpec(
            AKAMAI,
            "M-LC-1234",
            "Download Delivery",
            "Bandwidth",
            "GB",
            (("GLOBAL", 1, 0, D(1)),),
            (D(2100), D(2250), D(1980), D(2400), D(2600), D(1200)),
        ),
    ]


def _runs(source: str, provider: str) -> list[PullRun]:
    """Per source: May 3 and June 5 succeeded, June 14 failed, June 15 succeeded (Fastly)
    or failed (Akamai, so it has a failure since its last success)."""
    plan = [
        (datetime(2024, 5, 3, 6, tzinfo=UTC), "succeeded", None),
        (datetime(2024, 6, 5, 6, tzinfo=UTC), "succeeded", None),
        (datetime(2024, 6, 14, 6, tzinfo=UTC), "failed", "HTTP 503 from /billing"),
        (
            datetime(2024, 6, 15, 6, tzinfo=UTC),
            "succeeded" if provider == "fastly" else "failed",
            None if provider == "fastly" else "HTTP 429 after 5 retries",
        ),
    ]
    return [
        PullRun(
            source=source,
            provider=provider,
            status=status,
            started_at=started,
            finished_at=started + timedelta(seconds=42),
            duration_s=42.5 if status == "succeeded" else 3.0,
            lines_read=120 if status == "succeeded" else 0,
            pages=3,
            api_calls=7,
            retries=1 if status == "failed" else 0,
            complete=status == "succeeded",
            error=error,
        )
        for started, status, error in plan
    ]


async def seed_state(
    engine: AsyncEngine,
    *,
    hostile: bool = False,
    extra_series: int = 0,
) -> Seeded:
    """Write the seeded state; ``extra_series`` adds that many small Fastly usage types."""
    seeded = Seeded(now=NOW)
    async with AsyncSession(engine) as session:
        for name, provider in ((FASTLY, "fastly"), (AKAMAI, "akamai")):
            session.add(SourceRow(name=name, provider=provider, created_at=NOW))
            runs = _runs(name, provider)
            session.add_all(runs)
            await session.flush()
            seeded.runs[name] = [r.id for r in runs if r.id is not None]
        specs = _specs(hostile)
        for index in range(extra_series):
            specs.append(
                SeriesSpec(
                    FASTLY,
                    "cdn_usage",
                    "Full-Site Delivery",
                    f"Extra {index:03d} Requests",
                    "unit",
                    (("Global", 1, 0, D(1)),),
                    tuple(D(index + 1) for _ in MONTHS),
                )
            )
        for spec in specs:
            _write_series(session, seeded, spec, hostile)
        _write_service_lines(session, seeded, hostile)
        await _write_versions(session, seeded)
        seeded.findings = write_findings(session, seeded.runs, hostile)
        await session.commit()
    return seeded


def _month_end(month: Month, day: int) -> date:
    return month.last_day if day == 0 else date(month.year, month.month, day)


def _write_series(session: AsyncSession, seeded: Seeded, spec: SeriesSpec, hostile: bool) -> None:
    provider = "fastly" if spec.source == FASTLY else "akamai"
    account = FASTLY_ACCOUNT if provider == "fastly" else AKAMAI_CONTRACT
    may_run, june_run, _failed, latest_run = seeded.runs[spec.source]
    first_run = seeded.runs[spec.source][0]
    key = (spec.source, spec.product, spec.usage_type, spec.unit)
    for month, total in zip(MONTHS, spec.monthly, strict=True):
        collecting = month == CURRENT
        seeded.totals.setdefault(key, {})[month] = total
        seeded.statuses.setdefault(key, {})[month] = "collecting" if collecting else "finalized"
        for region, start_day, end_day, share in spec.parts:
            quantity = total * share
            history: list[tuple[int, Decimal, str]]
            if month == CURRENT and provider == "fastly":
                history = [(june_run, quantity * D("0.2"), "collecting")]
                history.append((latest_run, quantity, "collecting"))
            elif month == CURRENT:
                history = [(june_run, quantity, "collecting")]
            elif month == Month(2024, 5):
                history = [
                    (may_run, quantity / 20, "collecting"),
                    (june_run, quantity, "finalized"),
                ]
            else:
                history = [(first_run, quantity, "finalized")]
            restate = _restatement(spec, month, region, start_day)
            if restate is not None:
                original = quantity - restate
                history = [(first_run, original, "finalized"), (june_run, quantity, "finalized")]
            line = _line(
                session,
                spec,
                provider,
                account,
                region,
                "",
                "",
                month,
                _month_end(month, start_day),
                _month_end(month, end_day),
                history,
            )
            seeded.account_lines += 1
            name = f"{spec.source}/{spec.usage_type}/{region}/{month}/{start_day}"
            seeded.pending_lines.append((name, line, history))
            if restate is not None:
                seeded.pending_restated.append((line, quantity - restate, quantity))


def _restatement(spec: SeriesSpec, month: Month, region: str, start_day: int) -> Decimal | None:
    """The restated lines: Fastly April NA bandwidth (+1300), Akamai March EMEA 2nd half."""
    if spec.usage_type == "North America Bandwidth" and month == Month(2024, 4):
        return D(1300)
    if (
        spec.usage_type == "Total MB"
        and month == Month(2024, 3)
        and region == "EMEA"
        and start_day == 16
    ):
        return D("-12.5")
    return None


def _write_service_lines(session: AsyncSession, seeded: Seeded, hostile: bool) -> None:
    """Per-service breakdown of NA bandwidth: must never be added to the account total."""
    spec = _specs(hostile)[0]
    first_run = seeded.runs[FASTLY][0]
    for month, total in zip(MONTHS[:-1], spec.monthly[:-1], strict=True):
        for service, name, share in (
            ("SU1Z0isxPaozGVKXdv0eY", "www.example.com", D("0.75")),
            ("AB2c3dEf4GhIjk5LmnOpQ", HOSTILE_SERVICE if hostile else "api.example.com", D("0.25")),
        ):
            line = _line(
                session,
                spec,
                "fastly",
                FASTLY_ACCOUNT,
                "North America",
                service,
                name,
                month,
                month.first_day,
                month.last_day,
                [(first_run, total * share, "finalized")],
            )
            seeded.pending_lines.append(
                (f"{service}/{month}", line, [(first_run, total * share, "finalized")])
            )


def _line(
    session: AsyncSession,
    spec: SeriesSpec,
    provider: str,
    account: str,
    region: str,
    service: str,
    service_name: str,
    month: Month,
    period_start: date,
    period_end: date,
    history: list[tuple[int, Decimal, str]],
) -> UsageLineRow:
    key = LineKey(
        spec.source, account, spec.product, spec.usage_type, region, service, month, period_start
    )
    last_run, quantity, status = history[-1]
    row = UsageLineRow(
        key_hash=key.digest,
        source=spec.source,
        provider=provider,
        account=account,
        product=spec.product,
        product_name=spec.product_name,
        usage_type=spec.usage_type,
        region=region,
        service=service,
        service_name=service_name,
        month=str(month),
        period_start=period_start,
        period_end=period_end,
        quantity=quantity,
        raw_quantity=None,
        unit=spec.unit,
        status=status,
        billable=True,
        present=True,
        versions=len(history),
        first_run_id=history[0][0],
        last_run_id=last_run,
    )
    session.add(row)
    return row


async def _write_versions(session: AsyncSession, seeded: Seeded) -> None:
    """One flush gives every line its id; then the version rows."""
    await session.flush()
    for name, row, history in seeded.pending_lines:
        assert row.id is not None
        seeded.line_ids[name] = row.id
        for run_id, quantity, status in history:
            run = await session.get(PullRun, run_id)  # in the session already: no query
            assert run is not None
            session.add(
                LineVersion(
                    line_id=row.id,
                    run_id=run_id,
                    quantity=quantity,
                    unit=row.unit,
                    status=status,
                    period_end=row.period_end,
                    present=True,
                    recorded_at=run.started_at + timedelta(seconds=30),
                )
            )
    for row, before, after in seeded.pending_restated:
        assert row.id is not None
        seeded.restated[row.id] = (before, after)
    seeded.pending_lines.clear()
    seeded.pending_restated.clear()
