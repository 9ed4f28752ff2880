"""Recognizing a re-pull that cannot change anything, without comparing it line by line.

While a pull is staged, every page's rows (all the columns staging keeps, in the pages and the
order the provider returned them) are folded into a running hash. At reconcile that hash is combined
with everything else the comparison reads: the coverage, the months whose derived status the
state holds as finalized (they decide the status the store keeps) and the number of the
source's tracked lines. A succeeded run stores the combination as it stands after its own
writes.

The next run of the source may skip the comparison only if the latest succeeded run of the
source stored the same digest and no tracked line of the source was written by a later run
(inserted, rewritten or marked vanished): the state then holds exactly that run's snapshot,
so every staged line matches its tracked line, none is new and none vanished. Any other
case, or any doubt, takes the full comparison.

A succeeded run also stores each page's own digest (``pull_runs.page_digests``). The next run
of the source keeps its pages packed, unread, as long as they match those from the first page
on (:class:`reconciler.store.staging.Stager`): a re-pull that turns out unchanged then writes
no staged line at all, and one that differs unpacks what it kept, once, before comparing.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b
from typing import Any, Final

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.providers.base import Coverage
from reconciler.store.runs import SUCCEEDED, coverage_json
from reconciler.store.tables import LineVersion, PullRun

runs_t = PullRun.__table__  # type: ignore[attr-defined]
versions_t = LineVersion.__table__  # type: ignore[attr-defined]


PAGE_DIGEST_CHARS: Final = 32  # hex characters of one page's digest
_ROWS_ENCODER: Final = msgspec.msgpack.Encoder()
_ROWS_DECODER: Final = msgspec.msgpack.Decoder(list[tuple[Any, ...]])


def pack_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    """A page's rows as bytes that depend on their values alone, in order (MessagePack: text,
    None and booleans each their own kind)."""
    return _ROWS_ENCODER.encode(rows)


def unpack_rows(packed: bytes) -> list[tuple[Any, ...]]:
    """The rows :func:`pack_rows` packed."""
    return _ROWS_DECODER.decode(packed)


def page_digest(parts: Sequence[bytes]) -> str:
    """The digest of one page packed in ``parts`` (:data:`PAGE_DIGEST_CHARS` hex
    characters)."""
    digest = blake2b(digest_size=PAGE_DIGEST_CHARS // 2)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class SnapshotHash:
    """The running hash of a pull's staged pages (:func:`pack_rows`), in stream order."""

    def __init__(self) -> None:
        self._hash = blake2b(digest_size=32)

    def add(self, packed: bytes) -> None:
        self._hash.update(len(packed).to_bytes(8, "big"))
        self._hash.update(packed)

    def digest(self) -> bytes:
        return self._hash.digest()


def run_digest(
    staged: bytes, coverage: Coverage, finalized: Sequence[str], source_lines: int
) -> str:
    """The digest of one comparison's inputs (64 hex characters)."""
    combined = blake2b(digest_size=32)
    parts = (
        staged,
        coverage_json(coverage).encode(),
        repr((coverage.derived_statuses, coverage.empty_discovery)).encode(),
        ",".join(finalized).encode(),
        str(source_lines).encode(),
    )
    for part in parts:
        combined.update(len(part).to_bytes(8, "big"))
        combined.update(part)
    return combined.hexdigest()


async def unchanged_since_last_run(conn: AsyncConnection, source: str, digest: str) -> bool:
    """Whether the latest succeeded run of ``source`` compared the same inputs and no run
    wrote a tracked line of the source after it."""
    last = (
        await conn.execute(
            select(runs_t.c.id, runs_t.c.snapshot_digest)
            .where(runs_t.c.source == source, runs_t.c.status == SUCCEEDED)
            .order_by(runs_t.c.id.desc())
            .limit(1)
        )
    ).first()
    if last is None or last.snapshot_digest != digest:
        return False
    # A line of the source is written (inserted, rewritten, marked vanished) only by a run of
    # the source, which leaves a version row: the source's later runs, few and found by the
    # runs' source index, are looked up in the versions' run index, not in every line.
    later_runs = select(runs_t.c.id).where(runs_t.c.source == source, runs_t.c.id > last.id)
    written_since = select(versions_t.c.id).where(versions_t.c.run_id.in_(later_runs)).limit(1)
    return (await conn.execute(written_since)).first() is None
