"""Cursor pagination that cannot loop and cannot return more than the provider announced.

A cursor seen before means the provider would serve the same pages again: the pull stops
with an error instead of looping. More records than ``meta.total``, or more pages than
``meta.total`` allows at the page size asked for, is as wrong: the data cannot be trusted.
"""

from __future__ import annotations

from typing import Any, NoReturn

from reconciler.errors import BadProviderDataError
from reconciler.providers.normalize import show


class CursorGuard:
    """Follows one chain of cursor pages; :meth:`advance` returns the next cursor or None."""

    def __init__(self, source: str, endpoint: str, limit: int) -> None:
        self.source = source
        self.endpoint = endpoint
        self.limit = limit
        self.pages = 0
        self.records = 0
        self._seen: set[str] = set()

    def advance(self, sent: str, next_cursor: Any, records: int, total: int | None) -> str | None:
        """Account for one page that answered ``sent``; None when it was the last one."""
        self.pages += 1
        self.records += records
        if total is not None:
            if self.records > total:
                self._fail(
                    f"page {self.pages} brings the records read to {self.records}, "
                    f"more than meta.total {total}"
                )
            allowed = -(-total // self.limit) + 1 if total else 1
            if self.pages > allowed:
                self._fail(
                    f"page {self.pages} is past meta.total {total} at limit {self.limit} "
                    f"({allowed} page(s) at most)"
                )
        if next_cursor is None or next_cursor == "":
            return None
        if not isinstance(next_cursor, str):
            got = show(next_cursor)
            self._fail(f"page {self.pages}: meta.next_cursor is not a string (got {got})")
        if next_cursor == sent or next_cursor in self._seen:
            self._fail(
                f"page {self.pages}: meta.next_cursor {show(next_cursor)} was already used: "
                "the provider would serve the same pages again"
            )
        self._seen.add(sent)
        self._seen.add(next_cursor)
        return next_cursor

    def _fail(self, message: str) -> NoReturn:
        raise BadProviderDataError(self.source, self.endpoint, message)
