"""Start and stop a real `moto_server` (moto in server mode) on 127.0.0.1 for tests and benchmarks.

The server runs as a subprocess from this interpreter's venv on a free port; `start()` waits until it
answers and registers an atexit stop, so an interrupted test session leaves no server behind.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
# moto needs some credentials to sign with; these never leave the machine.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_SESSION_TOKEN": "testing"}


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (free now; a race is retried by `start`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def moto_server_binary() -> Path:
    """`moto_server` next to this interpreter (the venv's), so the test extra's version is used."""
    path = Path(sys.executable).parent / "moto_server"
    if not path.exists():
        raise RuntimeError(f"{path} not found: install the test extra (pip install -e '.[test]')")
    return path


class MotoServer:
    """One moto server process. `url` is set once started."""

    def __init__(self) -> None:
        self.url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="moto-server-", suffix=".log", delete=False)

    def start(self, timeout_s: float = 30.0, tries: int = 3) -> str:
        """Start the server and wait until it answers; return its URL."""
        for _ in range(tries):  # another process may take the free port before moto binds it
            port = free_port()
            self._proc = subprocess.Popen(
                [str(moto_server_binary()), "-H", HOST, "-p", str(port)],
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **DUMMY_CREDENTIALS})
            url = f"http://{HOST}:{port}"
            if self._wait_ready(url, timeout_s):
                self.url = url
                atexit.register(self.stop)
                return url
            self.stop()
        raise RuntimeError(f"moto_server did not start; its log: {self._log.name}")

    def _wait_ready(self, url: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                self.reset(url)
                return True
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        return False

    def reset(self, url: str | None = None) -> None:
        """Forget every resource (moto's own reset API, ~50 ms)."""
        request = urllib.request.Request(f"{url or self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def stop(self) -> None:
        """Stop the server if it runs (terminate, then kill); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def start_moto_server() -> MotoServer:
    """A started server; the caller (or atexit) stops it."""
    server = MotoServer()
    server.start()
    return server
