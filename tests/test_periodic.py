"""Repeating work is stopped between two runs, never cancelled in the middle of one."""

from __future__ import annotations

import asyncio
from typing import Any

from reconciler.periodic import Repeating, run_to_end


class Body:
    """A run that waits for the test to let it finish, recording how each run ended."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.ends: list[str] = []

    async def __call__(self) -> bool:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.ends.append("cancelled")
            raise
        self.ends.append("finished")
        return True


async def cancel_twice_then_release(waiting: asyncio.Task[Any], body: Body) -> tuple[Any]:
    """Cancel ``waiting`` twice while ``body`` runs; it must not end before ``body`` is
    released. Its outcome, once released."""
    waiting.cancel()
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.sleep(0)
    assert not waiting.done()
    body.release.set()
    return await asyncio.gather(waiting, return_exceptions=True)


async def test_stop_between_runs_ends_it_without_a_run() -> None:
    body = Body()
    repeating = Repeating(3600, body, name="idle")
    async with asyncio.timeout(10):
        await repeating.stop()
        await repeating.stop()  # a second stop returns at once
    assert body.ends == []


async def test_stop_during_a_run_waits_for_it_and_never_cancels_it() -> None:
    body = Body()
    repeating = Repeating(0, body, name="busy")
    async with asyncio.timeout(10):
        await body.started.wait()
        stopping = asyncio.create_task(repeating.stop())
        await asyncio.sleep(0)
        assert not stopping.done()  # the run in progress is waited for
        body.release.set()
        await stopping
    assert body.ends == ["finished"]


async def test_a_cancelled_stopper_still_lets_the_run_finish_then_is_cancelled() -> None:
    body = Body()
    repeating = Repeating(0, body, name="busy")
    async with asyncio.timeout(10):
        await body.started.wait()
        stopping = asyncio.create_task(repeating.stop())
        await asyncio.sleep(0)
        # Twice: the cancels reach neither the run nor its database connection.
        results = await cancel_twice_then_release(stopping, body)
    assert isinstance(results[0], asyncio.CancelledError)
    assert body.ends == ["finished"]


async def test_a_body_returning_false_ends_the_repetition() -> None:
    runs: list[int] = []
    ran = asyncio.Event()

    async def once() -> bool:
        runs.append(1)
        ran.set()
        return False

    repeating = Repeating(0, once, name="once")
    async with asyncio.timeout(10):
        await ran.wait()
        await repeating.stop()
    assert runs == [1]


async def test_run_to_end_keeps_a_cancel_of_its_caller_from_the_task() -> None:
    body = Body()
    task = asyncio.create_task(body())
    waiting = asyncio.create_task(run_to_end(task))
    async with asyncio.timeout(10):
        await body.started.wait()
        results = await cancel_twice_then_release(waiting, body)
    assert isinstance(results[0], asyncio.CancelledError)
    assert (body.ends, task.result()) == (["finished"], True)
