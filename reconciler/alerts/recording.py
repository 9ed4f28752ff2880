"""Recording what a destination answered, so that an accepted message is never sent twice.

The answer to a message is recorded in its own short transaction. When that write fails
(a full disk, a database locked beyond its busy timeout, a lost connection) the answer is
not dropped: the :class:`OutcomeJournal` keeps it in memory and writes it before anything
else is claimed or sent, so a message the destination accepted is not sent again while
the deliverer lives. Only if the process dies first does the row's lease expire and the
message go out again, marked as a possible repeat (see :mod:`reconciler.alerts.delivery`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.alerts.blocks import record_block
from reconciler.alerts.outbox import PENDING, SENDING, outbox_t
from reconciler.alerts.routes import SOURCE_ROUTE

log = logging.getLogger(__name__)

Destination = tuple[str, str]  # (route, source), source "" unless routed to a source's own


def destination_of(route: str, source: str) -> Destination:
    return (route, source if route == SOURCE_ROUTE else "")


def in_destination(destination: Destination) -> ColumnElement[bool]:
    route, source = destination
    if route != SOURCE_ROUTE:
        return outbox_t.c.route == route  # type: ignore[no-any-return]
    return and_(outbox_t.c.route == route, outbox_t.c.source == source)


@dataclass(frozen=True, slots=True)
class Block:
    """A destination that refused a message for reasons of its own (see ``blocks``)."""

    key: str
    destination: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    """The row update one answer calls for, guarded by the claim's token (``attempts``).

    ``hold`` makes the destination's other pending messages wait until the row's new
    ``next_attempt_at`` (a failing destination keeps its order); ``block`` stops it.
    """

    id: int
    source: str
    attempts: int
    values: Mapping[str, Any]
    hold: Destination | None = None
    block: Block | None = None


async def write_outcome(conn: AsyncConnection, outcome: Outcome) -> bool:
    """Apply ``outcome``; False if the claim was lost (another deliverer took the row)."""
    result = await conn.execute(
        update(outbox_t)
        .where(
            outbox_t.c.id == outcome.id,
            outbox_t.c.state == SENDING,
            outbox_t.c.attempts == outcome.attempts,
        )
        .values(**outcome.values)
    )
    if outcome.hold is not None:
        until = outcome.values["next_attempt_at"]
        await conn.execute(
            update(outbox_t)
            .where(
                in_destination(outcome.hold),
                outbox_t.c.state == PENDING,
                outbox_t.c.next_attempt_at < until,
            )
            .values(next_attempt_at=until)
        )
    if outcome.block is not None:
        b = outcome.block
        await record_block(conn, key=b.key, destination=b.destination, reason=b.reason, at=b.at)
    return bool(result.rowcount)


def describe_db_error(error: BaseException) -> str:
    """The database's own one-line reason (``database or disk is full``), no SQL, no values."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0][:200]}" if text else type(cause).__name__


@dataclass
class OutcomeJournal:
    """Answers received but not recorded yet, oldest first; one per deliverer, kept
    between delivery passes (the daemon holds one for its whole life)."""

    outcomes: list[Outcome] = field(default_factory=list)
    last_error: str | None = None

    def __len__(self) -> int:
        return len(self.outcomes)

    async def record(self, engine: AsyncEngine, outcome: Outcome) -> bool | None:
        """Record ``outcome`` after any kept before it. True: recorded; False: recorded
        but the claim had been lost; None: the database refused, the outcome is kept."""
        self.outcomes.append(outcome)
        written = await self.flush(engine)
        if written is None:
            return None
        return written.get(outcome.id, True)

    async def flush(self, engine: AsyncEngine) -> dict[int, bool] | None:
        """Write every kept outcome in order; None if the database still refuses (the
        outcomes stay kept), else whether each one's claim was still held."""
        held: dict[int, bool] = {}
        while self.outcomes:
            outcome = self.outcomes[0]
            try:
                async with engine.begin() as conn:
                    held[outcome.id] = await write_outcome(conn, outcome)
            except (DBAPIError, OSError) as e:
                error = describe_db_error(e)
                if error != self.last_error:
                    log.warning(
                        "alerts: could not record the answer to message #%d (%s); kept in "
                        "memory and recorded before anything else is sent",
                        outcome.id,
                        error,
                    )
                self.last_error = error
                return None
            self.outcomes.pop(0)
            if self.last_error is not None:
                log.info("alerts: recorded the answer to message #%d after all", outcome.id)
        self.last_error = None
        return held
