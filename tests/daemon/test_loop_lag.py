"""The loop-lag probe: a wake-up later than asked is measured as a stall of the event loop.

Its clock and its sleep are injected, so the stalls are exact and the test does not wait.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from reconciler.daemon.loop_lag import LoopLagProbe
from reconciler.daemon.service import Daemon
from reconciler.settings import settings_from_mapping


class SteppedClock:
    """Each sleep advances the clock by the next of ``slept``; the probe stops after the last."""

    def __init__(self, slept: list[float]) -> None:
        self.now = 1000.0
        self.slept = list(slept)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, asked_s: float) -> None:
        if not self.slept:
            raise asyncio.CancelledError
        self.now += self.slept.pop(0)


async def test_the_longest_late_wake_up_is_the_longest_stall(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = SteppedClock([0.05, 0.05, 2.55, 0.30, 0.05])
    probe = LoopLagProbe(0.05, warn_after_s=1.0, clock=clock, sleep=clock.sleep)

    with caplog.at_level(logging.WARNING), pytest.raises(asyncio.CancelledError):
        await probe.run()

    assert probe.samples == 5
    assert probe.longest_s == pytest.approx(2.5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["the event loop was held for 2.50s (nothing else could run)"]
    assert probe.summary() == "longest event-loop stall 2.500s (5 samples every 0.05s)"


def test_an_early_or_punctual_wake_up_is_no_stall() -> None:
    probe = LoopLagProbe(0.05)

    assert probe.observe(0.05, 0.05) == 0.0
    assert probe.observe(0.05, 0.01) == 0.0
    assert probe.longest_s == 0.0


def test_the_daemons_longest_stall_is_exported_as_a_metric() -> None:
    settings = settings_from_mapping({"sources": [{"name": "fastly", "provider": "fastly"}]})
    daemon = Daemon(settings, None)
    daemon.loop_lag.observe(0.05, 0.80)

    text = daemon.metrics.render()[0].decode()

    assert "reconciler_event_loop_longest_stall_seconds 0.75" in text
