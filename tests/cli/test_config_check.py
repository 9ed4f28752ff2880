"""``config check`` warns about what is valid but probably wrong: no sources, a source the
state has lines of but the configuration no longer names, keys overridden from the
environment (named, so a surprising value can be traced)."""

from __future__ import annotations

from pathlib import Path

from reconciler.cli.config_notes import env_overrides
from tests.cli.test_broken_states import Invoke, invoke  # noqa: F401  (the fixture)
from tests.security.support import cli, tampered_sandbox, write_config


def test_a_configuration_without_sources_is_valid_with_a_warning(
    tmp_path: Path,
    invoke: Invoke,  # noqa: F811
) -> None:
    (tmp_path / "reconciler.toml").write_text("[daemon]\nlisten = ''\n")
    ran = invoke("config", "check")
    assert ran.code == 0
    assert ran.stderr == "warning: no [[sources]] configured: reconciler has nothing to pull\n"


async def test_a_renamed_source_and_an_environment_override_are_named(tmp_path: Path) -> None:
    async with tampered_sandbox() as (sandbox, _):
        config = write_config(tmp_path, sandbox)
        env = {"FASTLY_API_TOKEN": sandbox.fastly_token}
        assert (await cli("init", cwd=tmp_path, env=env)).code == 0
        pulled = await cli("pull", "--source", "akamai", "--as-of", "2024-07-10", cwd=tmp_path)
        assert pulled.code == 0, pulled.output
    config.write_text(config.read_text().replace('name = "akamai"', 'name = "akamai-main"'))
    env["RECONCILER_SOURCES__0__TIMEOUT_S"] = "5"
    ran = await cli("config", "check", cwd=tmp_path, env=env)
    assert ran.code == 0, ran.stderr
    assert ran.stderr.splitlines() == [
        "warning: the state has lines of source 'akamai', which the configuration does not "
        "name (renamed or removed?): its lines are kept but no longer pulled",
        "warning: environment variable RECONCILER_SOURCES__0__TIMEOUT_S overrides "
        "sources[0].timeout_s",
    ]


def test_environment_override_names() -> None:
    assert env_overrides(
        {"RECONCILER_DAEMON__LISTEN": "x", "RECONCILER_CONFIG": "c", "HOME": "/", "X": "y"}
    ) == ["environment variable RECONCILER_DAEMON__LISTEN overrides daemon.listen"]
