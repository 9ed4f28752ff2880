from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from reconciler.errors import ConfigError
from reconciler.providers.edgegrid import EdgeGridCredentials

SECRET = "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFrLXh4eHg="

EDGERC = f"""\
[default]
client_secret = {SECRET}
host = akab-abcdefghijklmnop-qrstuvwxyz.luna.akamaiapis.net
access_token = akab-access-token-xxx-xxxxxxxxxxxxxxxx
client_token = akab-client-token-xxx-xxxxxxxxxxxxxxxx

[billing]
client_secret = {SECRET}
host = https://akab-billing.luna.akamaiapis.net/
access_token = akab-access-billing
client_token = akab-client-billing
max-body = 2048

[underscore]
client_secret = {SECRET}
host = akab-underscore.luna.akamaiapis.net
access_token = a
client_token = c
max_body = 4096

[sandbox]
client_secret = {SECRET}%with-percent
host = http://127.0.0.1:8080
access_token = a
client_token = c
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".edgerc"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, section: str = "default") -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        EdgeGridCredentials.from_edgerc(path, section)
    message = str(raised.value)
    assert SECRET not in message
    assert SECRET not in repr(raised.value)
    return raised.value


def test_reads_default_section(tmp_path: Path) -> None:
    creds = EdgeGridCredentials.from_edgerc(write(tmp_path, EDGERC))
    assert creds == EdgeGridCredentials(
        client_token="akab-client-token-xxx-xxxxxxxxxxxxxxxx",
        client_secret=SecretStr(SECRET),
        access_token="akab-access-token-xxx-xxxxxxxxxxxxxxxx",
        host="akab-abcdefghijklmnop-qrstuvwxyz.luna.akamaiapis.net",
        max_body=131072,
    )
    assert creds.client_secret.get_secret_value() == SECRET
    assert str(creds.base_url) == "https://akab-abcdefghijklmnop-qrstuvwxyz.luna.akamaiapis.net"


def test_strips_https_and_reads_max_body_spellings(tmp_path: Path) -> None:
    path = write(tmp_path, EDGERC)
    billing = EdgeGridCredentials.from_edgerc(path, "billing")
    assert (billing.scheme, billing.host, billing.max_body) == (
        "https",
        "akab-billing.luna.akamaiapis.net",
        2048,
    )
    assert EdgeGridCredentials.from_edgerc(path, "underscore").max_body == 4096


def test_http_host_for_a_local_stand_in(tmp_path: Path) -> None:
    creds = EdgeGridCredentials.from_edgerc(write(tmp_path, EDGERC), "sandbox")
    assert (creds.scheme, creds.host) == ("http", "127.0.0.1:8080")
    assert str(creds.base_url) == "http://127.0.0.1:8080"
    # No interpolation: a '%' in a value is kept as written.
    assert creds.client_secret.get_secret_value() == f"{SECRET}%with-percent"


def test_secret_is_masked_in_repr_and_str(tmp_path: Path) -> None:
    creds = EdgeGridCredentials.from_edgerc(write(tmp_path, EDGERC))
    assert SECRET not in repr(creds)
    assert SECRET not in str(creds)
    assert "client_secret=SecretStr('**********')" in repr(creds)


def test_missing_key_names_file_section_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, EDGERC.replace("client_token = akab-client-token", "# gone", 1))
    error = config_error(path)
    assert error.problems == ["[default]: missing key 'client_token'"]
    assert error.path == str(path)
    assert str(path) in str(error)


def test_every_missing_key_is_listed(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, f"[default]\nclient_secret = {SECRET}\nhost =\n"))
    assert error.problems == [
        "[default]: missing key 'host'",
        "[default]: missing key 'access_token'",
        "[default]: missing key 'client_token'",
    ]


def test_missing_section_lists_the_sections_found(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, EDGERC), "papi")
    assert error.problems == [
        "section [papi] not found (sections: [default], [billing], [underscore], [sandbox])"
    ]


def test_missing_file(tmp_path: Path) -> None:
    error = config_error(tmp_path / "absent.edgerc")
    assert error.problems == ["cannot read the .edgerc file: No such file or directory"]
    assert error.path == str(tmp_path / "absent.edgerc")


def test_unparsable_line_is_named_by_number_not_content(tmp_path: Path) -> None:
    unpadded = SECRET.rstrip("=")  # no '=' or ':' so configparser cannot split the line
    error = config_error(write(tmp_path, f"[default]\nhost = h\n{unpadded}\n"))
    assert error.problems == ["cannot parse line(s) 3"]
    assert unpadded not in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_no_section_header(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, f"client_secret = {SECRET}\n"))
    assert error.problems == ["line 1: expected a [section] header first"]


def test_duplicate_key(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, EDGERC.replace("[billing]", f"client_secret = {SECRET}")))
    assert error.problems == ["[default]: key 'client_secret' appears twice (line 7)"]


@pytest.mark.parametrize("max_body", ["lots", "-1", "0", "1.5"])
def test_bad_max_body(tmp_path: Path, max_body: str) -> None:
    error = config_error(
        write(tmp_path, EDGERC.replace("max-body = 2048", f"max-body = {max_body}")), "billing"
    )
    assert len(error.problems) == 1
    assert error.problems[0].startswith("[billing]: max-body must be a")


@pytest.mark.parametrize("host", ["ftp://akab.example", "akab.example/billing/v1", "https://"])
def test_bad_host(tmp_path: Path, host: str) -> None:
    text = EDGERC.replace("host = https://akab-billing.luna.akamaiapis.net/", f"host = {host}")
    error = config_error(write(tmp_path, text), "billing")
    assert len(error.problems) == 1
    assert error.problems[0].startswith("[billing]: host must")
