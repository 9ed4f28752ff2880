"""Runs recorded in the real store with their alerts queued, a simulated clock, row dumps."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.alerts.delivery import DeliveryPolicy, DeliveryReport, Pacer, deliver_due
from reconciler.alerts.outbox import enqueue_run_alerts, outbox_t
from reconciler.alerts.recording import OutcomeJournal
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.domain import PlanItem
from reconciler.providers.base import PullStats
from reconciler.reconcile.expectations import Evaluated
from reconciler.refresh import RunOutcome
from reconciler.sandbox.slack import SlackStandIn
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store import findings as items_store
from reconciler.store.findings import ItemUpdates, drift_values_hash
from tests.alerts.helpers import make_item

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
WEBHOOK_ENV = "TEST_SLACK_WEBHOOK_URL"


def alert_settings(**slack: Any) -> Settings:
    """Settings with ``[alerts.slack]`` (webhook from ``$TEST_SLACK_WEBHOOK_URL``)."""
    config: dict[str, Any] = {"webhook_url_env": WEBHOOK_ENV, **slack}
    return settings_from_mapping({"alerts": {"slack": config}})


async def record_run(
    engine: AsyncEngine,
    settings: Settings,
    items: Sequence[PlanItem],
    *,
    run_id: int,
    source: str = "prod",
    now: datetime = T0,
    resolve: Sequence[str] = (),
) -> tuple[RunOutcome, int]:
    """Record ``items`` as one run would (and resolve ``resolve``), queue its alerts in the
    same transaction; returns the outcome and the number of messages queued."""
    async with engine.begin() as conn:
        updates = await items_store.record_items(
            conn,
            [Evaluated(item, drift_values_hash(item)) for item in items],
            run_id=run_id,
            now=now,
            keep_open_before=False,
        )
        if resolve:
            updates.resolved += await items_store.resolve_fingerprints(conn, list(resolve), now)
        outcome = outcome_for(source, run_id, updates)
        queued = await enqueue_run_alerts(conn, settings, outcome, now=now)
    return outcome, queued


def outcome_for(source: str, run_id: int, updates: ItemUpdates) -> RunOutcome:
    return RunOutcome(source, "fastly", run_id, PullStats(), 0.0, items=updates)


async def enqueue_outcome(
    engine: AsyncEngine, settings: Settings, outcome: RunOutcome, now: datetime = T0
) -> int:
    async with engine.begin() as conn:
        return await enqueue_run_alerts(conn, settings, outcome, now=now)


async def outbox_rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(outbox_t).order_by(outbox_t.c.id))).all())


async def dump_tables(engine: AsyncEngine, tables: Sequence[str]) -> str:
    """Every value of every row of these tables, as text."""

    async def dump(conn: AsyncConnection) -> str:
        parts = []
        for table in tables:
            for row in (await conn.execute(text(f"SELECT * FROM {table}"))).all():
                parts.append(" ".join(str(value) for value in row))
        return "\n".join(parts)

    async with engine.connect() as conn:
        return await dump(conn)


@dataclass
class FakeTime:
    """A monotonic clock that only moves when something sleeps on it."""

    now_s: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds

    def pacer(self, min_interval_s: float = 1.0) -> Pacer:
        return Pacer(min_interval_s, sleep=self.sleep, monotonic=self.monotonic)


def fixed_policy(**overrides: Any) -> DeliveryPolicy:
    """Backoff without randomness (jitter at its middle) for exact expectations."""
    return DeliveryPolicy(jitter=lambda: 0.5, **overrides)


def header(message: dict[str, Any]) -> str:
    return str(message["blocks"][0]["text"]["text"])


def all_text(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


async def queue_runs(
    engine: AsyncEngine,
    settings: Settings,
    count: int,
    *,
    first_run: int = 1,
    source: str = "prod",
    now: datetime = T0,
) -> None:
    """One message per run, each about its own item."""
    for run_id in range(first_run, first_run + count):
        item = make_item(fingerprint=f"{source}-{run_id}")
        _, queued = await record_run(
            engine, settings, [item], run_id=run_id, source=source, now=now
        )
        assert queued == 1


class Deliverer:
    """``deliver_due`` against the stand-in with a simulated pacer."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        client: SlackWebhookClient,
        environ: dict[str, str],
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self.engine, self.settings, self.client = engine, settings, client
        self.environ = environ
        self.policy = policy or fixed_policy()
        self.time = FakeTime()
        self.journal = OutcomeJournal()  # one per deliverer, kept between passes

    async def __call__(self, now: datetime, **options: bool | int) -> DeliveryReport:
        async with asyncio.timeout(30):
            return await deliver_due(
                self.engine,
                self.settings,
                self.client,
                now=now,
                environ=self.environ,
                policy=self.policy,
                pacer=self.time.pacer(self.policy.min_interval_s),
                journal=self.journal,
                **options,  # type: ignore[arg-type]
            )


def runs_received(
    slack: SlackStandIn, webhook: str = "default", *, strip_repeat: bool = False
) -> list[int]:
    titles = [header(m) for m in slack.received.get(webhook, [])]
    if not strip_repeat:
        assert not [t for t in titles if "possible repeat" in t]
    return [int(t.rsplit(" ", 1)[1]) for t in titles]


@dataclass
class DiskFull:
    """While ``full`` is set, statements matching ``refuses`` fail the way the database
    driver reports a full disk (SQLite's ``database or disk is full``), at the driver."""

    refuses: Callable[[str], bool]
    full: bool = True
    refused: int = 0


@contextlib.contextmanager
def disk_full(engine: AsyncEngine, refuses: Callable[[str], bool]) -> Iterator[DiskFull]:
    from sqlalchemy import event

    fault = DiskFull(refuses)
    dbapi = engine.sync_engine.dialect.loaded_dbapi

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if fault.full and fault.refuses(statement):
            fault.refused += 1
            raise dbapi.OperationalError("database or disk is full")

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield fault
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
