"""The provider port: what the engine calls to pull one source's usage.

A provider is opened for one source with :func:`open_provider` (which resolves its secret
and checks its address) and pulled with ``async for page in provider.pull(today)``. Lines
arrive page by page, so memory stays bounded by a page whatever the account's size. Once the
iteration has finished without an error, ``coverage`` says what the pull covered (lines of
the source inside it that were not seen have disappeared) and, for Fastly, ``invoice_lines``
holds the posted invoices' line items. A pull that raises covered nothing.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import date
from typing import TYPE_CHECKING, Protocol

import yarl

from reconciler.domain import Month, UsageLine, reporting_group_of
from reconciler.errors import ConfigError
from reconciler.reconcile.invoices import InvoiceLine
from reconciler.settings import AkamaiSourceSettings, FastlySourceSettings

if TYPE_CHECKING:
    from reconciler.providers.http import HttpClient

__all__ = [
    "Coverage",
    "CoverageScope",
    "InvoiceLine",
    "PullStats",
    "UsageProvider",
    "api_url",
    "check_base_url",
    "months_to_pull",
    "open_provider",
]


@dataclass
class PullStats:
    """Counters of one pull: HTTP requests sent, of which retries, JSON pages read, lines;
    and the endpoints of the requests in flight (to say which one stalled)."""

    api_calls: int = 0
    retries: int = 0
    pages: int = 0
    lines: int = 0
    in_flight: Counter[str] = field(default_factory=Counter, repr=False, compare=False)

    def reset(self) -> None:
        for counter in fields(self):
            if counter.name != "in_flight":
                setattr(self, counter.name, 0)
        self.in_flight.clear()

    @contextmanager
    def requesting(self, endpoint: str) -> Iterator[None]:
        """Count ``endpoint`` as in flight while the block runs."""
        self.in_flight[endpoint] += 1
        try:
            yield
        finally:
            self.in_flight[endpoint] -= 1
            if not self.in_flight[endpoint]:
                del self.in_flight[endpoint]


@dataclass(frozen=True)
class Coverage:
    """What a complete pull covered.

    Lines of the source inside the coverage that the pull did not return have disappeared.
    ``accounts`` is None for every account of the source (Fastly; Akamai with discovered
    contracts), else the accounts pulled: the contract ids (Akamai with ``contracts``
    configured), or ``{""}``, Fastly's account-level lines only (``services = false``).
    ``products`` is None for every product, else the product ids pulled (Akamai with
    ``products`` configured). ``derived_statuses`` says the provider reports no status and
    reconciler derives it (Fastly: by invoices, or by the calendar): such a status never
    reopens a month that was finalized, whichever rule finalized it.
    """

    months: tuple[Month, ...]
    accounts: frozenset[str] | None
    products: frozenset[str] | None = None
    # When given, a line is covered only if it also matches one of these: what was asked
    # and answered (Akamai: each discovered contract's listed products; Fastly: the
    # account-level lines plus the service lines of a product_id/usage_type_name filter).
    scopes: tuple[CoverageScope, ...] | None = None
    # Discoveries that answered nothing: (endpoint, account or None). The engine fails the
    # pull if the source tracks lines there (an empty answer is not an empty account).
    empty_discovery: tuple[tuple[str, str | None], ...] = ()
    derived_statuses: bool = False

    def covers(self, line: UsageLine) -> bool:
        return (
            line.month in self.months
            and (self.accounts is None or line.account in self.accounts)
            and (self.products is None or line.product in self.products)
            and (self.scopes is None or any(s.matches(line) for s in self.scopes))
        )


@dataclass(frozen=True)
class CoverageScope:
    """Lines whose fields equal every value given here (None: any value)."""

    account: str | None = None
    product: str | None = None
    usage_type: str | None = None
    # An Akamai reporting group's lines ("": the lines of no reporting group).
    reporting_group: str | None = None

    def matches(self, line: UsageLine) -> bool:
        return (
            (self.account is None or line.account == self.account)
            and (self.product is None or line.product == self.product)
            and (self.usage_type is None or line.usage_type == self.usage_type)
            and (
                self.reporting_group is None
                or (reporting_group_of(line.service) or "") == self.reporting_group
            )
        )

    def as_dict(self) -> dict[str, str]:
        fields = {
            "account": self.account,
            "product": self.product,
            "usage_type": self.usage_type,
            "reporting_group": self.reporting_group,
        }
        return {k: v for k, v in fields.items() if v is not None}


class UsageProvider(Protocol):
    """One source's provider client (the port; one module per provider implements it)."""

    source: str
    stats: PullStats

    def pull(self, today: date) -> AsyncGenerator[Sequence[UsageLine], None]:
        """Every usage line of the months to pull (``lookback_months`` ending with ``today``'s
        month), page by page. Raises a ProviderError subclass if anything is wrong: a pull
        is complete or it fails as a whole."""
        ...

    @property
    def coverage(self) -> Coverage:
        """What the last complete pull covered; RuntimeError before one has finished."""
        ...

    @property
    def invoice_lines(self) -> list[InvoiceLine]:
        """Invoice line items read by the last complete pull (empty for Akamai)."""
        ...


def months_to_pull(today: date, lookback_months: int) -> tuple[Month, ...]:
    """The ``lookback_months`` months ending with the month of ``today``, oldest first."""
    if lookback_months < 1:
        raise ValueError("lookback_months must be at least 1")
    last = Month.of(today)
    return tuple((last - (lookback_months - 1)).range_to(last))


_LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``."""
    if host.lower().rstrip(".") in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(value: str, key_path: str) -> yarl.URL:
    """Parse an API address; plain http is refused unless the host is a loopback address."""
    try:
        url = yarl.URL(value.strip())
    except (TypeError, ValueError) as e:
        raise ConfigError([f"{key_path}: not a URL ({e})"]) from None
    problem = None
    if url.scheme not in ("http", "https") or not url.host:
        problem = f"expected https://host[:port][/path], got {value!r}"
    elif url.user is not None or url.password is not None:
        problem = "must not contain a user name or password"
    elif url.query_string or url.fragment:
        problem = "must not contain a query or fragment"
    elif url.scheme == "http" and not is_loopback_host(url.host):
        problem = (
            f"plain http is only allowed for loopback addresses (127.0.0.0/8, ::1, localhost), "
            f"not {url.host}: use https"
        )
    if problem:
        raise ConfigError([f"{key_path}: {problem}"])
    return url.with_path(url.path.rstrip("/"))


def api_url(base: yarl.URL, path: str, query: Mapping[str, str] | None = None) -> yarl.URL:
    """``base`` (which may carry a path prefix) joined with an already quoted API ``path``."""
    url = base.with_path(base.raw_path.rstrip("/") + path, encoded=True)
    return url.with_query(query) if query else url


def open_provider(
    settings: FastlySourceSettings | AkamaiSourceSettings,
    index: int,
    http: HttpClient,
    environ: Mapping[str, str] | None = None,
) -> UsageProvider:
    """The provider client of one configured source.

    ``index`` is the source's position in ``settings.sources`` (for key paths in errors).
    Resolves the source's secret now: a missing one raises MissingSecretError, a bad address
    ConfigError.
    """
    # Imported here: the provider modules import this one.
    if isinstance(settings, FastlySourceSettings):
        from reconciler.providers.fastly import FastlyProvider

        return FastlyProvider.from_settings(settings, index, http, environ)
    from reconciler.providers.akamai import AkamaiProvider

    return AkamaiProvider.from_settings(settings, index, http, environ)
