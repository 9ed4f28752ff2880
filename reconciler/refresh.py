"""One refresh of one source: pull → stage → (one transaction) diff, findings, alerts.

A run is all or nothing. Lines are staged under the run's id while the provider streams
them; only a complete pull reaches the transaction that compares the snapshot with the
tracked state and records versions, changes, findings and the alerts that announce them.
A pull that fails, is cancelled or is killed leaves the tracked state exactly as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import date, datetime
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import Select, delete, func, insert, literal_column, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.display import plural
from reconciler.domain import ChangeKind, ItemCategory, LineStatus, Month, UsageLine, utcnow
from reconciler.errors import BadProviderDataError, ConfigError, ProviderError, ReconcilerError
from reconciler.periodic import Repeating, run_to_end
from reconciler.providers.base import Coverage, InvoiceLine, PullStats, open_provider
from reconciler.providers.http import HttpClient
from reconciler.reconcile.expectations import Evaluated, MonthLine, evaluate, unmatched_months
from reconciler.reconcile.invoices import check_provider_invoices
from reconciler.reconcile.measures import MeasureKind
from reconciler.reconcile.month_values import reads_services
from reconciler.reconcile.ownership import owner_of
from reconciler.settings import ExpectationSettings, Settings
from reconciler.store import costs as cost_store
from reconciler.store import findings as items_store
from reconciler.store.backup import checkpoint
from reconciler.store.fault_point import hold_before_commit
from reconciler.store.findings import ItemUpdates, drift_values_hash
from reconciler.store.ingest import (
    IngestResult,
    apply_staged,
    change_fingerprint,
    lines_t,
    refresh_statistics,
)
from reconciler.store.invoice_rows import invoice_from_row
from reconciler.store.measures import apply_measure_kinds, quiet_not_billable
from reconciler.store.month_history import pull_instant, source_forecast_inputs
from reconciler.store.runs import (
    HEARTBEAT_INTERVAL_S,
    RunAbandonedError,
    fail_run,
    finish_run,
    heartbeat,
    start_run,
)
from reconciler.store.staging import Stager, StatKey, check_lengths, text_limits
from reconciler.store.statuses import collecting_months_before, left_window_items
from reconciler.store.tables import InvoiceLineRow
from reconciler.team_settings import TeamSettings

log = logging.getLogger(__name__)
invoices_t = InvoiceLineRow.__table__  # type: ignore[attr-defined]


@dataclass
class RunOutcome:
    """What one refresh did, for the summary line, the daemon's status and metrics."""

    source: str
    provider: str
    run_id: int
    stats: PullStats
    duration_s: float
    ingest: IngestResult = field(default_factory=IngestResult)
    items: ItemUpdates = field(default_factory=ItemUpdates)
    error: str | None = None
    costs: list[cost_store.CostGauge] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        s = self.stats
        if not self.ok:
            return (
                f"{self.source}: FAILED after {self.duration_s:.1f}s "
                f"({s.api_calls} API calls, {s.retries} retries): {self.error}"
            )
        counts = ", ".join(f"{n} {k}" for k, n in sorted(self.ingest.counts().items()))
        return (
            f"{self.source}: {s.lines} lines read, {s.pages} pages, {s.api_calls} API calls, "
            f"{s.retries} retries, {self.duration_s:.1f}s; {self.ingest.new_lines} new lines, "
            f"{self.ingest.versions_added} versions"
            + (f"; changes: {counts}" if counts else "; no drift")
            + f"; {len(self.items.raised)} items to review, {len(self.items.resolved)} resolved"
        )


# Called inside a run's reconcile transaction, before it commits.
AlertHook = Callable[[AsyncConnection, "RunOutcome"], Awaitable[None]]
CommitCheck = AlertHook
PageHook = Callable[[PullStats], None]


