"""Short work repeated on an interval beside a longer task, and stopped without a cancel.

A lease renewal or a run's heartbeat is one small database write. Cancelling it in the middle
of its statement makes SQLAlchemy invalidate the connection, and a second cancel while that
connection closes makes SQLAlchemy force it shut under aiosqlite's own graceful close, which
then waits for ever for a worker thread that has gone; at exit ``asyncio.run`` waits for that
close in turn, and the process never ends. So :class:`Repeating` is never cancelled by its
owner: :meth:`Repeating.stop` ends it while it waits for its next turn, or lets the run in
progress finish first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Repeating:
    """Run ``body`` every ``interval_s`` seconds from now until :meth:`stop` (or until
    ``body`` returns False). ``body`` handles its own errors."""

    def __init__(
        self, interval_s: float, body: Callable[[], Awaitable[bool]], *, name: str
    ) -> None:
        self.interval_s = interval_s
        self._body = body
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._repeat(), name=name)

    async def _repeat(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.interval_s):
                    await self._stopping.wait()
                return
            except TimeoutError:
                pass
            if not await self._body():
                return

    async def stop(self) -> None:
        """End the repetition: at once between two runs, else once the run in progress has
        finished. Calling it again returns at once. A cancel of the caller meanwhile does
        not reach the run; it is raised here once the run is over."""
        self._stopping.set()
        await run_to_end(self._task)


async def run_to_end(task: asyncio.Task[T]) -> T:
    """``task``'s result, once it has ended: a cancel of the caller meanwhile does not reach
    the task (a database write in progress is never cut in the middle of its statement); it
    is raised here once the task is over."""
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait([task])  # waiting, unlike awaiting, never cancels the task
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled
    return task.result()
