"""A stub of Service Quotas serving recorded GetServiceQuota answers (moto implements Service Quotas
only for VPC). JSON 1.1 protocol: POST / with X-Amz-Target ServiceQuotasV20190624.<Operation>."""

from __future__ import annotations

import json
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from tests.http_stub import QuietHandler, serving

DATA = Path(__file__).parent / "data" / "service_quotas_us_east_1.json"


class QuotaStub(QuietHandler):
    """Service Quotas' JSON protocol: POST / with X-Amz-Target ServiceQuotasV20190624.<Operation>."""

    answers: dict = {}
    missing = ("L-7295265B",)          # never changed on this account: GetServiceQuota says NoSuchResource
    denied = ("L-F7808C92",)
    calls: list = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        op = self.headers.get("X-Amz-Target", "").split(".")[-1]
        code = body.get("QuotaCode")
        type(self).calls.append((op, code))
        if code in self.denied:
            return self._send(400, {"__type": "AccessDeniedException", "message": "not allowed"})
        if op == "GetServiceQuota" and code in self.missing:
            return self._send(400, {"__type": "NoSuchResourceException", "message": "no such quota"})
        if op in ("GetServiceQuota", "GetAWSDefaultServiceQuota") and code in self.answers:
            answer = json.loads(json.dumps(self.answers[code]))
            if op == "GetAWSDefaultServiceQuota":
                answer["Quota"]["Value"] = 5.0
            return self._send(200, answer)
        return self._send(400, {"__type": "NoSuchResourceException", "message": "unknown"})

    def _send(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)




@contextmanager
def quota_stub(values: dict[str, float] | None = None) -> Iterator[str]:
    """Serve the recorded answers (with `values` by quota code replacing theirs); yields the URL."""
    answers = json.loads(DATA.read_text())
    for code, value in (values or {}).items():
        answers[code]["Quota"]["Value"] = value
    QuotaStub.answers, QuotaStub.calls = answers, []
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), QuotaStub)) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}"
