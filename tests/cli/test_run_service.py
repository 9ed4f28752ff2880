"""The daemon's event loop ends even when a task left behind never does."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from reconciler.cli import run_service

# A grace that always runs out: the stubborn task below never ends, however fast the machine.
GRACE_S = 0.2


async def _stubborn() -> None:
    """Like aiosqlite's close after its worker thread has gone: cancelled, it waits again,
    on a future nobody will ever resolve."""
    never = asyncio.get_running_loop().create_future()
    try:
        await asyncio.Event().wait()
    finally:
        await never


def test_a_task_that_outlives_its_cancel_is_named_and_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finished: list[str] = []

    async def polite() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            finished.append("polite")

    left: list[asyncio.Task[None]] = []

    async def main() -> int:
        left.append(asyncio.create_task(_stubborn(), name="stubborn"))
        left.append(asyncio.create_task(polite(), name="polite"))
        await asyncio.sleep(0)
        return 7

    with caplog.at_level(logging.WARNING, logger="reconciler.cli"):
        assert run_service(main(), grace_s=GRACE_S) == 7
    # The task that ends on its cancel was waited for; the other is named, not waited for.
    assert finished == ["polite"]
    assert [task.done() for task in left] == [False, True]
    assert [r.getMessage() for r in caplog.records] == [
        "exiting with 1 tasks that did not end within 0.2s of their cancel: stubborn (_stubborn)"
    ]
    # The task left behind is destroyed (asyncio logs it as pending) here, not in whichever
    # test this process runs next.
    left.clear()
    gc.collect()


def test_without_tasks_left_it_returns_the_result_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> str:
        await asyncio.sleep(0)
        return "done"

    with caplog.at_level(logging.WARNING, logger="reconciler.cli"):
        assert run_service(main()) == "done"
    assert caplog.records == []