async def refresh_source(
    engine: AsyncEngine,
    settings: Settings,
    source_name: str,
    http: HttpClient,
    *,
    today: date | None = None,
    clock: Callable[[], datetime] = utcnow,
    environ: Mapping[str, str] | None = None,
    alert_hook: AlertHook | None = None,
    commit_check: CommitCheck | None = None,
    on_page: PageHook | None = None,
    instance: str | None = None,
    slot: str | None = None,
) -> RunOutcome:
    """Pull one source and reconcile it. Never raises for a provider problem: the outcome
    carries the error (and the run is recorded as failed); configuration errors raise.

    ``commit_check`` runs first inside the reconcile transaction and may raise a
    ReconcilerError to drop the run's results (the daemon completes its slot there, in the
    same commit, and refuses the results if another instance took the slot over);
    ``alert_hook`` queues the run's alerts in the same transaction.
    """
    index = settings.source_index(source_name)
    source_settings = settings.sources[index]
    provider = open_provider(source_settings, index, http, environ)
    started = clock()
    today = today or started.date()
    run_id = await start_run(
        engine,
        source=source_name,
        provider=source_settings.provider,
        now=started,
        instance=instance,
        slot=slot,
    )
    outcome = RunOutcome(source_name, source_settings.provider, run_id, provider.stats, 0.0)
    began = time.monotonic()
    stager = Stager(engine, run_id, source_name, clock=clock)
    try:
        # aclosing: a pull that stops early (error, cancellation, deadline) cleans up at once.
        async with (
            _heartbeats(engine, run_id, clock),
            _deadline(source_name, source_settings.pull_timeout_s, provider.stats),
            contextlib.aclosing(provider.pull(today)) as pages,
        ):
            await _stage_pages(pages, stager, on_page, provider.stats)
        await refresh_statistics(engine)
        async with stager.transaction(packed=True) as conn:
            # The claim: still running (else abandoned), and locked until this commits.
            await heartbeat(conn, run_id, clock())
            await _lock_source(conn, source_name)
            await _refuse_empty_discovery(conn, source_name, provider.coverage)
            outcome.ingest = await apply_staged(
                conn,
                run_id=run_id,
                source=source_name,
                coverage=provider.coverage,
                now=clock(),
                severities=settings.severities,
                finalize_tolerance=settings.finalize_tolerance_for(source_name),
                snapshot=stager.snapshot.digest(),
                unpack=stager.unpack,
            )
            await _store_invoices(
                conn, source_name, provider.coverage, provider.invoice_lines, run_id
            )
            outcome.items = await _review(
                conn,
                settings,
                source_name,
                provider.coverage,
                outcome.ingest,
                run_id,
                today,
                clock(),
                costs=outcome.costs,
                staged_stats=stager.stat_keys,
            )
            if outcome.ingest.versions_added or outcome.items.changed:
                await items_store.bump_serial(conn)
            outcome.duration_s = time.monotonic() - began
            if commit_check is not None:
                await commit_check(conn, outcome)
            if alert_hook is not None:
                await alert_hook(conn, outcome)
            await finish_run(
                conn,
                run_id,
                stats=provider.stats,
                coverage=provider.coverage,
                versions_added=outcome.ingest.versions_added,
                changes=len(outcome.ingest.changes),
                findings=len(outcome.items.raised),
                snapshot_digest=outcome.ingest.snapshot_digest,
                page_digests=stager.page_digests_text,
                started=started,
                now=clock(),
            )
            await hold_before_commit()  # inert: a test's fault point
    except BaseException as exc:
        outcome.duration_s = time.monotonic() - began
        await stager.close()
        conflict = _configuration_conflict(source_name, exc)
        if conflict is not None:
            outcome.error = str(conflict)
        else:
            outcome.error = str(exc) if isinstance(exc, ReconcilerError) else _describe(exc)
        await _record_failure(engine, run_id, outcome, started, clock)
        if conflict is not None:
            raise conflict from exc
        if not isinstance(exc, ReconcilerError):
            raise
        log.warning("pull of source '%s' failed: %s", source_name, outcome.error)
        await checkpoint(engine)
        return outcome
    log.info("%s", outcome.summary())
    await checkpoint(engine)
    return outcome


