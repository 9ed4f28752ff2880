"""Cursor pagination that cannot loop, cannot run away and cannot end early unnoticed.

A chain of pages is refused (BadProviderDataError, so the pull fails and nothing changes) when

- a cursor was seen before: the provider would serve the same pages again;
- a page repeats the records of an earlier page, even under a fresh cursor;
- a page holds more records than the ``limit`` asked for;
- the records read pass ``meta.total``, or the chain ends before reaching it (a pull that
  stopped early would make every line it did not read look disappeared);
- it runs past :data:`MAX_PAGES` pages.

A page with fewer records than ``limit`` is fine: providers may cap their page size below it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final, NoReturn

from reconciler.errors import BadProviderDataError
from reconciler.providers.normalize import show

MAX_PAGES: Final = 100_000


def content_digest(records: Sequence[Any]) -> bytes:
    """A short digest of a page's records (their count, first and last: cheap at 10,000
    records a page), to recognize a page served twice."""
    ends = (len(records), records[0], records[-1]) if records else (0,)
    return hashlib.blake2b(repr(ends).encode(), digest_size=16).digest()


class CursorGuard:
    """Follows one chain of cursor pages; :meth:`advance` returns the next cursor or None."""

    def __init__(self, source: str, endpoint: str, limit: int, max_pages: int = MAX_PAGES) -> None:
        self.source = source
        self.endpoint = endpoint
        self.limit = limit
        self.max_pages = max_pages
        self.pages = 0
        self.records = 0
        self._seen: set[str] = set()
        self._contents: dict[bytes, int] = {}

    def advance(
        self,
        sent: str,
        next_cursor: Any,
        records: int,
        total: int | None,
        content: Sequence[Any] | None = None,
    ) -> str | None:
        """Account for one page that answered ``sent``; None when it was the last one.

        ``content`` (the page's records) lets the guard recognize repeated data."""
        self.pages += 1
        self.records += records
        self._check_size(records, total)
        if content is not None:
            self._check_new(content)
        if next_cursor is None or next_cursor == "":
            if total is not None and self.records < total:
                self._fail(
                    f"the pages ended after {self.records} records, but meta.total says "
                    f"{total}: the listing is incomplete"
                )
            return None
        if not isinstance(next_cursor, str):
            got = show(next_cursor)
            self._fail(f"page {self.pages}: meta.next_cursor is not a string (got {got})")
        if next_cursor == sent or next_cursor in self._seen:
            self._fail(
                f"page {self.pages}: meta.next_cursor {show(next_cursor)} was already used: "
                "the provider would serve the same pages again"
            )
        if self.pages >= self.max_pages:
            self._fail(f"more than {self.max_pages} pages: the listing does not end")
        self._seen.add(sent)
        self._seen.add(next_cursor)
        return next_cursor

    def _check_size(self, records: int, total: int | None) -> None:
        if records > self.limit:
            self._fail(
                f"page {self.pages} has {records} records, more than the {self.limit} asked for"
            )
        if total is not None and self.records > total:
            self._fail(
                f"page {self.pages} brings the records read to {self.records}, "
                f"more than meta.total {total}"
            )

    def _check_new(self, content: Sequence[Any]) -> None:
        digest = content_digest(content)
        earlier = self._contents.get(digest)
        if earlier is not None:
            self._fail(
                f"page {self.pages} repeats the records of page {earlier}: the provider "
                "hands out new cursors over the same data"
            )
        self._contents[digest] = self.pages

    def _fail(self, message: str) -> NoReturn:
        raise BadProviderDataError(self.source, self.endpoint, message)
