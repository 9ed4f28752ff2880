"""``reconciler demo`` end to end: its plan, reports, queued alerts and the state it leaves."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from reconciler.demo import run_demo
from reconciler.demo_directory import prepare_directory
from tests.test_readme_teams import readme_demo_note, readme_june_rows


def test_demo_tells_the_story(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    prepare_directory(directory)
    days: list[int] = []
    result = asyncio.run(run_demo(directory, progress=lambda today, done, total: days.append(done)))
    assert days[-1] == days[0] + len(days) - 1
    summary = result.plan.summary()
    assert summary["restated"] >= 1
    assert summary["decreased"] >= 1
    assert summary["projected_overage"] == 1
    restated = {(i.usage_type, i.severity.value) for i in result.plan.items if i.kind == "restated"}
    # Billed stats restated are critical; stats marked not billable are info unless named.
    assert ("Total MB", "critical") in restated and ("Total Hits", "info") in restated
    assert ("95/5 Mbps", "critical") in restated  # not billable, but the 95/5 commitment names it
    # Each 95/5 month arrives in two periods and is measured as the larger: within commitment.
    assert not [i for i in result.plan.items if i.product_name == "WAA 95/5 commitment"]
    # Akamai's May invoice (Invoicing API) was issued before Akamai restated May: the audit
    # finds it short by what the restatements add (the invoice is in cents).
    may = [i for i in result.plan.items if i.source == "akamai" and str(i.month) == "2024-05"]
    (audit,) = [i for i in may if i.kind == "cost_mismatch"]
    restated_impact = sum((i.impact for i in may if i.kind == "restated" and i.impact), Decimal(0))
    assert audit.impact is not None and restated_impact > 0
    assert abs(audit.impact + restated_impact) < Decimal("0.005")
    *finalized, current = result.notes
    assert finalized and all(": 2 periods at " in n for n in finalized)
    assert " -> at least " in current  # the collecting month so far: a lower bound
    assert {p.suffix for p in result.report_paths} == {".html", ".md", ".json", ".csv"}
    assert all(p.is_file() for p in result.report_paths)
    texts = [m["text"] for m in result.messages]
    assert any("critical" in t for t in texts)
    assert result.delivered == 0
    assert (directory / "reconciler.toml").is_file()
    # The README shows the demo's June by team: the teams and unallocated add up to the bill.
    (markdown,) = [p for p in result.report_paths if p.suffix == ".md"]
    report = markdown.read_text(encoding="utf-8").splitlines()
    assert all(row in report for row in readme_june_rows())
    assert result.teams == readme_demo_note()
    teams, sources = result.teams.split(" = ")
    by_team = [Decimal(part.split()[-2].replace(",", "")) for part in teams.split(" + ")]
    total = Decimal(sources.split()[0].replace(",", ""))
    by_source = [
        Decimal(p.split()[-2].replace(",", "")) for p in sources.split("(")[1].split(" + ")
    ]
    assert sum(by_team) == total == sum(by_source)
    # The FOCUS export's June rows of each team add up to the team's report amount exactly.
    (export,) = [p for p in result.report_paths if p.suffix == ".csv"]
    effective: dict[str, Decimal] = defaultdict(Decimal)
    with export.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["BillingPeriodStart"].startswith("2024-06") and row["EffectiveCost"]:
                effective[json.loads(row["Tags"])["team"]] += Decimal(row["EffectiveCost"])
    named = dict(zip((part.split()[-3] for part in teams.split(" + ")), by_team, strict=True))
    assert effective == named
    assert (directory / ".reconciler" / "state.db").is_file()

    # The user can keep exploring from the directory the demo left behind.
    plan = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan", "--no-refresh", "--detailed-exitcode"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plan.returncode == 2, plan.stderr
    assert plan.stdout.rstrip().splitlines()[-1].startswith("Plan: ")
    assert "projected overage" in plan.stdout
