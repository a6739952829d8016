"""Local stand-ins for the alert sinks: an HTTP sink (Slack webhook) and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
from http.server import ThreadingHTTPServer

import pytest

from tests.http_stub import QuietHandler, serving
from tests.moto_server import free_port


class HttpSink(ThreadingHTTPServer):
    """Records every POST body; answers `status` (200 'ok' as Slack does)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200

        class Handler(QuietHandler):
            def do_POST(handler) -> None:  # noqa: N802
                length = int(handler.headers.get("Content-Length") or 0)
                self.bodies.append(json.loads(handler.rfile.read(length)))
                body = b"ok" if self.status == 200 else b"invalid_token"
                handler.send_response(self.status)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/services/T000/B000/XXXX"


@pytest.fixture
def http_sink():
    with serving(HttpSink()) as server:
        yield server


class _Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        from email import message_from_bytes
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp_server():
    """A real SMTP server on 127.0.0.1 (aiosmtpd); `.inbox.messages` holds (from, to, message)."""
    from aiosmtpd.controller import Controller
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    controller.inbox = inbox
    yield controller
    controller.stop()
