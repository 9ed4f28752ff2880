"""How long the daemon's event loop was held: a task that asks to wake up at a steady pace
and measures how late it woke.

Everything the daemon does shares one event loop: pulls, alert delivery, the health endpoint,
lease renewals and the watchdog pings systemd restarts the service without. Work that holds
the loop for seconds (a big pull classified in one piece, a report rendered on the loop)
delays all of them; this probe measures it where it happens instead of guessing it from
missed pings. The longest stall is a metric (``reconciler_event_loop_longest_stall_seconds``)
and is logged when the daemon stops; a stall of ``warn_after_s`` or more is logged at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 0.05
WARN_AFTER_S = 1.0


class LoopLagProbe:
    """Sleeps ``interval_s`` again and again; a wake-up later than asked is a stall of the loop
    by that much (the probe can only wake when whatever holds the loop lets go)."""

    def __init__(
        self,
        interval_s: float = PROBE_INTERVAL_S,
        *,
        warn_after_s: float = WARN_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval_s = interval_s
        self.warn_after_s = warn_after_s
        self._clock = clock
        self._sleep = sleep
        self.longest_s = 0.0
        self.samples = 0

    def observe(self, asked_s: float, slept_s: float) -> float:
        """Record one wake-up ``slept_s`` after asking for ``asked_s``; the stall, in seconds."""
        stall = max(slept_s - asked_s, 0.0)
        self.samples += 1
        self.longest_s = max(self.longest_s, stall)
        if stall >= self.warn_after_s:
            log.warning("the event loop was held for %.2fs (nothing else could run)", stall)
        return stall

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            before = self._clock()
            await self._sleep(self.interval_s)
            self.observe(self.interval_s, self._clock() - before)

    def summary(self) -> str:
        return (
            f"longest event-loop stall {self.longest_s:.3f}s "
            f"({self.samples} samples every {self.interval_s:g}s)"
        )
