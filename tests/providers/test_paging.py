"""Cursor chains: short pages are fine; early ends, oversized pages and loops are refused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from reconciler.errors import BadProviderDataError
from reconciler.providers.paging import CursorGuard

from .conftest import Sandbox, collect

SERVICE = "fastly.service_usage_metrics"


def records(first: int, count: int) -> list[dict[str, Any]]:
    return [{"service_id": f"S{i}"} for i in range(first, first + count)]


def follow(guard: CursorGuard, pages: Sequence[tuple[list[dict[str, Any]], int | None]]) -> int:
    cursor, read = "", 0
    for index, (page, total) in enumerate(pages):
        last = index == len(pages) - 1
        following = guard.advance(cursor, None if last else f"c{index}", len(page), total, page)
        read += len(page)
        if following is None:
            break
        cursor = following
    return read


def test_pages_shorter_than_the_limit_are_a_complete_listing() -> None:
    # A provider capping its pages at 7 although 10 were asked for.
    guard = CursorGuard("src", "/x", limit=10)
    pages = [(records(0, 7), 20), (records(7, 7), 20), (records(14, 6), 20)]
    assert follow(guard, pages) == 20


def test_a_chain_that_ends_before_meta_total_is_refused() -> None:
    guard = CursorGuard("src", "/x", limit=10)
    with pytest.raises(
        BadProviderDataError,
        match=r"the pages ended after 10 records, but meta\.total says 20: the listing is",
    ):
        follow(guard, [(records(0, 10), 20)])


def test_a_page_with_more_records_than_asked_is_refused() -> None:
    guard = CursorGuard("src", "/x", limit=10)
    with pytest.raises(BadProviderDataError, match="page 1 has 11 records, more than the 10"):
        follow(guard, [(records(0, 11), None)])


def test_fresh_cursors_over_repeating_data_stop_the_pull() -> None:
    guard = CursorGuard("src", "/x", limit=10)
    with pytest.raises(BadProviderDataError, match="page 3 repeats the records of page 2"):
        follow(
            guard, [(records(0, 10), None), (records(10, 10), None)] + [(records(10, 10), None)] * 5
        )


def test_a_listing_that_never_ends_is_bounded_by_pages() -> None:
    guard = CursorGuard("src", "/x", limit=10, max_pages=50)
    with pytest.raises(BadProviderDataError, match="more than 50 pages"):
        follow(guard, [(records(i * 10, 10), None) for i in range(100)])


async def test_a_fastly_listing_cut_short_of_meta_total_fails_the_pull(sandbox: Sandbox) -> None:
    # Every page says the listing holds many more records than the cursor chain delivers.
    sandbox.add_faults({"kind": "lie_total", "total": 100_000, "endpoint": SERVICE})
    with pytest.raises(BadProviderDataError, match=r"but meta\.total says 100000"):
        await collect(sandbox.fastly(page_limit=10), sandbox.state.today)
