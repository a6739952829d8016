"""Pull progress from the engine's pull stream (the event shapes dockerd sends): layers and bytes,
one line off a terminal, a rewritten line on one, errors in the stream raised."""

from __future__ import annotations

import pytest

from provisioner.runner.images import ensure_image
from provisioner.runner.engine import NotFound
from provisioner.runner.pull_progress import PullProgress, consume

MIB = 1024 * 1024
STREAM = [
    {"status": "Pulling from library/python", "id": "3.11"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Already exists", "progressDetail": {}, "id": "bbb"},
    {"status": "Downloading", "progressDetail": {"current": 1 * MIB, "total": 4 * MIB}, "id": "aaa"},
    {"status": "Downloading", "progressDetail": {"current": 3 * MIB, "total": 4 * MIB}, "id": "aaa"},
    {"status": "Download complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Extracting", "progressDetail": {"current": 4 * MIB, "total": 4 * MIB}, "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Digest: sha256:" + "ab" * 32},
    {"status": "Status: Downloaded newer image for python:3.11"},
]


def test_layers_and_bytes_and_one_line_off_a_terminal():
    lines: list[str] = []
    p = PullProgress("python:3.11", lines.append, tty=False)
    consume(iter(STREAM), p)
    p.finish()
    assert p.totals() == (2, 2, 4 * MIB, 4 * MIB)
    assert lines == ["Pulling image python:3.11\n"]
    assert p.summary() == "2 layers, 4.0 MiB downloaded"


def test_a_terminal_gets_a_line_rewritten_in_place():
    out: list[str] = []
    ticks = iter(range(100))
    p = PullProgress("python:3.11", out.append, tty=True, every_s=0.5, clock=lambda: float(next(ticks)))
    consume(iter(STREAM), p)
    p.finish()
    assert out[0] == "Pulling image python:3.11"
    assert all(text.startswith("\r") for text in out[1:]) and out[-1].endswith("\n")
    assert "2/2 layers, 4.0/4.0 MiB" in out[-1]


def test_an_error_in_the_stream_is_raised():
    with pytest.raises(RuntimeError, match="manifest unknown"):
        consume(iter([{"status": "Pulling from x"}, {"error": "manifest unknown"}]), PullProgress("x"))


class Engine:
    def __init__(self):
        self.local = False

    def inspect_image(self, ref):
        if not self.local:
            raise NotFound("no", 404)
        return {"Id": "sha256:" + "ab" * 32, "RepoDigests": []}

    def pull_image(self, repo, tag, auth_config=None, progress=None):
        consume(iter(STREAM), progress)
        self.local = True


def test_ensure_image_reports_the_pulls_layers_and_bytes():
    info = ensure_image(Engine(), "python:3.11", ecr_client_factory=pytest.fail, progress=PullProgress("python:3.11"))
    assert info.pulled and info.pull_detail == "2 layers, 4.0 MiB downloaded"
