"""Secret files the configuration points at (a Fastly token file, an ``.edgerc``, a Slack
webhook URL file) that other users may read are used, with a warning naming the file, its
mode and the fix; owner-only files give no warning. The warning never shows the secret.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.cli.setup_cmds import to_toml
from tests.security.support import cli

TOKEN = "fastly-token-4d1c9e0b7a"
CLIENT_SECRET = "c2VjcmV0LWNsaWVudC1zZWNyZXQ="
WEBHOOK = "https://hooks.slack.com/services/T0000/B0000/XXXXsecretXXXX"


def write_files(directory: Path, modes: dict[str, int]) -> Path:
    """The three secret files with ``modes`` and a configuration using them."""
    files = {
        "token": (directory / "fastly-token", TOKEN + "\n"),
        "edgerc": (
            directory / "edgerc",
            f"[default]\nclient_secret = {CLIENT_SECRET}\nhost = akab-x.luna.akamaiapis.net\n"
            "access_token = akab-access-1\nclient_token = akab-client-1\n",
        ),
        "webhook": (directory / "slack-webhook", WEBHOOK + "\n"),
    }
    for name, (path, text) in files.items():
        path.write_text(text)
        path.chmod(modes[name])
    config = {
        "state": {"directory": str(directory / "state")},
        "sources": [
            {"name": "fastly", "provider": "fastly", "token_file": str(files["token"][0])},
            {"name": "akamai", "provider": "akamai", "edgerc": str(files["edgerc"][0])},
        ],
        "alerts": {"slack": {"webhook_url_file": str(files["webhook"][0])}},
    }
    path = directory / "reconciler.toml"
    path.write_text(to_toml(config))
    return path


async def test_secret_files_others_can_read_are_warned_about(tmp_path: Path) -> None:
    write_files(tmp_path, {"token": 0o644, "edgerc": 0o640, "webhook": 0o604})

    ran = await cli("config", "check", cwd=tmp_path)

    assert ran.code == 0, ran.output
    warnings = [line for line in ran.stderr.splitlines() if "readable by other users" in line]
    assert len(warnings) == 3, ran.stderr
    for what, mode in (
        ("Fastly API token for source 'fastly' file", 0o644),
        ("Akamai .edgerc for source 'akamai' file", 0o640),
        ("Slack webhook URL file", 0o604),
    ):
        [warning] = [w for w in warnings if what in w]
        assert f"(mode {oct(mode)}): run 'chmod 600 " in warning
    for secret in (TOKEN, CLIENT_SECRET, WEBHOOK, "XXXXsecretXXXX"):
        assert secret not in ran.output


async def test_owner_only_secret_files_give_no_warning(tmp_path: Path) -> None:
    write_files(tmp_path, {"token": 0o600, "edgerc": 0o400, "webhook": 0o600})

    ran = await cli("config", "check", cwd=tmp_path)

    assert ran.code == 0, ran.output
    assert "readable by other users" not in ran.output
    assert "token ********" in ran.stdout
