"""A period the provider re-dates is the same line: Akamai may send a month's period with
other dates once it finalizes it (its own example has a 2020-07 period dated 2017-07-01..31).

A line's key includes its period's start, so a re-dated period looks like a line that
disappeared plus a new one. Before the diff, tracked lines that this pull did not return are
paired with staged lines that are new, when both have the same identity but the period (same
source, account, product, usage type, region, service and month) and come in equal numbers;
each pair's tracked line takes the new key, so the diff then compares its values as
those of one line (``finalized``, ``restated``...). A month whose periods are split or merged
(one period becoming two) is not a re-dating and is left to the diff as it is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlalchemy import Table, bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.store.tables import UsageLineRow

lines_t = UsageLineRow.__table__  # type: ignore[attr-defined]

_IDENTITY = ("account", "product", "usage_type", "region", "service", "month")


def _identity(row: Any) -> tuple[str, ...]:
    return tuple(str(getattr(row, name)) for name in _IDENTITY)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def pair_redated(gone: Iterable[Any], fresh: Iterable[Any]) -> list[tuple[Any, Any]]:
    """(tracked, staged) pairs of one line under new period dates, in period order."""
    by_identity: dict[tuple[str, ...], tuple[list[Any], list[Any]]] = defaultdict(lambda: ([], []))
    for row in gone:
        by_identity[_identity(row)][0].append(row)
    for row in fresh:
        if _identity(row) in by_identity:
            by_identity[_identity(row)][1].append(row)
    pairs: list[tuple[Any, Any]] = []
    for old, new in by_identity.values():
        if old and len(old) == len(new):
            start = lambda r: _as_date(r.period_start)  # noqa: E731
            pairs.extend(zip(sorted(old, key=start), sorted(new, key=start), strict=True))
    return pairs


async def rekey_redated(
    conn: AsyncConnection, staged: Table, *, run_id: int, not_returned: Any
) -> dict[int, tuple[date, date]]:
    """Give re-dated tracked lines their new key and dates; returns line id → old dates.

    ``staged`` is the run's staging table; ``not_returned`` selects the tracked lines of the
    pull's coverage that it did not return (the lines that would otherwise have disappeared).
    """
    gone = (
        await conn.execute(
            select(
                lines_t.c.id,
                lines_t.c.period_start,
                lines_t.c.period_end,
                *[lines_t.c[name] for name in _IDENTITY],
            ).where(not_returned)
        )
    ).all()
    if not gone:
        return {}
    known = exists().where(lines_t.c.key_hash == staged.c.key_hash)
    fresh = (
        await conn.execute(
            select(
                staged.c.key_hash,
                staged.c.period_start,
                staged.c.period_end,
                *[staged.c[name] for name in _IDENTITY],
            ).where(
                staged.c.run_id == run_id,
                staged.c.month.in_(sorted({row.month for row in gone})),
                ~known,
            )
        )
    ).all()
    pairs = pair_redated(gone, fresh)
    if pairs:
        await conn.execute(
            update(lines_t)
            .where(lines_t.c.id == bindparam("b_id"))
            # The key alone: the diff sees the dates differ, copies them and records a version.
            .values(key_hash=bindparam("b_key_hash")),
            [{"b_id": old.id, "b_key_hash": new.key_hash} for old, new in pairs],
        )
    return {old.id: (_as_date(old.period_start), _as_date(old.period_end)) for old, _ in pairs}
