"""Akamai Billing API v1 and Contract API v1 documents → contract ids, products, usage lines.

Line identity of a monthly-summary stat (what the engine keys on; stable across runs):
account = ``contractId``, product = ``productId`` (``productName`` kept beside it), usage
type = ``statType``, region = the period's ``region``, service ``""`` (the CP code, for the
per-CP-code summary: one line per CP code and stat), month = the period's
``month``, period start and end = the period's ``start`` and ``end``. A reporting group's
summary gives the same lines with ``reporting-group:{id}`` as the service (see
:func:`reconciler.domain.reporting_group_service`) and the contract they belong to. A month
reported as several periods gives one line per period; a period's dates are not checked
against its month (Akamai's own example has 2017 dates in a 2020 month). ``isBillable`` may
be missing (None). The status comes from ``dataStatus``: ``COLLECTING_DATA`` is collecting,
``DATA_FINALIZED`` finalized; any other value is bad data, never a default.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from decimal import Decimal
from typing import Any

from reconciler.domain import (
    LineStatus,
    Month,
    Provider,
    UsageLine,
    reporting_group_of,
    reporting_group_service,
)
from reconciler.errors import BadProviderDataError
from reconciler.providers import normalize as n
from reconciler.providers.normalize import BadRecord

DATA_STATUSES = {
    "COLLECTING_DATA": LineStatus.COLLECTING,
    "DATA_FINALIZED": LineStatus.FINALIZED,
}
_PERIOD_FIELDS = (("month", "month"), ("region", "region"), ("start", "start"))


def contract_ids(source: str, endpoint: str, payload: Any) -> list[str]:
    """``["K-0N7RAK7", ...]`` → the distinct ids, in order."""
    if type(payload) is not list:
        raise BadProviderDataError(
            source, endpoint, f"expected a JSON array of contract ids, got {n.show(payload)}"
        )
    ids: list[str] = []
    for index, value in enumerate(payload):
        if type(value) is not str or not value.strip() or not value.isprintable():
            raise BadProviderDataError(
                source, endpoint, f"item {index} is not a contract id (got {n.show(value)})"
            )
        if value not in ids:
            ids.append(value)
    return ids


def products(source: str, endpoint: str, payload: Any) -> list[tuple[str, str]]:
    """``usagePeriods[].usageProducts[]`` → distinct ``(productId, productName)``, in order."""
    found: dict[str, str] = {}
    try:
        if type(payload) is not dict:
            raise BadRecord(f"expected a JSON object, got {n.show(payload)}")
        for index, period in enumerate(n.items(payload, "usagePeriods")):
            try:
                for entry in n.items(period, "usageProducts"):
                    product_id = n.text(entry, "productId")
                    name = n.optional_text(entry, "productName")
                    if not found.get(product_id):
                        found[product_id] = name
            except BadRecord as e:
                where = n.describe(period, (("month", "month"),))
                raise BadRecord(f"usage period {index}{where}: {e}") from None
    except BadRecord as e:
        raise BadProviderDataError(source, endpoint, str(e)) from None
    return list(found.items())


def group_contract(
    source: str, endpoint: str, payload: Any, *, group: str, product: str, contracts: Sequence[str]
) -> str | None:
    """The contract a reporting group's summary of ``product`` belongs to: its ``contractId``
    (one of the ``contracts`` pulled that have the product), else the only one of them; None
    for an answer without usage (it has nothing to give)."""
    where = f"reporting group {group} product {product}"
    try:
        if type(payload) is not dict:
            raise BadRecord(f"expected a JSON object, got {n.show(payload)}")
        got = _group_id(payload)
        if got and got != group:
            raise BadRecord(f"reportingGroupId is {got!r}, not the {group!r} asked for")
        contract = n.optional_text(payload, "contractId")
        if payload.get("usagePeriods") == []:
            return None  # no usage: nothing to give to a contract
        if contract and contract not in contracts:
            raise BadRecord(
                f"the group's usage is under contract {contract}, which this source does not "
                f"pull with the product (it pulls {', '.join(contracts)})"
            )
        if not contract and len(contracts) > 1:
            raise BadRecord(
                f"no contractId, and contracts {', '.join(contracts)} all have the product: "
                "the group's usage cannot be given to one of them"
            )
    except BadRecord as e:
        raise BadProviderDataError(source, endpoint, f"{where}: {e}") from None
    return contract or contracts[0]


def _group_id(payload: dict[str, Any]) -> str:
    """``reportingGroupId`` as text ("" when missing); the API's ids are integers."""
    value = payload.get("reportingGroupId")
    if type(value) is Decimal and value.is_finite() and value == value.to_integral():
        value = int(value)
    if type(value) is int:
        return str(value)
    return n.optional_text(payload, "reportingGroupId")


