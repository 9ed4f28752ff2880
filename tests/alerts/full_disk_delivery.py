"""Alert delivery on a disk that fills the instant Slack accepts a message (a real full disk:
run inside a tiny tmpfs by :mod:`tests.full_disk`, see ``test_outbox_full_disk``).

``python -m tests.alerts.full_disk_delivery DIR PHASE`` prints one JSON line:

- ``lives``: two messages queued; Slack accepts #1, the disk is full, its answer cannot be
  recorded; delivery past the claim's lease while still full; space freed; delivery resumed.
- ``dies``: one message queued; Slack accepts it, the disk is full, the process dies
  before it could record the answer (``os._exit``: its in-memory journal is lost).
- ``restarts``: after space was freed, a new deliverer on the state ``dies`` left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.alerts.delivery import DeliveryReport, deliver_due
from reconciler.alerts.outbox import outbox_t
from reconciler.alerts.recording import OutcomeJournal
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.sandbox.slack import SlackStandIn
from reconciler.store.db import create_engine, upgrade
from tests.alerts.outbox_support import (
    T0,
    WEBHOOK_ENV,
    FakeTime,
    alert_settings,
    header,
    queue_runs,
)
from tests.full_disk import fill, free, on_tiny_filesystem

PHASES = ("lives", "dies", "restarts")


async def _engine(directory: Path, name: str, *, fresh: bool) -> AsyncEngine:
    url = f"sqlite+aiosqlite:///{directory / name}"
    if fresh:
        engine = create_engine(url, create=True)
        await upgrade(engine)
        await queue_runs(engine, alert_settings(), 2 if name == "lives.db" else 1)
        await engine.dispose()
        # An empty write-ahead log: every later write needs new space on the disk.
        with contextlib.closing(sqlite3.connect(directory / name)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return create_engine(url)


async def _rows(engine: AsyncEngine) -> list[list[Any]]:
    async with engine.connect() as conn:
        query = select(outbox_t.c.state, outbox_t.c.attempts).order_by(outbox_t.c.id)
        return [[row.state, row.attempts] for row in await conn.execute(query)]


def _figures(report: DeliveryReport) -> dict[str, int]:
    return {"sent": report.sent, "attempted": report.attempted, "unrecorded": report.unrecorded}


async def run(directory: Path, phase: str) -> dict[str, Any]:
    name = "lives.db" if phase == "lives" else "dies.db"
    engine = await _engine(directory, name, fresh=phase != "restarts")
    filled: list[int] = []
    async with SlackStandIn() as slack, aiohttp.ClientSession() as session:

        def fill_once(_webhook: str, _payload: Any) -> None:
            if not filled:
                filled.append(fill(directory))

        if phase != "restarts":
            slack.on_accepted = fill_once
        journal = OutcomeJournal()

        async def deliver(minutes: int) -> dict[str, int]:
            report = await deliver_due(
                engine,
                alert_settings(),
                SlackWebhookClient(session, timeout_s=30),
                now=T0 + timedelta(minutes=minutes),
                environ={WEBHOOK_ENV: slack.webhook_url()},
                pacer=FakeTime().pacer(),
                journal=journal,
            )
            return _figures(report)

        passes = [await deliver(0)]
        if phase == "dies":
            print(json.dumps({"passes": passes, "filled": filled, "received": _titles(slack)}))
            sys.stdout.flush()
            os._exit(0)  # dies with the answer in memory only
        if phase == "lives":
            passes.append(await deliver(6))  # past the claim's lease, the disk still full
            free(directory)
            passes.append(await deliver(11))
        else:
            passes.append(await deliver(6))  # past the dead deliverer's claim
        received = _titles(slack)
    rows = await _rows(engine)
    await engine.dispose()
    return {"passes": passes, "filled": filled, "received": received, "rows": rows}


ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
"$PY" -m tests.alerts.full_disk_delivery "$TINY" lives
"$PY" -m tests.alerts.full_disk_delivery "$TINY" dies
rm -f "$TINY/filler"
"$PY" -m tests.alerts.full_disk_delivery "$TINY" restarts
"""


@dataclass(frozen=True)
class Phases:
    lives: dict[str, Any]
    dies: dict[str, Any]
    restarts: dict[str, Any]
    stderr: str


def on_full_disk(work: Path) -> Phases:
    """The three phases, one after the other, on one 2 MiB tmpfs under ``work``."""
    tiny = work / "state"
    tiny.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "SLACK_"))}
    result = on_tiny_filesystem(
        tiny, SCRIPT, cwd=ROOT, env={**env, "PY": sys.executable}, size="2m"
    )
    if result.returncode != 0 or len(result.stdout.splitlines()) != 3:
        raise RuntimeError(f"the full-disk delivery did not run: {result.stderr[-2000:]}")
    lives, dies, restarts = (json.loads(line) for line in result.stdout.splitlines())
    return Phases(lives, dies, restarts, result.stderr)


def broken_promises(phases: Phases) -> list[str]:
    """What README's delivery guarantee forbids and these phases show (none: kept)."""
    broken = []
    if "Traceback" in phases.stderr:
        broken.append("a traceback")
    if "database or disk is full" not in phases.stderr:
        broken.append("the disk never refused a write")
    if phases.lives["received"] != [f"reconciler · prod · run {n}" for n in (1, 2)]:
        broken.append(f"while it lived, Slack got {phases.lives['received']}")
    if phases.lives["rows"] != [["sent", 1], ["sent", 1]]:
        broken.append(f"while it lived, rows ended {phases.lives['rows']}")
    repeat = ["[possible repeat of alert #1] reconciler · prod · run 1"]
    if phases.dies["received"] + phases.restarts["received"] != [
        "reconciler · prod · run 1",
        *repeat,
    ]:
        broken.append("after a crash, the re-send was not the one labelled repeat")
    if phases.restarts["rows"] != [["sent", 2]]:
        broken.append(f"after a crash, rows ended {phases.restarts['rows']}")
    return broken


def _titles(slack: SlackStandIn) -> list[str]:
    return [header(m) for m in slack.received.get("default", [])]


def main() -> None:
    directory, phase = Path(sys.argv[1]), sys.argv[2]
    if phase not in PHASES:
        raise SystemExit(f"phase: one of {', '.join(PHASES)}")
    print(json.dumps(asyncio.run(run(directory, phase))))


if __name__ == "__main__":
    main()
