"""An Akamai reporting group's part of its contract product's usage. Pure.

A reporting group's monthly summary is a part of a contract product's usage, not more of it:
the contract product's line stays the billing truth (priced, audited, checked by
expectations) and a reporting group's line says which part of it the group used. Per usage
(source, contract, product, usage type, region, unit and month), each group's share is its
volume over the contract product's volume: volumes only, a percentile or a peak is never a
share of anything. Groups whose volumes add up to more than the contract's (groups that
overlap, or a contract figure that lags) are scaled down to share all of it, never more.
What no group covers stays with the contract line's owner. A group line of a usage the
contract product has no volume of carries nothing.

The group's owner is the owner of its line (:func:`reconciler.reconcile.ownership.owner_of`):
a ``reporting_group`` rule, else the rule that owns the contract product's line. A group line
no rule owns leaves its part with the contract line.

Which lines break a contract line down is decided per source and month
(:func:`breakdown_lines`): a month with reporting-group lines is broken down by its groups
alone, a month without by its CP codes. A source switched from ``cp_codes`` to
``reporting_groups`` keeps its older months' CP-code lines, and a month pulled again after
the switch may hold both; one month's lines never decide how another month is shared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Protocol, TypeVar

from reconciler.domain import Month, reporting_group_of
from reconciler.reconcile.ownership import OwnedLine, owner_of
from reconciler.team_settings import UNALLOCATED, TeamSettings

# source, account (contract), product, usage type, region, unit, month
UsageKey = tuple[str, str, str, str, str, str, Month]
Weights = dict[str, Fraction]


class SharedLine(OwnedLine, Protocol):
    """What the shares read of a line (cost lines and a report's usage rows both have it)."""

    @property
    def month(self) -> Month: ...
    @property
    def unit(self) -> str: ...
    @property
    def quantity(self) -> Decimal: ...
    @property
    def additive(self) -> bool: ...


def usage_key(line: SharedLine) -> UsageKey:
    return (line.source, line.account, line.product, line.usage_type, line.region, line.unit,
            line.month)  # fmt: skip


def is_group_line(line: SharedLine) -> bool:
    return reporting_group_of(line.service) is not None


class MonthOfSource(Protocol):
    """What the breakdown rule reads of a line (cost lines and expectations' lines both have it)."""

    @property
    def source(self) -> str: ...
    @property
    def month(self) -> Month: ...
    @property
    def service(self) -> str: ...


AnyLine = TypeVar("AnyLine", bound=MonthOfSource)


def breakdown_lines(lines: Iterable[AnyLine]) -> list[AnyLine]:
    """``lines`` without the CP-code lines of a source's month that has reporting-group
    lines: there the groups alone say who used the contract's lines, so a CP-code line of
    the same usage neither splits what the groups leave nor counts in a team's usage (nor
    a team's quantity expectations) again."""
    lines = list(lines)
    grouped = {(x.source, x.month) for x in lines if reporting_group_of(x.service) is not None}
    return [
        x
        for x in lines
        if not x.service
        or reporting_group_of(x.service) is not None
        or (x.source, x.month) not in grouped
    ]


@dataclass(frozen=True, slots=True)
class GroupShares:
    """Per usage, each group owner's fraction of the contract product's volume (fractions
    adding up to 1 at most) and that volume."""

    parts: Mapping[UsageKey, Weights]
    volumes: Mapping[UsageKey, Fraction]
    # Per usage, the part of its quantity an owned group's line counts at (1 unless the
    # groups add up to more than the contract's volume).
    scales: Mapping[UsageKey, Fraction] = field(default_factory=dict)

    def of(self, line: SharedLine) -> Weights:
        """The group owners' fractions of a contract product's line (empty: no group)."""
        if line.service or not line.additive:
            return {}
        return dict(self.parts.get(usage_key(line), {}))

    def remainder(self, line: SharedLine) -> Fraction:
        """The part of the line's usage no group covers (1: no group covers any)."""
        if not line.additive or is_group_line(line):
            return Fraction(1)
        return 1 - sum(self.parts.get(usage_key(line), {}).values(), Fraction(0))

    def counted(self, line: SharedLine, owner: str) -> Fraction:
        """The part of ``line``'s quantity that counts in ``owner``'s usage (its owner's): all
        of a line that is no volume (never shared); of a contract product's volume line, what
        no group covers; of an owned group's, its part of the contract's volume; nothing of a
        group line no rule owns, of no volume, or of a usage the contract has no volume of."""
        if not line.additive or not is_group_line(line):
            return self.remainder(line)
        key = usage_key(line)
        if owner == UNALLOCATED or line.quantity <= 0 or key not in self.parts:
            return Fraction(0)
        return self.scales[key]

    def quantities(self) -> dict[tuple[str, UsageKey], Fraction]:
        """Each group owner's quantity of each usage: its share of the contract's volume."""
        return {
            (owner, key): fraction * self.volumes[key]
            for key, parts in self.parts.items()
            for owner, fraction in parts.items()
        }


def group_shares(lines: Iterable[SharedLine], teams: Sequence[TeamSettings]) -> GroupShares:
    """The reporting groups' shares of every usage ``lines`` hold both of."""
    contract: dict[UsageKey, Fraction] = defaultdict(Fraction)
    groups: dict[UsageKey, Weights] = defaultdict(lambda: defaultdict(Fraction))
    for line in lines:
        if not line.additive:
            continue
        if not line.service:
            contract[usage_key(line)] += Fraction(line.quantity)
        elif is_group_line(line) and line.quantity > 0:
            groups[usage_key(line)][owner_of(teams, line)] += Fraction(line.quantity)
    parts: dict[UsageKey, Weights] = {}
    scales: dict[UsageKey, Fraction] = {}
    for key, owners in groups.items():
        volume = contract.get(key, Fraction(0))
        if volume <= 0:
            continue
        scale = max(volume, sum(owners.values(), Fraction(0)))
        owned = {o: q / scale for o, q in owners.items() if o != UNALLOCATED}
        if owned:
            parts[key] = owned
            scales[key] = volume / scale
    return GroupShares(parts, {key: contract[key] for key in parts}, scales)


def as_decimal(value: Fraction) -> Decimal:
    """An exact fraction as a Decimal (exact when it terminates, else to 28 digits)."""
    return Decimal(value.numerator) / Decimal(value.denominator)


def merged(parts: Mapping[str, Fraction], rest: Mapping[str, Fraction], r: Fraction) -> Weights:
    """Group parts plus ``r`` of the ``rest`` weights (fractions adding up to 1)."""
    out: Weights = defaultdict(Fraction)
    for owner, fraction in parts.items():
        out[owner] += fraction
    for owner, fraction in rest.items():
        out[owner] += r * fraction
    return {o: f for o, f in out.items() if f}
