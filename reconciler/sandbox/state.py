"""The sandbox's mutable state: the simulated day, events, faults, options and counters.

Tests and the demo can drive it in-process (``server.state``) or over HTTP (``/_sandbox/``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from aiohttp import web

from reconciler.domain import Provider
from reconciler.sandbox.akamai_data import AkamaiData
from reconciler.sandbox.credentials import SandboxCredentials
from reconciler.sandbox.events import SandboxEvent, parse_event
from reconciler.sandbox.fastly_data import FastlyData
from reconciler.sandbox.faults import Fault, FaultBook
from reconciler.sandbox.scenario import SERVICE_USAGE_SHAPES, Scenario
from reconciler.sandbox.stats import RequestStats


class SandboxState:
    """Everything a running sandbox serves from; one per app."""

    def __init__(self, scenario: Scenario, credentials: SandboxCredentials | None = None) -> None:
        self.scenario = scenario
        self.credentials = credentials or SandboxCredentials()
        self.fastly = FastlyData(scenario)
        self.akamai = AkamaiData(scenario)
        self.stats = RequestStats()
        self.today = scenario.today
        # The instant daemons following this sandbox time their slots and leases by (set by a
        # test that steps through slots); None: they use their database's clock.
        self.schedule_now: datetime | None = None
        self.events: list[SandboxEvent] = []
        self.faults = FaultBook(scenario.seed)
        self.service_usage_shape = scenario.fastly_service_usage_shape
        self.release_hangs = asyncio.Event()
        self.request_count = 0

    # --- clock ---------------------------------------------------------------------------

    def set_today(self, today: date) -> date:
        self.today = today
        return today

    def advance(self, days: int) -> date:
        self.today = self.today + timedelta(days=days)
        return self.today

    def set_schedule_now(self, now: datetime) -> datetime:
        if now.tzinfo is None:
            raise ValueError("the schedule instant needs a UTC offset (e.g. ...T00:00:00+00:00)")
        self.schedule_now = now.astimezone(UTC)
        return self.schedule_now

    def advance_schedule(self, seconds: float) -> datetime:
        if self.schedule_now is None:
            raise ValueError('no schedule instant yet: send {"now": "<ISO instant>"} first')
        self.schedule_now += timedelta(seconds=seconds)
        return self.schedule_now

    # --- events and faults ---------------------------------------------------------------

    def add_events(self, specs: Sequence[object]) -> list[SandboxEvent]:
        """Parse and add events (all or none); raises ValueError on a bad one."""
        parsed = [parse_event(spec) for spec in specs]
        self.events.extend(parsed)
        return parsed

    def add_event(self, event: SandboxEvent) -> None:
        self.events.append(event)

    def events_for(self, provider: Provider) -> list[SandboxEvent]:
        return [e for e in self.events if e.provider is provider]

    def add_faults(self, specs: Sequence[object]) -> list[Fault]:
        """Parse and add faults (all or none); raises ValueError on a bad one."""
        scratch = FaultBook(self.scenario.seed)
        scratch.add(specs)  # validate everything before adding anything
        return self.faults.add(specs)

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_service_usage_shape(self, shape: str) -> None:
        if shape not in SERVICE_USAGE_SHAPES:
            raise ValueError(f"service usage shape must be one of {SERVICE_USAGE_SHAPES}")
        self.service_usage_shape = shape

    def release(self) -> None:
        """Let every hung request answer now."""
        self.release_hangs.set()
        self.release_hangs = asyncio.Event()

    def reset(self) -> None:
        """Back to the scenario's start: its day, no events, no faults, zero counters."""
        self.today = self.scenario.today
        self.schedule_now = None
        self.events.clear()
        self.faults = FaultBook(self.scenario.seed)
        self.service_usage_shape = self.scenario.fastly_service_usage_shape
        self.stats.reset()
        self.release()

    def next_request_id(self) -> str:
        self.request_count += 1
        return f"{self.request_count:08x}"


STATE_KEY: web.AppKey[SandboxState] = web.AppKey("sandbox_state", SandboxState)
