"""An idle outbox never waits for the SQLite write lock.

The daemon delivers alerts every few seconds. With nothing to send, a delivery pass must not
queue for the write lock behind a long pull's apply transaction (a million-line import holds
it for tens of seconds): it would fail with "database is locked" after the busy timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import aiohttp

from reconciler.alerts.delivery import deliver_due
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.store.db import create_engine, upgrade
from tests.alerts.outbox_support import T0, WEBHOOK_ENV, alert_settings


async def test_an_empty_outbox_is_delivered_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    engine = create_engine(f"sqlite+aiosqlite:///{db}", create=True)
    await upgrade(engine)
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a long apply transaction, elsewhere
        async with aiohttp.ClientSession() as session, asyncio.timeout(10):
            report = await deliver_due(
                engine,
                alert_settings(),
                SlackWebhookClient(session),
                now=T0,
                environ={WEBHOOK_ENV: "http://127.0.0.1:9/services/T/B/x"},
            )
        assert (report.attempted, report.unconfigured) == (0, 0)
    finally:
        with contextlib.suppress(sqlite3.Error):
            writer.execute("ROLLBACK")
        writer.close()
        await engine.dispose()
