"""Where alerts go: a Slack incoming webhook, SMTP e-mail, an SNS topic.

Each sink has `send(subject, text)` and raises SinkError with a one-line reason; the dispatcher
catches it, so an unreachable sink never changes a build's outcome or stops the daemon. Secrets
(webhook URLs, SMTP passwords) come from the environment when configured by `*_env` and are never
put into an error message.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Any, Protocol

from provisioner.alerts.config import SinkConfig

DEFAULT_TIMEOUT_S = 10.0


class SinkError(Exception):
    """A delivery failed; the message names the sink and the reason, never a secret."""


class Sink(Protocol):
    name: str

    def send(self, subject: str, text: str) -> None: ...


def _env(name: str, var: str | None) -> str | None:
    if not var:
        return None
    value = os.environ.get(var)
    if not value:
        raise SinkError(f"{name}: ${var} is not set")
    return value


class SlackSink:
    """A Slack incoming webhook: POST {"text": ...}; Slack answers 200 "ok"."""

    def __init__(self, name: str, webhook_url: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.name, self._url, self._timeout = name, webhook_url, timeout_s

    def send(self, subject: str, text: str) -> None:
        body = json.dumps({"text": f"*{subject}*\n{text}"}).encode()
        request = urllib.request.Request(self._url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(200).decode(errors="replace").strip()
            raise SinkError(f"{self.name}: webhook answered HTTP {exc.code} {detail}".rstrip()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SinkError(f"{self.name}: webhook unreachable ({reason})") from None


class SmtpSink:
    """E-mail through an SMTP server (plain, STARTTLS or SSL; login when a user is set)."""

    def __init__(self, name: str, host: str, sender: str, to: list[str], *, port: int | None = None,
                 starttls: bool = False, use_ssl: bool = False, user: str | None = None,
                 password: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.name, self.host, self.sender, self.to = name, host, sender, list(to)
        self.port = port or (465 if use_ssl else 587 if starttls else 25)
        self.starttls, self.use_ssl, self.user, self._password = starttls, use_ssl, user, password
        self.timeout = timeout_s

    def send(self, subject: str, text: str) -> None:
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = subject, self.sender, ", ".join(self.to)
        msg.set_content(text + "\n")
        try:
            cls = smtplib.SMTP_SSL if self.use_ssl else smtplib.SMTP
            with cls(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self._password or "")
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise SinkError(f"{self.name}: SMTP {self.host}:{self.port}: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")) from None


class SnsSink:
    """Publish to an SNS topic (subject: ASCII, one line, at most 100 characters, as SNS requires)."""

    def __init__(self, name: str, topic_arn: str, region: str | None = None, client: Any = None):
        self.name, self.topic_arn, self.region, self._client = name, topic_arn, region, client

    def send(self, subject: str, text: str) -> None:
        if self._client is None:
            from provisioner import aws
            # The topic's region is in its ARN: arn:aws:sns:REGION:ACCOUNT:NAME.
            region = self.region or (self.topic_arn.split(":")[3] if self.topic_arn.count(":") >= 5 else None)
            self._client = aws.client("sns", region=region, max_attempts=3)
        clean = subject.encode("ascii", "replace").decode().replace("\n", " ")[:100]
        try:
            self._client.publish(TopicArn=self.topic_arn, Subject=clean, Message=text)
        except Exception as exc:  # botocore's ClientError, NoCredentialsError, EndpointConnectionError
            err = getattr(exc, "response", {}).get("Error", {}) if hasattr(exc, "response") else {}
            reason = f"{err.get('Code')}: {err.get('Message')}" if err else (str(exc).splitlines() or [""])[0]
            raise SinkError(f"{self.name}: SNS publish to {self.topic_arn}: {reason}") from None


def build_sink(config: SinkConfig) -> Sink:
    """A sink from its validated config; SinkError when a secret it names is missing."""
    o = config.options
    timeout = float(o.get("timeout_s", DEFAULT_TIMEOUT_S))
    if config.type == "slack":
        return SlackSink(config.name, o.get("webhook_url") or _env(config.name, o.get("webhook_url_env")) or "",
                         timeout)
    if config.type == "smtp":
        return SmtpSink(config.name, o["host"], o["from"], o["to"], port=o.get("port"),
                        starttls=bool(o.get("starttls")), use_ssl=bool(o.get("ssl")), user=o.get("user"),
                        password=_env(config.name, o.get("password_env")), timeout_s=timeout)
    return SnsSink(config.name, o["topic_arn"], o.get("region"))
