"""Fastly Billing API v3 client: invoices, account usage and per-service usage.

One pull reads, for the ``lookback_months`` months ending with today's month:

1. ``GET /billing/v3/invoices`` (``billing_start_date``..``billing_end_date``, ``limit`` 200,
   cursor pages) first, to learn which months are billed, and keeps their line items;
2. ``GET /billing/v3/usage-metrics`` in windows of at most 3 months (the API's limit): the
   account-level lines;
3. ``GET /billing/v3/service-usage-metrics`` (``limit`` 10000, cursor pages, optionally
   filtered by ``product_id`` + ``usage_type_name``): the per-service lines.

Every request carries the API token in ``Fastly-Key``.

**When a Fastly month is final.** Fastly reports no status with usage. A month's lines are
``finalized`` once an invoice billing usage for that month is posted (its billing period
covers the whole month; an invoice that only starts inside it, such as a mid-month
subscription or fee invoice, does not count), and ``collecting`` until then. When invoices are
not read (``invoices = false``) or cannot be read (the token lacks billing permission: 403,
logged once per source as a warning), a month counts as ``finalized`` from
``finalize_after_days`` days after its last day on (``today >= last day + N days``), and
``collecting`` before. Moving between the two rules never reopens a month: once finalized,
a month stays finalized (see ``Coverage.derived_statuses``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from datetime import date
from functools import partial
from typing import Any, Final

import yarl
from pydantic import SecretStr

from reconciler.domain import Month, UsageLine
from reconciler.errors import ConfigError, ProviderAuthError
from reconciler.logs import register_secret
from reconciler.providers.base import (
    Coverage,
    CoverageScope,
    InvoiceLine,
    PullStats,
    api_url,
    check_base_url,
    months_to_pull,
)
from reconciler.providers.fastly_pages import FastPage, ServiceRows, decode_service_page
from reconciler.providers.fastly_records import (
    FastlyLines,
    convert,
    invoice_lines,
    meta_total,
    month_statuses,
    service_page,
    usage_page,
)
from reconciler.providers.http import HttpClient, RetryPolicy
from reconciler.providers.normalize import loads_exact
from reconciler.providers.paging import CursorGuard
from reconciler.providers.rows import LineRows
from reconciler.secrets import resolve_secret
from reconciler.settings import FastlySourceSettings

__all__ = ["DEFAULT_BASE_URL", "FastlyProvider"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "https://api.fastly.com"
USAGE: Final = "/billing/v3/usage-metrics"
SERVICE_USAGE: Final = "/billing/v3/service-usage-metrics"
INVOICES: Final = "/billing/v3/invoices"
USAGE_WINDOW_MONTHS: Final = 3
SERVICE_PAGE_LIMIT: Final = 10000
INVOICE_PAGE_LIMIT: Final = 200

# Sources already warned about unreadable invoices: once per process is enough.
_warned_no_invoices: set[str] = set()


class FastlyProvider:
    """Pulls one Fastly source (see the module docstring for what and how)."""

    def __init__(
        self,
        settings: FastlySourceSettings,
        http: HttpClient,
        token: SecretStr,
        *,
        base_url: yarl.URL,
        page_limit: int = SERVICE_PAGE_LIMIT,
        invoice_page_limit: int = INVOICE_PAGE_LIMIT,
    ) -> None:
        if not 1 <= page_limit <= SERVICE_PAGE_LIMIT:
            raise ValueError(f"page_limit must be 1..{SERVICE_PAGE_LIMIT}")
        if not 1 <= invoice_page_limit <= INVOICE_PAGE_LIMIT:
            raise ValueError(f"invoice_page_limit must be 1..{INVOICE_PAGE_LIMIT}")
        self.source = settings.name
        self.stats = PullStats()
        self._settings = settings
        self._http = http
        self._headers = {"Fastly-Key": token.get_secret_value()}
        self._base = base_url
        self._page_limit = page_limit
        self._invoice_page_limit = invoice_page_limit
        self._policy = RetryPolicy.from_settings(settings)
        self._limiter = asyncio.Semaphore(settings.max_concurrency)
        self._coverage: Coverage | None = None
        self._invoice_lines: list[InvoiceLine] = []

    @classmethod
    def from_settings(
        cls,
        settings: FastlySourceSettings,
        index: int,
        http: HttpClient,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> FastlyProvider:
        base_url = check_base_url(
            settings.base_url or DEFAULT_BASE_URL, f"sources[{index}].base_url"
        )
        token = resolve_secret(settings.token_ref(index), environ)
        value = token.get_secret_value()
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(
                [f"sources[{index}].token_env: the Fastly API token contains a line break"]
            )
        register_secret(value)
        return cls(settings, http, token, base_url=base_url, **options)

    @property
    def coverage(self) -> Coverage:
        if self._coverage is None:
            raise RuntimeError(f"source '{self.source}': no pull has finished")
        return self._coverage

    @property
    def invoice_lines(self) -> list[InvoiceLine]:
        if self._coverage is None:
            raise RuntimeError(f"source '{self.source}': no pull has finished")
        return self._invoice_lines

    async def pull(self, today: date) -> AsyncGenerator[Sequence[UsageLine], None]:
        """Account lines, then service lines, page by page (invoices are read first)."""
        started = time.monotonic()
        self.stats.reset()
        self._coverage = None
        self._invoice_lines = []
        settings = self._settings
        months = months_to_pull(today, settings.lookback_months)
        invoiced: set[Month] | None = None
        invoices: list[InvoiceLine] = []
        if settings.invoices:
            read = await self._invoices(months)
            if read is not None:
                invoiced, invoices = read
        statuses = month_statuses(months, today, invoiced, settings.finalize_after_days)
        lines = FastlyLines(self.source, statuses, settings.product_id)
        for start in range(0, len(months), USAGE_WINDOW_MONTHS):
            window = months[start : start + USAGE_WINDOW_MONTHS]
            account_page = await self._account_usage(lines, window[0], window[-1])
            if account_page:
                yield account_page
        if settings.services:
            fast_rows = ServiceRows.of(self.source, statuses)
            async for page in self._service_usage(lines, fast_rows, months[0], months[-1]):
                yield page
        self._invoice_lines = invoices
        # Account-level lines have account "": without services, only those were covered;
        # with a product_id/usage_type_name filter, only that product's service lines.
        scopes = None
        if settings.services and settings.product_id and settings.usage_type_name:
            scopes = (
                CoverageScope(account=""),
                CoverageScope(product=settings.product_id, usage_type=settings.usage_type_name),
            )
        self._coverage = Coverage(
            months=months,
            accounts=None if settings.services else frozenset({""}),
            derived_statuses=True,
            scopes=scopes,
        )
        log.info(
            "source '%s': pulled %d lines %s..%s (%d pages, %d API calls, %d retries) in %.1fs",
            self.source,
            self.stats.lines,
            months[0],
            months[-1],
            self.stats.pages,
            self.stats.api_calls,
            self.stats.retries,
            time.monotonic() - started,
        )

    async def _get(
        self,
        endpoint: str,
        params: Mapping[str, str],
        decode: Callable[[bytes | bytearray], Any] = loads_exact,
    ) -> Any:
        with self.stats.requesting(endpoint):
            body, _ = await self._http.get_json(
                self.source,
                endpoint,
                api_url(self._base, endpoint, params),
                headers=self._headers,
                limiter=self._limiter,
                policy=self._policy,
                stats=self.stats,
                decode=decode,
            )
        return body

    async def _invoices(
        self, months: tuple[Month, ...]
    ) -> tuple[set[Month], list[InvoiceLine]] | None:
        """Posted invoices of ``months``; None when the token may not read them (403)."""
        guard = CursorGuard(self.source, INVOICES, self._invoice_page_limit)
        invoiced: set[Month] = set()
        lines: list[InvoiceLine] = []
        cursor = ""
        while True:
            params = {
                "billing_start_date": months[0].first_day.isoformat(),
                "billing_end_date": months[-1].last_day.isoformat(),
                "limit": str(self._invoice_page_limit),
            }
            if cursor:
                params["cursor"] = cursor
            try:
                payload = await self._get(INVOICES, params)
            except ProviderAuthError as e:
                if e.status != 403:
                    raise
                self._warn_no_invoices(str(e))
                return None
            page = usage_page(self.source, INVOICES, payload)
            label = f"page {guard.pages + 1}"
            found, items = invoice_lines(self.source, INVOICES, label, page.records, months)
            invoiced |= found
            lines.extend(items)
            next_cursor = page.meta.get("next_cursor") if page.meta else None
            total = meta_total(self.source, INVOICES, page.meta)
            following = guard.advance(cursor, next_cursor, len(page.records), total, page.records)
            if following is None:
                return invoiced, lines
            cursor = following

    def _warn_no_invoices(self, reason: str) -> None:
        if self.source in _warned_no_invoices:
            return
        _warned_no_invoices.add(self.source)
        log.warning(
            "%s: cannot read invoices, so a month counts as finalized %d days after it ends",
            reason,
            self._settings.finalize_after_days,
        )

    async def _account_usage(
        self, lines: FastlyLines, first: Month, last: Month
    ) -> list[UsageLine]:
        payload = await self._get(USAGE, {"start_month": str(first), "end_month": str(last)})
        page = usage_page(self.source, USAGE, payload)
        label = f"{first}..{last}"
        out = convert(self.source, USAGE, label, page.records, lines.account_line)
        guard = CursorGuard(self.source, USAGE, max(len(page.records), 1))
        guard.advance("", None, len(page.records), meta_total(self.source, USAGE, page.meta))
        self.stats.lines += len(out)
        return out

    async def _service_usage(
        self, lines: FastlyLines, fast_rows: ServiceRows, first: Month, last: Month
    ) -> AsyncIterator[Sequence[UsageLine]]:
        settings = self._settings
        guard = CursorGuard(self.source, SERVICE_USAGE, self._page_limit)
        params = {
            "start_month": str(first),
            "end_month": str(last),
            "limit": str(self._page_limit),
        }
        if settings.product_id and settings.usage_type_name:
            params["product_id"] = settings.product_id
            params["usage_type_name"] = settings.usage_type_name
        # The next page is asked for as soon as its cursor is known, so the provider and the
        # network work on it while this page is converted and staged.
        cursor = ""
        fetch = partial(self._get, SERVICE_USAGE, decode=decode_service_page)
        request = asyncio.ensure_future(fetch(params))
        try:
            while True:
                payload = await request
                label = f"page {guard.pages + 1}"
                rows = fast_rows.rows(payload) if isinstance(payload, FastPage) else None
                if rows is not None:
                    assert isinstance(payload, FastPage)
                    next_cursor, total, records = payload.next_cursor, payload.total, rows
                else:
                    if isinstance(payload, FastPage):
                        payload = payload.careful()
                    page = service_page(self.source, SERVICE_USAGE, payload, settings.product_id)
                    next_cursor = page.meta.get("next_cursor") if page.meta else None
                    total = meta_total(self.source, SERVICE_USAGE, page.meta)
                    records = page.records
                following = guard.advance(cursor, next_cursor, len(records), total, records)
                if following is not None:
                    request = asyncio.ensure_future(fetch(dict(params, cursor=following)))
                out: Sequence[UsageLine]
                if rows is not None:
                    out = LineRows(rows, within_limits=True)
                else:
                    build = (
                        lines.service_line
                        if page.defaults is None
                        else partial(lines.nested_line, defaults=page.defaults)
                    )
                    out = convert(self.source, SERVICE_USAGE, label, records, build)
                del payload, records
                self.stats.lines += len(out)
                if out:
                    yield out
                if following is None:
                    return
                cursor = following
        finally:
            await _drop(request)


async def _drop(request: asyncio.Future[Any]) -> None:
    """Stop a request whose answer is no longer wanted (the pull ended or failed first)."""
    request.cancel()
    await asyncio.wait([request])
    if not request.cancelled():
        request.exception()  # retrieved: its failure is not the pull's
