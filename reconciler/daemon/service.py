"""``reconciler run``: one asyncio process, an APScheduler 3 AsyncIOScheduler in UTC.

Jobs come from the configuration: a pull check per source (the pull itself runs once per
``pull_every`` slot, claimed in the database, so several instances sharing one PostgreSQL
database pull each slot exactly once), alert delivery every few seconds, reports on their
schedule and housekeeping. systemd is told READY after migrations and scheduler start,
WATCHDOG from the event loop, STATUS after each run, RELOADING around SIGHUP and STOPPING on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.alerts.delivery import deliver_due, pending_counts
from reconciler.alerts.hook import outbox_hook
from reconciler.alerts.outbox import purge_delivered
from reconciler.alerts.recording import OutcomeJournal
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.daemon import leases
from reconciler.daemon.http import HealthServer
from reconciler.daemon.loop_lag import LoopLagProbe
from reconciler.daemon.metrics import DaemonMetrics
from reconciler.daemon.systemd import SystemdNotifier
from reconciler.domain import utcnow
from reconciler.errors import ConfigError, ReconcilerError, SourceBusyError, StateError
from reconciler.periodic import Repeating
from reconciler.providers.http import HttpClient
from reconciler.refresh import CommitCheck, RunOutcome, refresh_source
from reconciler.reports.writer import prune_reports, write_report_set
from reconciler.secret_mask import register_configured_secrets
from reconciler.settings import Settings, load_settings
from reconciler.store.backup import checkpoint
from reconciler.store.db import configured_engine, reader, sqlite_path, upgrade
from reconciler.store.marker import marker_path
from reconciler.store.pull_lock import source_lock, this_process
from reconciler.store.retention import purge_history
from reconciler.store.runs import abandon_stale_runs, runs_t

log = logging.getLogger(__name__)

TodaySource = Callable[[], Awaitable[date]]
# The instant slots and leases are timed by, when something other than the database's clock
# sets it (a sandbox a test steps through slots with); None: the database's clock.
ScheduleSource = Callable[[], Awaitable[datetime | None]]
SANDBOX_CLOCK_TIMEOUT_S = 10.0


class Daemon:
    """The long-running service. ``run()`` returns the process exit status."""

    def __init__(
        self,
        settings: Settings,
        config_path: Path | None,
        *,
        notifier: SystemdNotifier | None = None,
        today_source: TodaySource | None = None,
        schedule_source: ScheduleSource | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        register_configured_secrets(settings)
        self.notifier = notifier or SystemdNotifier()
        self.clock = clock
        self.today_source = today_source
        self.schedule_source = schedule_source
        self.instance = settings.daemon.instance or f"{socket.gethostname()}:{os.getpid()}"
        self.metrics = DaemonMetrics()
        self.loop_lag = LoopLagProbe()
        self.metrics.loop_stall.set_function(lambda: self.loop_lag.longest_s)
        self.started_at = clock()
        self._stop = asyncio.Event()
        self._inflight: set[asyncio.Task[Any]] = set()
        self._pull_slots = asyncio.Semaphore(settings.daemon.max_concurrent_pulls)
        self._scheduler: AsyncIOScheduler | None = None
        self._engine: AsyncEngine | None = None
        self._http: HttpClient | None = None
        self._reload_task: asyncio.Task[None] | None = None
        self._database_failures: dict[str, str] = {}  # source → why its last pull failed
        self._slack: SlackWebhookClient | None = None
        # Answers the database refused to record (a full disk), recorded before any send.
        self._journal = OutcomeJournal()

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        watchdog = asyncio.create_task(self.notifier.run_watchdog(), name="watchdog")
        probe = asyncio.create_task(self.loop_lag.run(), name="loop-lag-probe")
        try:
            async with contextlib.AsyncExitStack() as stack:
                # Closed in reverse order: health endpoint, Slack session, HTTP client, engine.
                stack.push_async_callback(self._dispose_engine)
                await self._migrate()
                if self._stop.is_set():
                    log.info("stopped during start-up, after the state database migration")
                    return 0
                self._http = await stack.enter_async_context(HttpClient())
                session = await stack.enter_async_context(aiohttp.ClientSession(trust_env=False))
                self._slack = SlackWebhookClient(session)
                if self.settings.daemon.listen:
                    health = HealthServer(
                        self.settings.daemon.listen, self.readiness, self.render_metrics
                    )
                    await health.start()
                    stack.push_async_callback(health.stop)
                self._start_scheduler()
                await self._stop.wait()
                return await self._shutdown()
        finally:
            watchdog.cancel()
            probe.cancel()
            await asyncio.gather(watchdog, probe, return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def _migrate(self) -> None:
        self.notifier.status("migrating the state database")
        self._engine = configured_engine(self.settings, create=True)
        # A migration is one transaction: a stop asked for meanwhile waits for it to end.
        marker = marker_path(self.settings.state_directory, self.settings.database_url)
        before, after = await upgrade(self._engine, marker=marker)
        if before != after:
            log.info("state database migrated %s -> %s", before or "empty", after)
        await abandon_stale_runs(self._engine, older_than=self._lease_ttl * 2, now=self.clock())

    def _start_scheduler(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._schedule_jobs()
        self._scheduler.start()
        sources = ", ".join(s.name for s in self.settings.sources) or "none"
        log.info(
            "reconciler daemon %s started: sources %s; health %s",
            self.instance,
            sources,
            self.settings.daemon.listen or "off",
        )
        self.notifier.ready(f"running; sources: {sources}")

    async def _dispose_engine(self) -> None:
        if self._engine is not None:
            await checkpoint(self._engine)  # the main SQLite file holds everything on stop
            await self._engine.dispose()

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info(
                "stopping: finishing in-flight work (at most %ss)",
                self.settings.daemon.stop_timeout_s,
            )
            self.notifier.stopping()
            self._stop.set()

    async def _shutdown(self) -> int:
        # Pause, not shut down: APScheduler's asyncio executor cancels every job still running
        # when it shuts down, which would cut short the pulls we mean to let finish.
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.pause()
        pending = {t for t in self._inflight if not t.done()}
        if pending:
            _, still = await asyncio.wait(pending, timeout=self.settings.daemon.stop_timeout_s)
            if still:
                log.warning(
                    "stop timeout (%ss) reached: cancelling %d in-flight jobs",
                    self.settings.daemon.stop_timeout_s,
                    len(still),
                )
            for task in still:
                task.cancel()  # the pull rolls back and records itself as cancelled
            if still:
                # Every job ends before the engine is disposed: a cancelled pull rolls back
                # and records itself as cancelled on a connection that must still be open.
                await asyncio.gather(*still, return_exceptions=True)
        if self._reload_task is not None:
            await asyncio.gather(self._reload_task, return_exceptions=True)
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        try:
            async with asyncio.timeout(10):
                await self._deliver_alerts()
        except (TimeoutError, ReconcilerError) as exc:
            log.warning("alerts left in the outbox at stop: %s", exc or "timed out")
        log.info("reconciler daemon %s stopped; %s", self.instance, self.loop_lag.summary())
        return 0

    def request_reload(self) -> None:
        """SIGHUP: reload once the reload in progress (if any) is done; the task is kept."""
        previous = self._reload_task

        async def reload_after() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await self.reload()

        self._reload_task = asyncio.create_task(reload_after(), name="reload")

    async def reload(self) -> None:
        """SIGHUP: re-read and validate the configuration; keep the old one if it is bad."""
        self.notifier.reloading()
        try:
            new, _ = load_settings(self.config_path)
            if self.settings.sources and not new.sources:
                raise ConfigError(
                    [
                        "the new configuration has no sources: it would stop every pull "
                        "(stop the daemon instead if that is meant)"
                    ],
                    str(self.config_path) if self.config_path else None,
                )
        except ConfigError as exc:
            log.error("reload failed, still running on the previous configuration: %s", exc)
            self.notifier.ready("reload failed: still running on the previous configuration")
            return
        except Exception as exc:  # an unreadable file, a bad encoding: never the daemon's end
            log.error(
                "reload failed (%s: %s), still running on the previous configuration",
                exc.__class__.__name__,
                exc,
            )
            self.notifier.ready("reload failed: still running on the previous configuration")
            return
        register_configured_secrets(new)
        if new.database_url != self.settings.database_url:
            log.warning("state.database_url changed: restart the daemon to use the new database")
        if new.daemon.max_concurrent_pulls != self.settings.daemon.max_concurrent_pulls:
            # Pulls waiting on the old bound finish under it; new checks wait on the new one.
            self._pull_slots = asyncio.Semaphore(new.daemon.max_concurrent_pulls)
        self.settings = new
        self._schedule_jobs()
        log.info("configuration reloaded: %d sources", len(new.sources))
        self.notifier.ready(
            f"reloaded; sources: {', '.join(s.name for s in new.sources) or 'none'}"
        )

    # -- jobs ------------------------------------------------------------------------------

    @property
    def _pull_holder(self) -> str:
        """Who holds a source's pull lock: this instance and its process (a lock left by a
        process of this host that is gone is taken over at once)."""
        return f"{self.instance}@{this_process()}"

    @property
    def _lease_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.daemon.lease_ttl_s)

    def _schedule_jobs(self) -> None:
        scheduler = self._scheduler
        if scheduler is None:
            return
        scheduler.remove_all_jobs()
        daemon = self.settings.daemon
        start = datetime.now(tz=scheduler.timezone) + timedelta(seconds=daemon.first_pull_delay_s)
        common: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        count = len(self.settings.sources)
        for index, source in enumerate(self.settings.sources):
            check_every = min(source.pull_every / 2, timedelta(seconds=60))
            # First checks spread evenly over one check interval: thousands of sources do
            # not all start at once.
            spread = check_every * index / count
            scheduler.add_job(
                self._tracked(self.pull_source),
                IntervalTrigger(
                    seconds=check_every.total_seconds(),
                    jitter=min(daemon.jitter_s, check_every.total_seconds() / 2),
                ),
                args=[source.name],
                id=f"pull:{source.name}",
                next_run_time=start + spread,
                **common,
            )
        scheduler.add_job(
            self._tracked(self._deliver_alerts),
            IntervalTrigger(seconds=daemon.alert_every_s),
            id="alerts",
            next_run_time=start,
            **common,
        )
        scheduler.add_job(
            self._tracked(self.write_reports),
            IntervalTrigger(seconds=min(self.settings.reports.every.total_seconds() / 2, 300)),
            id="reports",
            **common,
        )
        scheduler.add_job(
            self._tracked(self.housekeeping),
            IntervalTrigger(seconds=daemon.housekeeping_every.total_seconds()),
            id="housekeeping",
            **common,
        )

    def _tracked(self, job: Callable[..., Awaitable[object]]) -> Callable[..., Awaitable[None]]:
        async def run(*args: Any) -> None:
            if self._stop.is_set():
                return
            task = asyncio.current_task()
            if task is not None:
                self._inflight.add(task)
            try:
                await job(*args)
            except asyncio.CancelledError:
                if not self._stop.is_set():
                    raise
                # Cancelled by the stop timeout: the work rolled back, which is not a failure
                # worth a traceback from the scheduler.
                log.warning("job %s cancelled at stop", getattr(job, "__name__", job))
            except Exception as exc:
                # One line per failure: a full disk fails every job, and a traceback for
                # each would bury everything else in the journal.
                log.error("job %s failed: %s", getattr(job, "__name__", job), one_line(exc))
                log.debug("job %s failed", getattr(job, "__name__", job), exc_info=True)
            finally:
                if task is not None:
                    self._inflight.discard(task)

        run.__name__ = getattr(job, "__name__", "job")
        return run

    async def _lease_now(self) -> datetime | None:
        """The instant leases are timed by: the schedule source's, if it sets one; else None
        (each lease call then reads the database's clock)."""
        return await self.schedule_source() if self.schedule_source is not None else None

    async def _today(self) -> date:
        if self.today_source is not None:
            return await self.today_source()
        return self.clock().date()

    async def pull_source(self, name: str) -> RunOutcome | None:
        """Pull ``name`` if its current slot is unclaimed (or its holder died).

        At most ``daemon.max_concurrent_pulls`` pulls run at once; a check waits for its turn
        before it claims the slot, so that no lease runs out while it waits.
        """
        async with self._pull_slots:
            try:
                outcome = await self._pull_source(name)
            except (SQLAlchemyError, OSError) as exc:
                self._database_failures[name] = one_line(exc)
                raise
            self._database_failures.pop(name, None)
            return outcome

    async def _pull_source(self, name: str) -> RunOutcome | None:
        assert self._engine is not None and self._http is not None
        settings = self.settings
        try:
            source = settings.source(name)
        except ConfigError:
            return None  # removed by a reload
        lease = await self._claim("pull", name, source.pull_every)
        if lease is None:
            return None
        slot = lease.slot
        renewing = Repeating(
            self._lease_ttl.total_seconds() / 3,
            partial(self._renew_lease, lease),
            name=f"lease-{slot}",
        )
        outcome: RunOutcome | None = None
        settled = False
        try:
            # The pull lock a CLI 'pull' takes too: a scheduled pull and a manual one of the
            # same source never run at once, whichever started first.
            async with source_lock(
                self._engine,
                name,
                holder=self._pull_holder,
                ttl=self._lease_ttl,
                replacing=lease.taken_from,
            ):
                try:
                    outcome = await refresh_source(
                        self._engine,
                        settings,
                        name,
                        self._http,
                        today=await self._today(),
                        clock=self.clock,
                        alert_hook=outbox_hook(settings),
                        commit_check=self._complete_in_commit(lease),
                        instance=self.instance,
                        slot=slot,
                    )
                finally:
                    # A failed pull hands its slot back before the pull lock goes (a pulled
                    # one was completed in its commit), after the last renewal: one still
                    # running would undo the hand-back.
                    await renewing.stop()
                    settled = True
                    await self._settle(lease, source.pull_every, outcome)
        except SourceBusyError as exc:
            log.warning("source '%s': not pulled now, tried again later: %s", name, exc)
        except ReconcilerError as exc:
            log.error("source '%s': %s", name, exc)
        finally:
            await renewing.stop()
            if not settled:
                await self._settle(lease, source.pull_every, outcome)
        if outcome is not None:
            self.metrics.observe_run(outcome, time.time())
            # A pull still in flight at SIGTERM finishes and says so while stopping.
            prefix = "stopping; " if self._stop.is_set() else ""
            self.notifier.status(f"{prefix}last run: {outcome.summary()}"[:500])
        return outcome

    async def _settle(
        self, lease: leases.Lease, every: timedelta, outcome: RunOutcome | None
    ) -> None:
        """A slot whose pull failed (or did not run) is handed back for a retry.

        A pull that succeeded completed its slot in the transaction of its results
        (``_complete_in_commit``): nothing is left to do for it here, so nothing is left
        undone if this instance stops or stalls right after that commit.
        """
        assert self._engine is not None
        if outcome is not None and outcome.ok:
            return
        retry = min(every / 4, timedelta(minutes=5))
        now = await self._lease_now()
        await leases.release_for_retry(self._engine, lease, retry_after=retry, now=now)

    async def _claim(self, kind: str, key: str, every: timedelta) -> leases.Lease | None:
        """Claim this slot of ``every`` (named and timed on the database's clock)."""
        assert self._engine is not None
        now = await self._lease_now() or await leases.engine_now(self._engine)
        slot = leases.slot_name(kind, key, now, every)
        lease = await leases.claim(self._engine, slot, self.instance, ttl=self._lease_ttl, now=now)
        if lease is not None and lease.taken_from is not None:
            log.warning(
                "took over %s from %s: its lease expired without the work being done",
                slot,
                lease.taken_from,
            )
        return lease

    def _complete_in_commit(self, lease: leases.Lease) -> CommitCheck:
        """Run inside the pull's commit: the slot is completed in the transaction that commits
        the pull's results, and only while the lease is still ours (else both roll back)."""

        async def check(conn: AsyncConnection, outcome: RunOutcome) -> None:
            now = await self._lease_now()
            if not await leases.complete_held(conn, lease, outcome="succeeded", now=now):
                raise StateError(
                    f"slot {lease.slot} was taken over by another instance while this pull "
                    "ran: its results are dropped"
                )

        return check

    async def _renew_lease(self, lease: leases.Lease) -> bool:
        """One renewal of a pull's slot; False once another instance has taken it over."""
        assert self._engine is not None
        try:
            now = await self._lease_now()
            if await leases.renew(self._engine, lease, ttl=self._lease_ttl, now=now):
                return True
            # A slot this pull completed in its commit is no lease lost.
            if not await leases.completed_by_holder(self._engine, lease):
                log.warning("lost the lease of %s to another instance", lease.slot)
        except (SQLAlchemyError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("renewing the lease of %s failed: %s", lease.slot, one_line(exc))
            return True  # the next renewal may get through before the lease runs out
        return False

    async def _deliver_alerts(self) -> None:
        if self._engine is None or self._slack is None:
            return
        report = await deliver_due(
            self._engine, self.settings, self._slack, now=self.clock(), journal=self._journal
        )
        self.metrics.alerts_sent.inc(report.sent)
        self.metrics.alert_failures.inc(report.failed)
        self.metrics.alerts_held.labels("refused").set(report.blocked)
        self.metrics.alerts_held.labels("unconfigured").set(report.unconfigured)
        self.metrics.alerts_held.labels("unrecorded").set(report.unrecorded)
        depth = sum((await pending_counts(self._engine)).values())
        self.metrics.outbox_depth.set(depth)

    async def write_reports(self) -> None:
        assert self._engine is not None
        lease = await self._claim("reports", "all", self.settings.reports.every)
        if lease is None:
            return
        now = self.clock()
        try:
            paths = await write_report_set(
                self._engine, self.settings, now, as_of=await self._report_time(now)
            )
        except BaseException:
            # Hand the slot back: another attempt (here or on another instance) may follow.
            retry = min(self.settings.reports.every / 4, timedelta(minutes=5))
            later = await self._lease_now()
            await leases.release_for_retry(self._engine, lease, retry_after=retry, now=later)
            raise
        await leases.complete(self._engine, lease, outcome="succeeded", now=await self._lease_now())
        log.info("reports written: %s", ", ".join(p.name for p in paths))

    async def _report_time(self, now: datetime) -> datetime:
        """The moment a report describes: now, on the simulated day when one is followed."""
        if self.today_source is None:
            return now
        return datetime.combine(await self._today(), now.timetz())

    async def housekeeping(self) -> None:
        assert self._engine is not None
        now = self.clock()
        abandoned = await abandon_stale_runs(self._engine, older_than=self._lease_ttl * 2, now=now)
        purged = await leases.purge(self._engine, before=now - timedelta(days=7))
        delivered = await purge_delivered(self._engine, before=now - timedelta(days=30))
        keep = timedelta(days=self.settings.daemon.keep_runs_days)
        history = await purge_history(self._engine, before=now - keep)
        pruned = prune_reports(
            self.settings.reports_directory, self.settings.reports.keep_days, now
        )
        log.info(
            "housekeeping: %d abandoned runs, %d old leases, %d delivered alerts, %s, "
            "%d old reports",
            abandoned,
            purged,
            delivered,
            history,
            pruned,
        )

    # -- health ----------------------------------------------------------------------------

    async def render_metrics(self) -> tuple[bytes, str]:
        """``/metrics``: the counters, and the state gauges read from the database now."""
        if self._engine is not None:
            now = await self._report_time(self.clock())  # the followed (sandbox) day, if any
            await self.metrics.state.refresh(self._engine, self.settings, now)
        return self.metrics.render()

    async def readiness(self) -> list[str]:
        """Why the daemon is not ready (empty list: ready)."""
        problems: list[str] = []
        if self._scheduler is None or not self._scheduler.running:
            problems.append("scheduler not running")
        if self._engine is None:
            return [*problems, "database not open"]
        path = sqlite_path(str(self._engine.url))
        if path is not None and not path.exists():
            # Open connections keep working on the unlinked file; nothing would survive a restart.
            return [*problems, f"database unreachable: {path} no longer exists"]
        try:
            async with asyncio.timeout(5), reader(self._engine).connect() as conn:
                await conn.execute(text("SELECT 1"))
                rows = (
                    await conn.execute(
                        select(runs_t.c.source, func.max(runs_t.c.finished_at))
                        .where(runs_t.c.status == "succeeded")
                        .group_by(runs_t.c.source)
                    )
                ).all()
        except Exception as exc:  # any failure here means "not ready", with the reason
            return [*problems, f"database unreachable: {exc.__class__.__name__}"]
        failing = [s.name for s in self.settings.sources if s.name in self._database_failures]
        if failing and len(failing) == len(self.settings.sources):
            reason = self._database_failures[failing[-1]]
            problems.append(f"every pull is failing on the database: {reason}")
        last = {source: _aware(when) for source, when in rows}
        now = self.clock()
        for source in self.settings.sources:
            allowed = source.allowed_age
            seen = last.get(source.name)
            if seen is None:
                if now - self.started_at > allowed:
                    problems.append(f"source '{source.name}': no successful pull yet")
            elif now - seen > allowed:
                problems.append(
                    f"source '{source.name}': last successful pull {now - seen} ago "
                    f"(allowed {allowed})"
                )
        return problems


def one_line(exc: BaseException) -> str:
    """``Class: message`` on one line; a database error by its driver's message, no SQL."""
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{cause.__class__.__name__}: {first}"[:300]


def _aware(value: Any) -> datetime | None:
    from reconciler.store.types import UTCDateTime

    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return UTCDateTime().process_result_value(value, None)  # type: ignore[arg-type]


def sandbox_clock(url: str) -> TodaySource:
    """Today from a provider sandbox's simulated clock (``GET <url>/_sandbox/clock``)."""

    async def today() -> date:
        return date.fromisoformat((await _sandbox_clock(url))["today"])

    return today


def sandbox_schedule(url: str) -> ScheduleSource:
    """The instant a provider sandbox's clock sets for slots and leases (None until set)."""

    async def now() -> datetime | None:
        instant = (await _sandbox_clock(url)).get("now")
        return datetime.fromisoformat(instant) if isinstance(instant, str) else None

    return now


async def _sandbox_clock(url: str) -> dict[str, Any]:
    # Bounded: a lease renewal asks it, and a stop waits for the renewal in progress.
    timeout = aiohttp.ClientTimeout(total=SANDBOX_CLOCK_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url.rstrip("/") + "/_sandbox/clock") as response,
    ):
        data: dict[str, Any] = await response.json()
    return data
