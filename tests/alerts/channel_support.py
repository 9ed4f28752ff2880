"""Channel stand-ins for the tests: the HTTP receivers and an SMTP server (aiosmtpd) with
STARTTLS and AUTH on loopback, with a self-signed certificate made by openssl."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from reconciler.sandbox.channels import ChannelStandIn

SMTP_USER = "alerts@example.test"
SMTP_PASSWORD = "smtp-password-Zq81"
WEBHOOK_SECRET = "whsec-3b1f9c0e-signing"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, like an integration key


@pytest.fixture
async def channels() -> AsyncIterator[ChannelStandIn]:
    async with ChannelStandIn(webhook_secrets={"ops": WEBHOOK_SECRET.encode()}) as stand_in:
        yield stand_in


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    port: int
    ca_file: Path
    mailbox: Mailbox


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return cert, key


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    import ssl

    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (SMTP_USER, SMTP_PASSWORD)
        if ok:
            mailbox.logins.append(SMTP_USER)
        return AuthResult(success=ok, handled=False)

    with socket.socket() as probe:  # aiosmtpd cannot report a port chosen by the system
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
        ready_timeout=60,
    )
    controller.start()
    try:
        yield SmtpServer(port, cert, mailbox)
    finally:
        controller.stop()
