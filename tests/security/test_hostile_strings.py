"""Hostile strings from a provider (product names, usage types, regions) reach Slack, the
HTML and Markdown reports and the terminal only as text: escaped, never as markup, mentions,
links or terminal control sequences.

The sandbox serves its usual data with three names rewritten; two pulls around a restatement
and a decrease raise drift items that carry them, the outbox is flushed to the Slack
stand-in and the reports are written, all through the real command line.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
import pytest_asyncio

from reconciler.sandbox import SandboxServer
from reconciler.sandbox.slack import SlackStandIn
from tests.security.support import Ran, Tamper, cli, tampered_sandbox, write_config

PRODUCT = '<script>alert(1)</script> <!channel> "onmouseover="alert(2)'
USAGE_TYPE = "<https://evil.example/x|click here> <@U0123> <#C0123> *bold* `code` &amp;"
REGION = "<!here> </td><img src=x onerror=alert(3)> \x1b]8;;https://evil.example\x07here\x1b[2J"
REPLACEMENTS = {
    "Web Application Accelerator": PRODUCT,  # Akamai productName of 1-ABC012
    "North America Bandwidth": USAGE_TYPE,  # a Fastly usage type (and invoice product name)
    "North America": REGION,  # a Fastly region
}
# What must never appear raw: Slack's mentions and links, and HTML elements and attributes.
SLACK_MARKUP = ("<!channel>", "<!here>", "<https://evil", "<@U0123>", "<#C0123>")
HTML_MARKUP = ("<script>alert", "<img src", "</td><img", '"onmouseover="alert', "=alert(3)>")


class Pulled:
    """The state after two pulls of hostile data, and what the commands printed."""

    def __init__(self, directory: Path, env: dict[str, str], slack: SlackStandIn) -> None:
        self.directory = directory
        self.env = env
        self.slack = slack
        self.outputs: list[Ran] = []

    async def run(self, *args: str) -> Ran:
        ran = await cli(*args, cwd=self.directory, env=self.env)
        self.outputs.append(ran)
        assert ran.code == 0, ran.output
        return ran


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pulled(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pulled]:
    tmp_path = tmp_path_factory.mktemp("hostile")
    async with tampered_sandbox() as (sandbox, tamper), SlackStandIn() as slack:
        tamper.replacements = REPLACEMENTS
        write_config(tmp_path, sandbox, expectations=[{"source": "fastly", "monthly_max": "1"}])
        env = {"FASTLY_API_TOKEN": sandbox.fastly_token, "SLACK_WEBHOOK_URL": slack.webhook_url()}
        state = Pulled(tmp_path, env, slack)
        await state.run("init")
        await state.run("pull", "--as-of", "2024-07-10")
        _restate_and_decrease(sandbox, tamper)
        await state.run("pull", "--as-of", "2024-07-11")
        await state.run("alerts", "flush")
        yield state


def _restate_and_decrease(sandbox: SandboxServer, tamper: Tamper) -> None:
    restate = {"kind": "restate", "provider": "akamai", "product": "1-ABC012", "factor": "1.5"}
    decrease = {"kind": "decrease", "provider": "fastly", "factor": "0.5"}
    decrease["usage_type"] = "North America Bandwidth"
    sandbox.state.add_events(
        [
            {**restate, "day": "2024-07-11", "month": "2024-05"},
            {**decrease, "day": "2024-07-11", "month": "2024-07"},
        ]
    )
    sandbox.state.set_today(date(2024, 7, 11))


def _all_strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _all_strings(v)]
    return []


async def test_slack_messages_carry_hostile_names_only_escaped(pulled: Pulled) -> None:
    messages = pulled.slack.received["default"]
    assert messages, "no message reached Slack"
    assert pulled.slack.rejected == []
    texts = [s for message in messages for s in _all_strings(message)]
    joined = "\n".join(texts)
    # The names are there, as text: Slack's control characters are entities.
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;!channel&gt;" in joined
    assert "&lt;https://evil.example/x|click here&gt; &lt;@U0123&gt;" in joined
    for markup in SLACK_MARKUP:
        assert markup not in joined
    assert "\x1b" not in joined


async def test_html_and_markdown_reports_escape_hostile_names(pulled: Pulled) -> None:
    html_path = pulled.directory / "report.html"
    md_path = pulled.directory / "report.md"
    await pulled.run("report", "--format", "html", "--out", str(html_path), "--from", "2024-05")
    await pulled.run("report", "--format", "md", "--out", str(md_path), "--from", "2024-05")
    html = html_path.read_text(encoding="utf-8")
    markdown = md_path.read_text(encoding="utf-8")
    markdown += "".join(p.read_text() for p in pulled.directory.glob("report*.svg"))

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;https://evil.example/x|click here&gt;" in html
    for markup in (*SLACK_MARKUP, *HTML_MARKUP):
        assert markup not in html, markup
    for markup in (*SLACK_MARKUP, *HTML_MARKUP[:3]):  # no tag can open: quotes are text
        assert markup not in markdown, markup
    assert "\x1b" not in html + markdown
    assert html.count("<script") == html.count("</script>")  # only the page's own, if any
    assert "alert(1)" in markdown  # present, as text


async def test_the_terminal_never_receives_control_sequences(pulled: Pulled) -> None:
    plan = await pulled.run("plan", "--no-refresh", "--limit", "0")
    findings = await pulled.run("findings")
    lines = await pulled.run("state", "list", "--source", "fastly")
    status = await pulled.run("alerts", "status")

    assert "alert(1)" in plan.stdout  # the hostile product name is shown...
    for ran in (plan, findings, lines, status, *pulled.outputs):
        assert "\x1b" not in ran.output  # ...but no escape sequence reaches the terminal
        assert "\x07" not in ran.output
    saved = json.dumps(json.loads((await pulled.run("plan", "--no-refresh", "--json")).stdout))
    # Control characters were replaced when the lines were read; the rest is kept exactly.
    assert json.dumps(REGION.replace("\x1b", "\ufffd").replace("\x07", "\ufffd")) in saved
