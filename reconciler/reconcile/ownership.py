"""Who owns a line: the first ``[[teams.match]]`` rule that matches it. Pure.

Teams are tried in declaration order and each team's rules in order; the first match wins, so
a narrow rule is written before a broad one. What no rule matches belongs to ``unallocated``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Protocol

from reconciler.domain import ItemCategory, PlanItem, reporting_group_of
from reconciler.settings import (
    AkamaiSourceSettings,
    ExpectationSettings,
    FastlySourceSettings,
    Settings,
)
from reconciler.team_settings import SHARED, UNALLOCATED, OwnershipRule, TeamSettings


class OwnedLine(Protocol):
    """What ownership reads of a line (usage lines and cost lines both have it)."""

    @property
    def source(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def product(self) -> str: ...
    @property
    def product_name(self) -> str: ...
    @property
    def usage_type(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def service_name(self) -> str: ...


def _either(value: str, other: str, pattern: str) -> bool:
    return fnmatchcase(value, pattern) or (bool(other) and fnmatchcase(other, pattern))


def rule_matches(rule: OwnershipRule, line: OwnedLine) -> bool:
    """Every field of the rule matches; ``service`` and ``product`` match the id or the name,
    ``cp_code`` the CP code (an Akamai line's service). A rule naming a service or a CP code
    never matches an account-level line (one of no service).

    An Akamai reporting group's line is its group's part of the contract product's line: a
    rule naming a ``reporting_group`` matches only such lines, a rule naming a service or a
    CP code never does, and any other rule matches it as it matches the product's line."""
    group = reporting_group_of(line.service)
    if group is not None:
        if rule.service != "*" or rule.cp_code != "*":
            return False
        return fnmatchcase(group, rule.reporting_group) and _line_fields(rule, line)
    if rule.reporting_group != "*":
        return False
    if (rule.service != "*" or rule.cp_code != "*") and not line.service:
        return False
    return (
        _either(line.service, line.service_name, rule.service)
        and fnmatchcase(line.service, rule.cp_code)
        and _line_fields(rule, line)
    )


def _line_fields(rule: OwnershipRule, line: OwnedLine) -> bool:
    return (
        fnmatchcase(line.source, rule.source)
        and fnmatchcase(line.account, rule.contract)
        and _either(line.product, line.product_name, rule.product)
        and fnmatchcase(line.usage_type, rule.usage_type)
        and fnmatchcase(line.region, rule.region)
    )


def first_rule(teams: Sequence[TeamSettings], line: OwnedLine) -> tuple[int, int] | None:
    """(team index, rule index) of the first rule matching ``line``, or None."""
    for team_index, team in enumerate(teams):
        for rule_index, rule in enumerate(team.match):
            if rule_matches(rule, line):
                return team_index, rule_index
    return None


def owner_of(teams: Sequence[TeamSettings], line: OwnedLine) -> str:
    found = first_rule(teams, line)
    return UNALLOCATED if found is None else teams[found[0]].name


def unused_rules(teams: Sequence[TeamSettings], lines: Iterable[OwnedLine]) -> list[str]:
    """``teams[i].match[j]`` of each rule that is the first match of no line (it matches
    nothing, or only lines an earlier rule already owns)."""
    used = {found for line in lines if (found := first_rule(teams, line)) is not None}
    return [
        f"teams[{t}].match[{r}] ({team.name}: {rule.label})"
        for t, team in enumerate(teams)
        for r, rule in enumerate(team.match)
        if (t, r) not in used
    ]


def shared_sources(settings: Settings) -> frozenset[str]:
    """Sources whose account-level lines are broken down per service (Fastly with services,
    Akamai with CP codes): such a line no rule owns is shared cost."""
    return frozenset(
        s.name
        for s in settings.sources
        if (isinstance(s, FastlySourceSettings) and s.services)
        or (isinstance(s, AkamaiSourceSettings) and s.cp_codes)
    )


def line_owner(settings: Settings, line: OwnedLine) -> str:
    """The team owning a line, or ``shared`` for an account-level line of a shared source
    that no rule owns (the ``[showback]`` rule splits its cost)."""
    owner = owner_of(settings.teams, line)
    if owner == UNALLOCATED and not line.service and line.source in shared_sources(settings):
        return SHARED
    return owner


def item_team(settings: Settings, item: PlanItem) -> str:
    """The team a review item concerns: a team expectation's team, else the owner of the line
    the item names (an expectation's matchers name an account-level line, usually shared)."""
    if item.category is ItemCategory.FINDING:
        for exp in settings.expectations:
            if exp.team is not None and _raised_by(exp, item):
                return exp.team
    return line_owner(settings, item)


def _raised_by(exp: ExpectationSettings, item: PlanItem) -> bool:
    label = exp.label
    return item.product_name == label or any(
        item.message.startswith(label + tail) for tail in (":", " /", " [")
    )