def summary_lines(
    source: str,
    endpoint: str,
    payload: Any,
    *,
    contract: str,
    product: str,
    product_name: str,
    months: Collection[Month],
    by_cp_code: bool = False,
    group: str = "",
) -> list[UsageLine]:
    """The lines of one monthly-summary document for ``contract`` and ``product``; with
    ``by_cp_code``, of its per-CP-code sibling (each period's ``cpCodeStats``: one line per
    CP code and stat, the CP code as the line's service); with ``group``, of that reporting
    group's summary of the product (its stats carry no ``isBillable``: None, never true)."""
    where = f"contract {contract} product {product}"
    if group:
        where = f"reporting group {group} product {product}"
    try:
        if type(payload) is not dict:
            raise BadRecord(f"expected a JSON object, got {n.show(payload)}")
        for key, expected in (("contractId", contract), ("productId", product)):
            got = n.optional_text(payload, key)
            if got and got != expected:
                raise BadRecord(f"{key} is {got!r}, not the {expected!r} asked for")
        name = n.optional_text(payload, "productName") or product_name
        periods = n.items(payload, "usagePeriods")
    except BadRecord as e:
        raise BadProviderDataError(source, endpoint, f"{where}: {e}") from None
    lines: list[UsageLine] = []
    seen: set[tuple[str, str, Month, object]] = set()
    for index, period in enumerate(periods):
        label = f"{where} usage period {index}{n.describe(period, _PERIOD_FIELDS)}"
        try:
            own = reporting_group_service(group) if group else ""
            groups = _cp_code_stats(period) if by_cp_code else [(own, n.items(period, "stats"))]
            for service, stats in groups:
                where_stats = (contract, product, name, service)
                _period_lines(source, where_stats, period, stats, months, seen, lines)
        except BadRecord as e:
            raise BadProviderDataError(source, endpoint, f"{label}: {e}") from None
    return lines


def _cp_code_stats(period: Any) -> list[tuple[str, list[Any]]]:
    """``cpCodeStats: [{"cpCode": 7654321, "stats": [...]}]`` → (CP code, stats) pairs."""
    groups: list[tuple[str, list[Any]]] = []
    for position, entry in enumerate(n.items(period, "cpCodeStats")):
        if type(entry) is not dict:
            raise BadRecord(f"cpCodeStats {position} is not an object (got {n.show(entry)})")
        code = entry.get("cpCode")
        if type(code) is Decimal and code.is_finite() and code == code.to_integral():
            code = int(code)
        if type(code) is not int or code <= 0:
            raise BadRecord(f"cpCodeStats {position}: cpCode is not a CP code (got {n.show(code)})")
        groups.append((str(code), n.items(entry, "stats")))
    return groups


def _period_lines(
    source: str,
    where: tuple[str, str, str, str],
    period: Any,
    stats: list[Any],
    months: Collection[Month],
    seen: set[tuple[str, str, Month, object]],
    out: list[UsageLine],
) -> None:
    contract, product, product_name, service = where
    group = reporting_group_of(service)
    month = n.month(period, "month")
    if month not in months:
        raise BadRecord(f"month {month} was not asked for")
    raw_status = period.get("dataStatus")
    status = DATA_STATUSES.get(raw_status) if type(raw_status) is str else None
    if status is None:
        raise BadRecord(f"dataStatus {n.show(raw_status)} is not one of {', '.join(DATA_STATUSES)}")
    region = n.optional_text(period, "region")
    start = n.period_day(period, "start")
    end = n.period_day(period, "end")
    if end < start:
        raise BadRecord(f"end {end} is before start {start}")
    for position, stat in enumerate(stats):
        try:
            usage_type = n.text(stat, "statType")
            key = (usage_type, region, month, (start, service))
            if key in seen:
                raise BadRecord("appears twice for the same period")
            seen.add(key)
            out.append(
                UsageLine(
                    source=source,
                    provider=Provider.AKAMAI,
                    account=contract,
                    product=product,
                    product_name=product_name,
                    usage_type=usage_type,
                    region=region,
                    service=service,
                    month=month,
                    period_start=start,
                    period_end=end,
                    quantity=n.quantity(stat, "value"),
                    raw_quantity=None,
                    unit=n.text(stat, "unit"),
                    billable=n.flag(stat, "isBillable"),
                    status=status,
                    service_name=f"reporting group {group}" if group else "",
                )
            )
        except BadRecord as e:
            stat_type = n.describe(stat, (("statType", "statType"),))
            code = f"CP code {service} " if service and not group else ""
            raise BadRecord(f"{code}stat {position}{stat_type}: {e}") from None
