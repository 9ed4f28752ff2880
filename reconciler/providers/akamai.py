"""Akamai Billing API v1 client, signed with EdgeGrid, with Contract API discovery.

One pull reads, for the ``lookback_months`` months ending with today's month
(``start`` = the first month, inclusive; ``end`` = the month after the last, exclusive):

1. the contracts: ``contracts`` from the configuration, or
   ``GET /contract-api/v1/contracts/identifiers?depth=TOP``;
2. each contract's products: ``products`` from the configuration, or
   ``GET /billing/v1/contracts/{contractId}/products?start&end``;
3. one ``GET /billing/v1/contracts/{contractId}/products/{productId}/usage/monthly-summary
   ?start&end`` per (contract, product), yielded as each completes; with ``cp_codes``, its
   sibling ``.../usage/by-cp-code/monthly-summary`` too (the CP codes' lines, each CP code
   as the line's service);
4. with ``reporting_groups``, once every contract's products are known, one
   ``GET /billing/v1/reporting-groups/{id}/products/{productId}/usage/monthly-summary
   ?start&end`` per (group, product pulled): the group's part of the contract product's
   usage, given to the answer's ``contractId`` (else to the one contract with the product).
   A group that answers no usage for any product fails the pull: it is not an empty group.

Every request of the pull shares one limiter of ``max_concurrency`` slots, and each slot is
kept busy: a contract's summaries are asked for as soon as its products are listed, while
other contracts' lists are still on their way.

Credentials come from an ``.edgerc`` section; the address from ``base_url`` or the section's
``host``. Every request is signed (EG1-HMAC-SHA256) right before it is sent, retries too, and
carries ``accountSwitchKey`` when one is configured. See :mod:`.akamai_records` for how a
monthly summary becomes usage lines.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final
from urllib.parse import quote

import yarl

from reconciler.domain import Month, UsageLine
from reconciler.errors import BadProviderDataError
from reconciler.logs import register_secret
from reconciler.providers.akamai_invoices import read_invoices
from reconciler.providers.akamai_records import (
    contract_ids,
    group_contract,
    products,
    summary_lines,
)
from reconciler.providers.base import (
    Coverage,
    CoverageScope,
    InvoiceLine,
    PullStats,
    api_url,
    check_base_url,
    months_to_pull,
)
from reconciler.providers.edgegrid import EdgeGridCredentials, sign_aiohttp_request
from reconciler.providers.http import HttpClient, RetryPolicy
from reconciler.secrets import secret_path
from reconciler.settings import AkamaiSourceSettings

__all__ = ["AkamaiProvider"]

log = logging.getLogger(__name__)

CONTRACTS: Final = "/contract-api/v1/contracts/identifiers"


@dataclass(frozen=True, slots=True)
class Job:
    """One monthly-summary request: a contract's product, or a reporting group's (``group``,
    and ``contracts``: the contracts pulled that have the product)."""

    contract: str
    product: str
    name: str = ""
    group: str = ""
    contracts: tuple[str, ...] = ()


def _segment(value: str) -> str:
    return quote(value, safe="")


def products_endpoint(contract: str) -> str:
    return f"/billing/v1/contracts/{_segment(contract)}/products"


def summary_endpoint(contract: str, product: str, *, by_cp_code: bool = False) -> str:
    usage = "usage/by-cp-code/monthly-summary" if by_cp_code else "usage/monthly-summary"
    return f"/billing/v1/contracts/{_segment(contract)}/products/{_segment(product)}/{usage}"


def reporting_group_endpoint(group: str, product: str) -> str:
    return (
        f"/billing/v1/reporting-groups/{_segment(group)}/products/{_segment(product)}"
        "/usage/monthly-summary"
    )


def group_jobs(groups: Sequence[str], listed: Mapping[str, Sequence[tuple[str, str]]]) -> list[Job]:
    """One job per (reporting group, product pulled), with the contracts that have it."""
    contracts: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for contract, found in listed.items():
        for product, name in found:
            contracts.setdefault(product, []).append(contract)
            names[product] = names.get(product) or name
    return [
        Job("", product, names[product], group, tuple(contracts[product]))
        for group in groups
        for product in contracts
    ]


class AkamaiProvider:
    """Pulls one Akamai source (see the module docstring for what and how)."""

    def __init__(
        self,
        settings: AkamaiSourceSettings,
        http: HttpClient,
        credentials: EdgeGridCredentials,
        *,
        base_url: yarl.URL,
        invoicing: EdgeGridCredentials | None = None,
    ) -> None:
        self.source = settings.name
        self.stats = PullStats()
        self._settings = settings
        self._http = http
        self._credentials = credentials
        self._base = base_url
        self._policy = RetryPolicy.from_settings(settings)
        self._limiter = asyncio.Semaphore(settings.max_concurrency)
        self._coverage: Coverage | None = None
        self._invoicing = invoicing or credentials
        self._invoice_lines: list[InvoiceLine] = []
        # Per reporting group, the (contract, product) pairs it answered for, and its lines.
        self._answered: dict[str, set[tuple[str, str]]] = {}
        self._group_lines: dict[str, int] = {}

    @classmethod
    def from_settings(
        cls,
        settings: AkamaiSourceSettings,
        index: int,
        http: HttpClient,
        environ: Mapping[str, str] | None = None,
    ) -> AkamaiProvider:
        path = secret_path(settings.edgerc_ref(index), environ)
        credentials = EdgeGridCredentials.from_edgerc(path, settings.section)
        invoicing = None
        if settings.invoices and settings.invoicing_section:
            invoicing = EdgeGridCredentials.from_edgerc(path, settings.invoicing_section)
        for creds in (credentials, invoicing):
            if creds is None:
                continue
            for secret in (
                creds.client_secret.get_secret_value(),
                creds.access_token,
                creds.client_token,
            ):
                register_secret(secret)
        if settings.base_url:
            base_url = check_base_url(settings.base_url, f"sources[{index}].base_url")
        else:
            base_url = check_base_url(str(credentials.base_url), f"sources[{index}].edgerc")
        return cls(settings, http, credentials, base_url=base_url, invoicing=invoicing)

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

    async def pull(self, today: date) -> AsyncGenerator[list[UsageLine], None]:
        """The monthly-summary lines of every (contract, product), as each one completes."""
        started = time.monotonic()
        self.stats.reset()
        self._coverage = None
        settings = self._settings
        months = months_to_pull(today, settings.lookback_months)
        window = {"start": str(months[0]), "end": str(months[-1] + 1)}
        empty: list[tuple[str, str | None]] = []
        contracts = list(dict.fromkeys(settings.contracts)) or await self._contracts()
        if not contracts:
            empty.append((CONTRACTS, None))
        groups = list(settings.reporting_groups)
        self._answered = {g: set() for g in groups}
        self._group_lines = dict.fromkeys(groups, 0)
        listed: dict[str, list[tuple[str, str]]] = {}
        if settings.products:
            configured = [(p, "") for p in dict.fromkeys(settings.products)]
            listed = dict.fromkeys(contracts, configured)
            jobs = [Job(c, p) for c in contracts for p, _ in configured]
            jobs += group_jobs(groups, listed)
            feed = _static_feed(jobs)
            workers = min(settings.max_concurrency, len(jobs))
        else:
            feed = functools.partial(self._discover, contracts, window, listed, groups)
            workers = settings.max_concurrency
        async for page in self._summaries(feed, workers, window, months):
            yield page
        jobs = [Job(c, p, name) for c in contracts for p, name in listed[c]]
        if not settings.products:
            empty += [(products_endpoint(c), c) for c in contracts if not listed[c]]
        self._refuse_silent_groups(groups, jobs)
        # Only what was asked and answered: the (contract, product) pairs asked about (their
        # own lines and CP codes), and each reporting group's pairs it answered for.
        scopes = tuple(
            CoverageScope(account=j.contract, product=j.product, reporting_group="") for j in jobs
        )
        scopes += tuple(
            CoverageScope(account=c, product=p, reporting_group=g)
            for g in groups
            for c, p in sorted(self._answered[g])
        )
        self._invoice_lines = []
        if settings.invoices:
            # Only past months can have an invoice; the open one is still collecting.
            past = [m for m in months if m < Month.of(today)]
            self._invoice_lines = await read_invoices(
                self._get_invoices, self.source, contracts, past
            )
        self._coverage = Coverage(
            months=months,
            accounts=frozenset(contracts),
            products=frozenset(settings.products) if settings.products else None,
            scopes=scopes,
            empty_discovery=tuple(empty),
        )
        log.info(
            "source '%s': pulled %d lines %s..%s from %d contract(s), %d product summaries, "
            "%d reporting group(s) (%d API calls, %d retries) in %.1fs",
            self.source,
            self.stats.lines,
            months[0],
            months[-1],
            len(contracts),
            len(jobs),
            len(groups),
            self.stats.api_calls,
            self.stats.retries,
            time.monotonic() - started,
        )

    def _sign(self, url: yarl.URL) -> Mapping[str, str]:
        return sign_aiohttp_request(self._credentials, "GET", url)

    def _sign_invoicing(self, url: yarl.URL) -> Mapping[str, str]:
        return sign_aiohttp_request(self._invoicing, "GET", url)

    async def _get_invoices(self, endpoint: str, params: Mapping[str, str]) -> Any:
        return await self._get(endpoint, params, sign=self._sign_invoicing)

    async def _get(
        self,
        endpoint: str,
        params: Mapping[str, str],
        sign: Callable[[yarl.URL], Mapping[str, str]] | None = None,
    ) -> Any:
        query = dict(params)
        if self._settings.account_switch_key:
            query["accountSwitchKey"] = self._settings.account_switch_key
        with self.stats.requesting(endpoint):
            body, _ = await self._http.get_json(
                self.source,
                endpoint,
                api_url(self._base, endpoint, query),
                headers=sign or self._sign,
                limiter=self._limiter,
                policy=self._policy,
                stats=self.stats,
            )
        return body

    async def _contracts(self) -> list[str]:
        payload = await self._get(CONTRACTS, {"depth": "TOP"})
        return contract_ids(self.source, CONTRACTS, payload)

    async def _products(self, contract: str, window: Mapping[str, str]) -> list[tuple[str, str]]:
        endpoint = products_endpoint(contract)
        return products(self.source, endpoint, await self._get(endpoint, window))

    async def _discover(
        self,
        contracts: list[str],
        window: Mapping[str, str],
        listed: dict[str, list[tuple[str, str]]],
        groups: list[str],
        todo: asyncio.Queue[Job | None],
    ) -> None:
        """List every contract's products at once; queue each one's summaries as it lands,
        then the reporting groups' (which need every contract's products)."""

        async def one(contract: str) -> None:
            listed[contract] = await self._products(contract, window)
            for product, name in listed[contract]:
                todo.put_nowait(Job(contract, product, name))

        tasks = [asyncio.create_task(one(c)) for c in contracts]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # One contract failed: the pull fails, so stop asking about the others.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for job in group_jobs(groups, listed):
            todo.put_nowait(job)

    async def _summary(
        self, job: Job, window: Mapping[str, str], months: Sequence[Month]
    ) -> list[UsageLine]:
        if job.group:
            return await self._group_summary(job, window, months)
        contract, product, name = job.contract, job.product, job.name
        lines: list[UsageLine] = []
        for by_cp_code in (False, True) if self._settings.cp_codes else (False,):
            endpoint = summary_endpoint(contract, product, by_cp_code=by_cp_code)
            payload = await self._get(endpoint, window)
            lines += summary_lines(
                self.source,
                endpoint,
                payload,
                contract=contract,
                product=product,
                product_name=name,
                months=months,
                by_cp_code=by_cp_code,
            )
        return lines

    async def _group_summary(
        self, job: Job, window: Mapping[str, str], months: Sequence[Month]
    ) -> list[UsageLine]:
        """A reporting group's summary of a product, given to the contract it belongs to."""
        endpoint = reporting_group_endpoint(job.group, job.product)
        payload = await self._get(endpoint, window)
        contract = group_contract(
            self.source,
            endpoint,
            payload,
            group=job.group,
            product=job.product,
            contracts=job.contracts,
        )
        lines: list[UsageLine] = []
        if contract is not None:
            lines = summary_lines(
                self.source,
                endpoint,
                payload,
                contract=contract,
                product=job.product,
                product_name=job.name,
                months=months,
                group=job.group,
            )
        # An answer without usage says the group used the product under none of them.
        answered = [contract] if contract is not None and lines else job.contracts
        self._answered[job.group].update((c, job.product) for c in answered)
        self._group_lines[job.group] += len(lines)
        return lines

    def _refuse_silent_groups(self, groups: Sequence[str], jobs: Sequence[Job]) -> None:
        """A tracked reporting group with no usage for any product pulled is a wrong id or a
        group the credentials do not see, not an idle group: the pull fails."""
        for group in groups:
            if jobs and not self._group_lines[group]:
                raise BadProviderDataError(
                    self.source,
                    reporting_group_endpoint(group, "").replace("//", "/{productId}/"),
                    f"reporting group {group} answered no usage for any of the "
                    f"{len({j.product for j in jobs})} products pulled: check the source's "
                    "reporting_groups",
                )

    async def _summaries(
        self,
        feed: Callable[[asyncio.Queue[Job | None]], Awaitable[None]],
        workers: int,
        window: Mapping[str, str],
        months: Sequence[Month],
    ) -> AsyncIterator[list[UsageLine]]:
        """Run the summary requests ``feed`` queues on ``workers``; yield each as it arrives.

        The results queue holds at most one result per worker, so a slow consumer holds the
        workers back rather than letting finished pages pile up in memory.
        """
        todo: asyncio.Queue[Job | None] = asyncio.Queue()
        results: asyncio.Queue[list[UsageLine] | Exception | None] = asyncio.Queue(workers)

        async def produce() -> None:
            try:
                await feed(todo)
            except Exception as e:
                await results.put(e)
                return
            for _ in range(workers):
                todo.put_nowait(None)  # no more jobs: each worker stops

        async def work() -> None:
            while (job := await todo.get()) is not None:
                try:
                    lines = await self._summary(job, window, months)
                except Exception as e:
                    await results.put(e)
                    return
                await results.put(lines)
            await results.put(None)

        tasks = [asyncio.create_task(produce())]
        tasks += [asyncio.create_task(work()) for _ in range(workers)]
        try:
            finished = 0
            while finished < workers:
                item = await results.get()
                if item is None:
                    finished += 1
                elif isinstance(item, Exception):
                    raise item
                else:
                    self.stats.lines += len(item)
                    if item:
                        yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _static_feed(jobs: list[Job]) -> Callable[[asyncio.Queue[Job | None]], Awaitable[None]]:
    """A feed of jobs known before the pull (configured products)."""

    async def feed(todo: asyncio.Queue[Job | None]) -> None:
        for job in jobs:
            todo.put_nowait(job)

    return feed