async def _stage_pages(
    pages: AsyncIterator[Sequence[UsageLine]],
    stager: Stager,
    on_page: PageHook | None,
    stats: PullStats,
) -> None:
    """Stage every page while the next one is fetched and decoded: the database writes a page
    on its own thread while this one decodes the next. Pages are staged one at a time, in
    order; a page that fails to stage fails the pull at the latest when the next one came."""
    staging: asyncio.Task[None] | None = None
    try:
        async for page in pages:
            if staging is not None:
                await run_to_end(staging)
            staging = asyncio.create_task(stager.add(page))
            if on_page is not None:
                on_page(stats)
        if staging is not None:
            await run_to_end(staging)
    finally:
        if staging is not None:
            # A page being written when the pull stops is let finish, not cancelled in the
            # middle of its statement (see reconciler.periodic); the pull rolls back after.
            await asyncio.gather(run_to_end(staging), return_exceptions=True)


@contextlib.asynccontextmanager
async def _heartbeats(
    engine: AsyncEngine, run_id: int, clock: Callable[[], datetime]
) -> AsyncIterator[None]:
    """Keep the run's heartbeat fresh while the provider is slow to answer."""

    async def beat() -> bool:
        try:
            async with engine.begin() as conn:
                await heartbeat(conn, run_id, clock())
        except RunAbandonedError:
            return False  # the next staged page, or the claim, fails the run
        except Exception as exc:  # a busy database: the next page renews it
            log.debug("heartbeat of run %d failed: %s", run_id, exc)
        return True

    # Stopped, not cancelled, when the pull ends (see reconciler.periodic).
    beating = Repeating(HEARTBEAT_INTERVAL_S, beat, name=f"heartbeat-{run_id}")
    try:
        yield
    finally:
        await beating.stop()


@contextlib.asynccontextmanager
async def _deadline(source: str, timeout_s: float, stats: PullStats) -> AsyncIterator[None]:
    """Fail the pull once ``timeout_s`` have passed (``pull_timeout_s``), naming the
    endpoints it was still waiting for at that moment."""
    task = asyncio.current_task()
    assert task is not None
    stalled: list[str] = []

    def expire() -> None:
        if task.cancelling():
            return  # cancelled already (a stop): once is enough, and it stays a cancel
        stalled.extend(sorted(stats.in_flight) or ["(between requests)"])
        task.cancel()

    handle = asyncio.get_running_loop().call_later(timeout_s, expire)
    try:
        yield
    except asyncio.CancelledError:
        # Our own cancellation only: a cancel from outside (shutdown) stays a cancel.
        if stalled and task.uncancel() == 0:
            raise ProviderError(
                source,
                ", ".join(stalled),
                f"no answer within the pull's deadline of {timeout_s:g}s (pull_timeout_s)",
            ) from None
        raise
    finally:
        handle.cancel()


