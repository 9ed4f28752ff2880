"""Fastly Billing API v3 documents → usage lines and invoice lines, strictly.

Line identity (what the engine keys on; stable across runs):

- account usage (``/billing/v3/usage-metrics``): account ``""``, service ``""``;
- service usage (``/billing/v3/service-usage-metrics``): account = the record's
  ``customer_id``, service = ``service_id`` (``service_name`` kept beside it);
- both: product = ``product_id``, usage type = ``usage_type``, region = ``region`` or ``""``,
  period = the whole month.

Service usage comes in two documented shapes: ``{"data": [record...], "meta": {...}}`` and
the older ``{"data": {"customer_id", "start_time", "end_time", "usage_type", "unit",
"details": [{"service_id", "service_name", "usage_units", ...}], "meta": {...}}}``, whose
details take what they lack from the enclosing object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from reconciler.domain import LineStatus, Month, Provider, UsageLine
from reconciler.errors import BadProviderDataError
from reconciler.providers import normalize as n
from reconciler.providers.base import InvoiceLine
from reconciler.providers.normalize import BadRecord

_RECORD_FIELDS = (
    ("month", "month"),
    ("service_id", "service"),
    ("product_id", "product"),
    ("usage_type", "usage type"),
    ("region", "region"),
)
_INVOICE_FIELDS = (("invoice_id", "invoice"), ("billing_start_date", "billing start"))
_ITEM_FIELDS = (("product_name", "product"), ("region", "region"), ("usage_type", "usage type"))


@dataclass(frozen=True)
class Page:
    """The records of one response and its ``meta`` (None when absent)."""

    records: list[Any]
    meta: dict[str, Any] | None
    defaults: dict[str, Any] | None = None  # the nested shape's enclosing fields


class FastlyLines:
    """Turns Fastly records into usage lines of the months asked for."""

    def __init__(
        self, source: str, statuses: Mapping[Month, LineStatus], product_id: str | None = None
    ) -> None:
        self.source = source
        self.statuses = statuses
        self.product_id = product_id
        self._calendar = {
            str(month): (month, month.first_day, month.last_day, status)
            for month, status in statuses.items()
        }

    def _status(self, month: Month) -> LineStatus:
        status = self.statuses.get(month)
        if status is None:
            months = sorted(self.statuses)
            raise BadRecord(f"month {month} was not asked for ({months[0]}..{months[-1]})")
        return status

    def account_line(self, record: dict[str, Any]) -> UsageLine:
        month = n.month(record, "month")
        return UsageLine(
            source=self.source,
            provider=Provider.FASTLY,
            account="",
            product=n.text(record, "product_id"),
            product_name="",
            usage_type=n.text(record, "usage_type"),
            region=n.optional_text(record, "region"),
            service="",
            month=month,
            period_start=month.first_day,
            period_end=month.last_day,
            quantity=n.quantity(record, "quantity"),
            raw_quantity=n.optional_quantity(record, "raw_quantity"),
            unit=n.text(record, "unit"),
            billable=None,
            status=self._status(month),
            updated_at=n.timestamp(record, "last_updated_at"),
        )

    def service_line(self, record: dict[str, Any]) -> UsageLine:
        # The hot path of a million-line pull: one pass of plain type checks; anything
        # unusual (or wrong) goes through the field readers, which say what is wrong.
        if type(record) is dict:
            get = record.get
            month_text = get("month")
            when = self._calendar.get(month_text) if type(month_text) is str else None
            quantity = get("quantity")
            raw = get("raw_quantity")
            account = get("customer_id")
            service = get("service_id")
            product = get("product_id")
            usage_type = get("usage_type")
            unit = get("unit")
            region = get("region")
            name = get("service_name")
            if (
                when is not None
                and type(quantity) is Decimal
                and quantity.is_finite()
                and quantity >= 0
                and n.fits(quantity)
                and (
                    raw is None
                    or (type(raw) is Decimal and raw.is_finite() and raw >= 0 and n.fits(raw))
                )
                and type(account) is str
                and type(service) is str
                and type(product) is str
                and type(usage_type) is str
                and type(unit) is str
                and account
                and service
                and product
                and usage_type
                and unit
                and (region is None or type(region) is str)
                and (name is None or type(name) is str)
                # Anything unprintable is cleaned by the field readers.
                and account.isprintable()
                and service.isprintable()
                and product.isprintable()
                and usage_type.isprintable()
                and unit.isprintable()
                and (region is None or region.isprintable())
                and (name is None or name.isprintable())
                and get("last_updated_at") is None
            ):
                month, first, last, status = when
                return UsageLine(
                    source=self.source,
                    provider=Provider.FASTLY,
                    account=account,
                    product=product,
                    product_name="",
                    usage_type=usage_type,
                    region=region or "",
                    service=service,
                    month=month,
                    period_start=first,
                    period_end=last,
                    quantity=quantity,
                    raw_quantity=raw,
                    unit=unit,
                    billable=None,
                    status=status,
                    service_name=name or "",
                )
        return self._checked_service_line(record)

    def _checked_service_line(self, record: dict[str, Any]) -> UsageLine:
        month = n.month(record, "month")
        return UsageLine(
            source=self.source,
            provider=Provider.FASTLY,
            account=n.text(record, "customer_id"),
            product=n.text(record, "product_id"),
            product_name="",
            usage_type=n.text(record, "usage_type"),
            region=n.optional_text(record, "region"),
            service=n.text(record, "service_id"),
            month=month,
            period_start=month.first_day,
            period_end=month.last_day,
            quantity=n.quantity(record, "quantity"),
            raw_quantity=n.optional_quantity(record, "raw_quantity"),
            unit=n.text(record, "unit"),
            billable=None,
            status=self._status(month),
            updated_at=n.timestamp(record, "last_updated_at"),
            service_name=n.optional_text(record, "service_name"),
        )

    def nested_line(self, record: dict[str, Any], defaults: dict[str, Any]) -> UsageLine:
        if type(record) is not dict:
            raise BadRecord(f"is not a JSON object (got {n.show(record)})")
        merged = dict(defaults)
        merged.update((k, v) for k, v in record.items() if v is not None)
        if "quantity" not in record:
            merged["quantity"] = record.get("usage_units")
        if merged.get("month") is None:
            raise BadRecord("month is missing and the response spans more than one month")
        return self.service_line(merged)


def convert(
    source: str,
    endpoint: str,
    label: str,
    records: list[Any],
    build: Callable[[Any], UsageLine],
) -> list[UsageLine]:
    """``build`` each record; the first bad one fails the whole page, named."""
    lines = []
    for index, record in enumerate(records):
        try:
            lines.append(build(record))
        except BadRecord as e:
            where = f"{label} record {index}{n.describe(record, _RECORD_FIELDS)}"
            raise BadProviderDataError(source, endpoint, f"{where}: {e}") from None
    return lines


def _document(source: str, endpoint: str, payload: Any) -> dict[str, Any]:
    if type(payload) is not dict:
        raise BadProviderDataError(
            source, endpoint, f"expected a JSON object, got {n.show(payload)}"
        )
    return payload


def _meta(source: str, endpoint: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise BadProviderDataError(source, endpoint, f"meta is not an object ({n.show(value)})")
    return value


def usage_page(source: str, endpoint: str, payload: Any) -> Page:
    """``{"data": [...]}`` (a ``meta`` beside it tolerated; a bare record accepted)."""
    doc = _document(source, endpoint, payload)
    data = doc.get("data")
    if type(data) is dict:
        data = [data]
    if type(data) is not list:
        raise BadProviderDataError(source, endpoint, f"data is not a list (got {n.show(data)})")
    return Page(data, _meta(source, endpoint, doc.get("meta")))


def service_page(source: str, endpoint: str, payload: Any, product_id: str | None) -> Page:
    """Either documented service-usage shape."""
    doc = _document(source, endpoint, payload)
    data = doc.get("data")
    if type(data) is list:
        return Page(data, _meta(source, endpoint, doc.get("meta")))
    if type(data) is not dict or type(data.get("details")) is not list:
        raise BadProviderDataError(
            source,
            endpoint,
            f"data is neither a list of records nor an object with details (got {n.show(data)})",
        )
    meta = data.get("meta") if data.get("meta") is not None else doc.get("meta")
    defaults: dict[str, Any] = {
        key: data[key] for key in ("customer_id", "usage_type", "unit") if data.get(key) is not None
    }
    if product_id:
        defaults["product_id"] = product_id
    month = _single_month(data)
    if month is not None:
        defaults["month"] = month
    return Page(data["details"], _meta(source, endpoint, meta), defaults)


def _single_month(data: dict[str, Any]) -> str | None:
    """The month of ``start_time``..``end_time`` when both fall in the same one."""
    try:
        start = n.timestamp(data, "start_time")
        end = n.timestamp(data, "end_time")
    except BadRecord:
        return None
    if start is None or end is None or Month.of(start.date()) != Month.of(end.date()):
        return None
    return str(Month.of(start.date()))


def meta_total(source: str, endpoint: str, meta: dict[str, Any] | None) -> int | None:
    if meta is None:
        return None
    try:
        return n.integer(meta, "total")
    except BadRecord as e:
        raise BadProviderDataError(source, endpoint, f"meta: {e}") from None


def invoice_lines(
    source: str, endpoint: str, label: str, records: list[Any], months: tuple[Month, ...]
) -> tuple[set[Month], list[InvoiceLine]]:
    """Months billed for usage among ``months``, and every line item of their invoices.

    A month is billed when an invoice whose billing period covers the whole month bills usage
    (a line item with a product, a usage type and units): an invoice that merely starts inside
    a month (a one-off fee, a mid-month plan change) does not finalize it. Every line item is
    kept under the month its invoice starts in, fees and taxes included.
    """
    wanted = set(months)
    invoiced: set[Month] = set()
    lines: list[InvoiceLine] = []
    for index, record in enumerate(records):
        where = f"{label} invoice {index}{n.describe(record, _INVOICE_FIELDS)}"
        try:
            start = n.timestamp(record, "billing_start_date")
            if start is None:
                raise BadRecord("billing_start_date is missing")
            end = n.timestamp(record, "billing_end_date")
            month = Month.of(start.date())
            header = _InvoiceHeader(
                account=n.text(record, "customer_id"),
                invoice_id=_invoice_id(record),
                currency=n.optional_text(record, "currency_code") or None,
                start=start.date(),
                end=end.date() if end is not None else month.last_day,
            )
            items = n.items(record, "transaction_line_items")
        except BadRecord as e:
            raise BadProviderDataError(source, endpoint, f"{where}: {e}") from None
        if month not in wanted:
            continue
        found = []
        for position, item in enumerate(items):
            try:
                found.append(_invoice_line(source, header, month, position, item))
            except BadRecord as e:
                what = f"{where} line item {position}{n.describe(item, _ITEM_FIELDS)}"
                raise BadProviderDataError(source, endpoint, f"{what}: {e}") from None
        lines.extend(found)
        if any(line.is_usage for line in found):
            invoiced |= {
                m for m in wanted if header.start <= m.first_day and m.last_day <= header.end
            }
    return invoiced, lines


def _invoice_id(record: dict[str, Any]) -> str:
    """A numeric string as documented; a bare JSON integer is the same id."""
    value = record.get("invoice_id")
    if type(value) is int:
        return str(value)
    return n.optional_text(record, "invoice_id")


@dataclass(frozen=True)
class _InvoiceHeader:
    account: str
    invoice_id: str
    currency: str | None
    start: date
    end: date


def _invoice_line(
    source: str, header: _InvoiceHeader, month: Month, position: int, item: Any
) -> InvoiceLine:
    if type(item) is not dict:
        raise BadRecord(f"is not a JSON object (got {n.show(item)})")
    return InvoiceLine(
        source=source,
        account=header.account,
        month=month,
        usage_type=n.optional_text(item, "usage_type"),
        product_name=n.optional_text(item, "product_name"),
        region=n.optional_text(item, "region"),
        units=n.optional_number(item, "units"),
        amount=n.optional_number(item, "amount"),
        currency=header.currency,
        invoice_id=header.invoice_id,
        position=position,
        description=n.optional_text(item, "description"),
        unit=n.optional_text(item, "unit") or None,
        billing_start=header.start,
        billing_end=header.end,
    )


def month_statuses(
    months: tuple[Month, ...],
    today: date,
    invoiced: set[Month] | None,
    finalize_after_days: int,
) -> dict[Month, LineStatus]:
    """Each month's status: by its invoice, or (``invoiced`` None) by the calendar."""
    statuses = {}
    for month in months:
        if invoiced is not None:
            final = month in invoiced
        else:
            final = (today - month.last_day).days >= finalize_after_days
        statuses[month] = LineStatus.FINALIZED if final else LineStatus.COLLECTING
    return statuses
