"""``apply`` acknowledges exactly what it showed: a saved plan without a prompt, the displayed
items after 'yes' on a terminal, never without one; ``findings`` shows who, when and the note.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.test_cli import run

NO_TERMINAL = (
    "error: apply asks for confirmation and there is no terminal to ask on: review with "
    "'reconciler plan', then run 'reconciler apply --auto-approve', or save a plan with "
    "'reconciler plan --out FILE' and run 'reconciler apply FILE'\n"
)


def open_items(directory: Path, state: str = "open") -> list[dict[str, object]]:
    result = run("findings", "--state", state, "--json", cwd=directory)
    assert result.returncode == 0, result.stderr
    items: list[dict[str, object]] = json.loads(result.stdout)
    return items


HIDDEN = re.compile(r"^  … and (\d+) more (.+) \(see --json or --limit 0\)$")


def test_apply_without_a_terminal_says_to_use_auto_approve(demo_state: Path) -> None:
    before = len(open_items(demo_state))
    result = run("apply", cwd=demo_state)
    assert result.returncode == 1
    assert result.stderr == NO_TERMINAL
    assert result.stdout.splitlines()[-1].startswith("Plan: ")
    assert len(open_items(demo_state)) == before


def test_apply_acknowledges_only_the_items_it_displayed(demo_state: Path) -> None:
    total = len(open_items(demo_state))
    result = run("apply", "--limit", "1", "--auto-approve", "--by", "ops", cwd=demo_state)
    assert result.returncode == 0, result.stderr
    hidden: Counter[str] = Counter()
    for line in result.stdout.splitlines():
        if match := HIDDEN.match(line):
            hidden[match.group(2).replace(" ", "_")] += int(match.group(1))
    left_open = sum(hidden.values())
    assert left_open >= 2  # the demo restates several lines: --limit 1 hides some
    assert result.stdout.splitlines()[-2:] == [
        f"Apply complete! {total - left_open} items acknowledged.",
        f"{left_open} items not shown stay open: run 'reconciler apply' again, or with "
        "--limit 0 to see every item.",
    ]
    assert Counter(str(i["kind"]) for i in open_items(demo_state)) == hidden


def test_apply_planfile_applies_without_a_prompt_and_findings_show_who_when_and_note(
    demo_state: Path,
) -> None:
    saved = run("plan", "--no-refresh", "--out", "p.json", cwd=demo_state)
    assert saved.returncode == 0, saved.stderr
    plan = json.loads((demo_state / "p.json").read_text())
    serial, total = plan["serial"], len(plan["drift"]) + len(plan["findings"])
    assert total == len(open_items(demo_state))
    result = run("apply", "p.json", "--by", "ops@example", "--note", "June close", cwd=demo_state)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"Applying p.json: {total} items, made at serial {serial}.\n"
        f"Apply complete! {total} items acknowledged.\n"
    )
    acknowledged = [i for i in open_items(demo_state, "acknowledged") if i["note"] == "June close"]
    assert len(acknowledged) == total
    assert {(i["state"], i["acknowledged_by"]) for i in acknowledged} == {
        ("acknowledged", "ops@example")
    }
    text = run("findings", "--state", "acknowledged", cwd=demo_state).stdout
    lines = [line for line in text.splitlines() if "by ops@example" in line]
    assert len(lines) == total
    assert lines[0].startswith("      acknowledged 20") and lines[0].endswith(
        "Z by ops@example: June close"
    )
    again = run("apply", "p.json", cwd=demo_state)
    assert again.returncode == 1
    assert again.stderr.startswith("error: the state changed since this plan was made")


def test_apply_asks_on_a_terminal_and_acknowledges_after_yes(demo_state: Path) -> None:
    total = len(open_items(demo_state))
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "apply", "--by", "tty"],
        cwd=demo_state,
        env=env,
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(secondary)
    try:
        os.write(primary, b"yes\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(primary)
    assert proc.returncode == 0, err
    asked = f"reconciler will acknowledge the {total} items above. Only 'yes' will be accepted."
    assert asked in out
    assert out.rstrip().endswith(f"Apply complete! {total} items acknowledged.")
    assert open_items(demo_state) == []