def _configuration_conflict(source: str, exc: BaseException) -> ConfigError | None:
    """A unique constraint the run's results broke: two configuration entries describe the
    same review item (e.g. two identical [[expectations]]): a configuration error."""
    if not isinstance(exc, IntegrityError):
        return None
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else "a duplicate"
    return ConfigError(
        [
            f"source '{source}': the state database refused this run's results as a "
            f"duplicate ({detail[:200]}): two configuration entries (such as [[expectations]] "
            "with the same name and matchers) describe the same item; make them distinct"
        ]
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return "interrupted"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return f"{exc.__class__.__name__}: {exc}"


async def _record_failure(
    engine: AsyncEngine,
    run_id: int,
    outcome: RunOutcome,
    started: datetime,
    clock: Callable[[], datetime],
) -> None:
    # Shielded: a cancelled pull still records why it stopped and drops its staging rows.
    task = asyncio.ensure_future(
        fail_run(
            engine,
            run_id,
            error=outcome.error or "failed",
            stats=outcome.stats,
            started=started,
            now=clock(),
        )
    )
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def _refuse_empty_discovery(conn: AsyncConnection, source: str, coverage: Coverage) -> None:
    """A discovery that listed nothing where the source tracks lines is a bad answer, not
    an empty account: fail the pull rather than claim nothing is there."""
    for endpoint, account in coverage.empty_discovery:
        query = select(func.count()).where(
            lines_t.c.source == source,
            lines_t.c.present.is_(True),
            lines_t.c.month.in_([str(m) for m in coverage.months]),
        )
        if account is not None:
            query = query.where(lines_t.c.account == account)
        tracked = int((await conn.execute(query)).scalar_one())
        if tracked:
            listed = "contracts" if account is None else f"products for contract {account}"
            raise BadProviderDataError(
                source,
                endpoint,
                f"listed no {listed}, but {plural(tracked, 'line')} of the months pulled "
                f"{'is' if tracked == 1 else 'are'} tracked there: an empty discovery is not an "
                "empty account, so nothing was changed",
            )


async def _lock_source(conn: AsyncConnection, source: str) -> None:
    """Serialize the reconcile transactions of one source across processes (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": source})


async def _store_invoices(
    conn: AsyncConnection,
    source: str,
    coverage: Coverage,
    invoice_lines: Sequence[InvoiceLine],
    run_id: int,
) -> None:
    months = [str(m) for m in coverage.months]
    await conn.execute(
        delete(invoices_t).where(invoices_t.c.source == source, invoices_t.c.month.in_(months))
    )
    rows = [
        {
            "source": source,
            "account": line.account,
            "month": str(line.month),
            "usage_type": line.usage_type,
            "product_name": line.product_name,
            "region": line.region,
            "units": line.units,
            "amount": line.amount,
            "currency": line.currency,
            "run_id": run_id,
            "invoice_id": line.invoice_id,
            "position": line.position,
            "description": line.description,
            "unit": line.unit,
            "billing_start": line.billing_start,
            "billing_end": line.billing_end,
        }
        for line in invoice_lines
        if str(line.month) in months
    ]
    if rows:
        names = list(rows[0])
        check_lengths(
            source,
            "an invoice line",
            text_limits(invoices_t, names),
            [list(r.values()) for r in rows],
        )
        await conn.execute(insert(invoices_t), rows)


def expectations_for(settings: Settings, source: str) -> list[ExpectationSettings]:
    return [e for e in settings.expectations if fnmatchcase(source, e.source)]


def month_lines_query(source: str, months: Sequence[Month], *, services: bool) -> Select[Any]:
    """The query of :func:`month_lines` (without services: on the account-level index)."""
    query = select(
        lines_t.c.service_name,
        lines_t.c.source,
        lines_t.c.provider,
        lines_t.c.account,
        lines_t.c.product,
        lines_t.c.product_name,
        lines_t.c.usage_type,
        lines_t.c.region,
        lines_t.c.service,
        lines_t.c.month,
        lines_t.c.quantity,
        lines_t.c.unit,
        lines_t.c.status,
        lines_t.c.period_start,
        lines_t.c.measure_kind,
        lines_t.c.billable,
    ).where(
        lines_t.c.source == source,
        lines_t.c.month.in_([str(m) for m in months]),
        lines_t.c.present.is_(True),
    )
    if not services:  # the account-level lines' index: its condition, as a literal
        query = query.where(lines_t.c.service == literal_column("''"))
    return query


async def month_lines(
    conn: AsyncConnection,
    source: str,
    months: Sequence[Month],
    *,
    services: bool,
    teams: Sequence[TeamSettings] = (),
) -> list[MonthLine]:
    """The source's present lines of ``months``, each with its owner under ``teams``."""
    query = month_lines_query(source, months, services=services)
    return [
        MonthLine(
            r.source,
            r.provider,
            r.account,
            r.product,
            r.product_name,
            r.usage_type,
            r.region,
            r.service,
            Month.parse(r.month),
            r.quantity,
            r.unit,
            LineStatus(r.status),
            r.period_start,
            MeasureKind(r.measure_kind),
            r.billable,
            owner_of(teams, r) if teams else "",
        )
        for r in (await conn.execute(query)).all()
    ]


async def stored_invoice_lines(
    conn: AsyncConnection, source: str, months: Sequence[Month]
) -> list[InvoiceLine]:
    query = (
        select(invoices_t)
        .where(invoices_t.c.source == source, invoices_t.c.month.in_([str(m) for m in months]))
        .order_by(invoices_t.c.id)
    )
    return [invoice_from_row(r) for r in (await conn.execute(query)).all()]


async def _review(
    conn: AsyncConnection,
    settings: Settings,
    source: str,
    coverage: Coverage,
    ingest: IngestResult,
    run_id: int,
    today: date,
    now: datetime,
    *,
    costs: list[cost_store.CostGauge] | None = None,
    staged_stats: Set[StatKey] | None = None,
) -> ItemUpdates:
    """Raise drift items for this run's changes and re-evaluate the source's expectations
    (and, where rates are declared, fill ``costs`` with the open month's)."""
    expectations = expectations_for(settings, source)
    reviewable = [c for c in ingest.changes if c.reviewable]
    drift = await quiet_not_billable(conn, reviewable, expectations)
    priced = None
    if cost_store.prices_anything(settings):
        provider = settings.source(source).provider
        priced = await cost_store.load_context(conn, settings, source, provider, coverage.months)
        drift = cost_store.with_impacts(priced, drift, reviewable)
        if costs is not None:
            costs.extend(cost_store.open_month_gauges(priced, source, today))
    updates = await items_store.record_items(
        conn,
        [Evaluated(item, drift_values_hash(item)) for item in drift],
        run_id=run_id,
        now=now,
        keep_open_before=True,
        line_ids={change_fingerprint(c.kind, c.key): c.line_id for c in reviewable},
    )
    undone = await items_store.resolve_undone(
        conn, {c.line_id: c.after for c in ingest.changes if c.after is not None}, now
    )
    if undone:
        taken_back = {item.fingerprint for item in undone}
        updates.raised = [item for item in updates.raised if item.fingerprint not in taken_back]
        updates.resolved += undone
    left = left_window_items(
        source,
        await collecting_months_before(conn, source, coverage.months[0]),
        settings.severities,
    )
    if left:
        flagged = await items_store.record_items(
            conn,
            [Evaluated(item, drift_values_hash(item)) for item in left],
            run_id=run_id,
            now=now,
            keep_open_before=True,
        )
        updates.raised += flagged.raised
        updates.values_hashes.update(flagged.values_hashes)
    back = [c for c in ingest.changes if c.kind == ChangeKind.REAPPEARED]
    if back:
        updates.resolved += await items_store.resolve_fingerprints(
            conn, [fp for c in back for fp in items_store.absence_fingerprints(c)], now
        )

    await apply_measure_kinds(
        conn,
        source,
        settings.measures,
        coverage.months,
        run_id=run_id,
        wrote_lines=bool(ingest.versions_added),
        staged_stats=staged_stats,
        updated_ids=ingest.updated_ids,
        first_pull=ingest.first_pull,
    )
    lines = await month_lines(
        conn,
        source,
        coverage.months,
        services=reads_services(expectations),
        teams=settings.teams,
    )
    invoices = await stored_invoice_lines(conn, source, coverage.months)
    forecasts = await source_forecast_inputs(
        conn,
        settings,
        source,
        pull_instant(today, now),
        services=reads_services(expectations),
    )
    evaluated = evaluate(expectations, lines, today, forecasts) + check_provider_invoices(
        lines, invoices, expectations
    )
    if priced is not None:
        evaluated = cost_store.finding_impacts(priced, evaluated)
        evaluated += await cost_store.cost_findings(
            conn,
            priced,
            source,
            settings.source(source).provider,
            coverage.months,
            today,
            run_id,
            now,
            forecasts,
        )
    found = await items_store.record_items(
        conn, evaluated, run_id=run_id, now=now, keep_open_before=False
    )
    updates.raised += found.raised
    updates.values_hashes.update(found.values_hashes)
    updates.resolved += await items_store.resolve_missing(
        conn,
        source=source,
        months=coverage.months,
        current={e.item.fingerprint for e in evaluated},
        category=ItemCategory.FINDING,
        now=now,
        hold=unmatched_months(expectations, lines),
    )
    return updates
