"""The ``[[teams]]`` and ``[showback]`` tables of the configuration: who owns each line.

A team owns the lines its ``[[teams.match]]`` rules match. A rule narrows by ``source``,
``service`` (a Fastly service id or service name), ``cp_code`` (an Akamai CP code, read from
the per-CP-code summary of a source with ``cp_codes = true``), ``reporting_group`` (an Akamai
reporting group id, read for a source's ``reporting_groups``), ``contract`` (the line's
account: an Akamai contract, a Fastly customer id), ``product`` (id or name), ``usage_type``
and ``region``; each is exact or a glob, and an unset field matches anything. Teams are tried
in the order they are declared and, within a team, its rules in order: the first rule that
matches a line names its owner. A line no rule matches belongs to ``unallocated``.

``[showback]`` says how shared cost is split: account-level lines of a source that reports
per-service usage (Fastly), a money commitment's shortfall, a contract credit. ``split`` is
``"proportional"`` (to each owner's part of the month: the service lines' quantities of the
same usage, else each owner's cost in that source and month), ``"fixed"`` (``shares``, e.g.
``{video = 60, web = 40}``) or ``"owner"`` (all of it to ``owner``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal, Protocol

from pydantic import BeforeValidator, Field, field_validator, model_validator

from reconciler.cost_settings import CommitmentSettings, RateSettings, non_negative_decimal
from reconciler.money import Money
from reconciler.settings_base import StrictSettings

UNALLOCATED = "unallocated"
SHARED = "shared"  # an account-level line split among owners (``state list`` shows it so)
_TEAM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Share = Annotated[Decimal, BeforeValidator(lambda v: non_negative_decimal(v, "share"))]


class OwnershipRule(StrictSettings):
    """One ``[[teams.match]]``: every field it sets must match the line (globs allowed)."""

    source: str = "*"
    service: str = "*"
    contract: str = "*"
    product: str = "*"
    usage_type: str = "*"
    region: str = "*"
    cp_code: str = "*"  # an Akamai CP code (a source with cp_codes = true)
    reporting_group: str = "*"  # an Akamai reporting group id (a source's reporting_groups)

    @property
    def label(self) -> str:
        fields = ("source", "service", "cp_code", "reporting_group", "contract", "product",
                  "usage_type", "region")  # fmt: skip
        parts = [f"{name}={getattr(self, name)}" for name in fields if getattr(self, name) != "*"]
        return " ".join(parts) or "every line"


class TeamSettings(StrictSettings):
    """One ``[[teams]]``: a name and the rules whose lines it owns."""

    name: str
    match: list[OwnershipRule] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TEAM_RE.match(value):
            raise ValueError(
                f"invalid team name {value!r} (letters, digits, '-', '_', '.'; at most 64)"
            )
        if value in (UNALLOCATED, SHARED):
            raise ValueError(f"'{value}' names lines no team owns: pick another team name")
        return value


class ShowbackSettings(StrictSettings):
    """How shared cost (account-level lines, commitments' shortfalls, credits) is split."""

    split: Literal["proportional", "fixed", "owner"] = "proportional"
    shares: dict[str, Share] = Field(default_factory=dict)
    owner: str | None = None

    @model_validator(mode="after")
    def _rule_complete(self) -> ShowbackSettings:
        if self.split == "fixed" and not any(self.shares.values()):
            raise ValueError("split = 'fixed' needs shares, e.g. {video = 60, web = 40}")
        if self.split == "owner" and self.owner is None:
            raise ValueError("split = 'owner' needs owner = '<team>'")
        if self.split != "fixed" and self.shares:
            raise ValueError(f"shares only apply to split = 'fixed' (split is {self.split!r})")
        return self


def team_problems(teams: list[TeamSettings], showback: ShowbackSettings) -> list[str]:
    """Team names are distinct; the shared split names declared teams only."""
    problems: list[str] = []
    names = [t.name for t in teams]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"teams: two teams are named {name!r}")
    known = {*names, UNALLOCATED}
    for name in showback.shares:
        if name not in known:
            problems.append(f"showback.shares: no team named {name!r}")
    if showback.owner is not None and showback.owner not in known:
        problems.append(f"showback.owner: no team named {showback.owner!r}")
    return problems


def known_team(teams: list[TeamSettings], name: Any) -> bool:
    return name == UNALLOCATED or any(t.name == name for t in teams)


class BudgetedExpectation(Protocol):
    """What the team budget check reads of an expectation."""

    @property
    def source(self) -> str: ...
    @property
    def team(self) -> str | None: ...
    @property
    def monthly_budget(self) -> Money | None: ...


def team_budget_problems(
    expectations: Sequence[BudgetedExpectation],
    sources: Sequence[str],
    rates: Sequence[RateSettings],
    commitments: Sequence[CommitmentSettings],
) -> list[str]:
    """A team budget is in one currency: a rate or money commitment of one of its sources in
    another currency is refused (its cost would silently not count)."""
    problems: list[str] = []
    for index, exp in enumerate(expectations):
        if exp.team is None or exp.monthly_budget is None:
            continue
        currency = exp.monthly_budget.currency
        covered = [s for s in sources if fnmatchcase(s, exp.source)]
        priced: list[tuple[str, str, str]] = [(r.label, r.source, r.currency) for r in rates] + [
            (c.label, c.source, c.currency) for c in commitments if c.currency
        ]
        for label, pattern, other in priced:
            names = [s for s in covered if fnmatchcase(s, pattern)]
            if names and other != currency:
                problems.append(
                    f"expectations[{index}].monthly_budget: team {exp.team}'s budget is in "
                    f"{currency} but {label!r} prices source {names[0]!r} in {other}; a team "
                    "budget adds up its sources in one currency (declare one team budget per "
                    "currency, each with the source it covers)"
                )
                break
    return problems
