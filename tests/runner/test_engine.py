"""The engine interface against the real Docker engine: the unix-socket client (engine.py) and the
same calls over the docker SDK (engine_sdk.py), side by side; error mapping; picking one."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from provisioner.runner.engine import (DEFAULT_SOCKET, EngineError, EngineTimeout, NotFound,
                                       Unreachable, UnixEngine, as_engine, connect)
from provisioner.runner.engine_sdk import SdkEngine

TEST_LABEL = "provisioner:test"


@pytest.fixture(params=["unix", "sdk"])
def engine(request, docker_client) -> Iterator[Any]:
    yield connect(os.environ) if request.param == "unix" else SdkEngine(docker_client)
    for c in docker_client.containers.list(all=True, sparse=True, filters={"label": f"{TEST_LABEL}=engine"}):
        c.remove(force=True)


def create(engine: Any, image: str, *command: str, **extra: Any) -> str:
    return engine.create_container({
        "image": image, "command": list(command), "name": f"engine-test-{uuid.uuid4().hex[:10]}",
        "labels": {TEST_LABEL: "engine"}, "init": True, "network_mode": "none",
        "stdin_open": False, "tty": False, **extra})


def output(stream: Any) -> tuple[bytes, bytes]:
    out, err = b"", b""
    for o, e in stream:
        out += o or b""
        err += e or b""
    return out, err


pytestmark = pytest.mark.docker


def test_run_to_the_end_with_stdout_and_stderr_apart(engine, busybox):
    cid = create(engine, busybox, "sh", "-c", "echo out; echo err >&2; echo more; exit 3")
    stream = engine.attach(cid)
    engine.start(cid)
    assert output(stream) == (b"out\nmore\n", b"err\n")
    assert engine.wait(cid, timeout=30)["StatusCode"] == 3
    state = engine.inspect_container(cid)["State"]
    assert state["ExitCode"] == 3 and state["OOMKilled"] is False
    engine.remove_container(cid, force=True)
    with pytest.raises(NotFound):
        engine.inspect_container(cid)


def test_large_output_arrives_whole_and_in_order(engine, busybox):
    cid = create(engine, busybox, "sh", "-c", "seq 1 50000; seq 1 3 >&2; printf end")
    stream = engine.attach(cid)
    engine.start(cid)
    out, err = output(stream)
    assert out == "".join(f"{i}\n" for i in range(1, 50001)).encode() + b"end"
    assert err == b"1\n2\n3\n"


def test_a_tty_stream_is_raw(engine, busybox):
    cid = create(engine, busybox, "sh", "-c", "echo out; echo err >&2", tty=True)
    stream = engine.attach(cid, tty=True)
    engine.start(cid)
    out, err = output(stream)
    assert out == b"out\r\nerr\r\n" and err == b""


def test_stats_kill_and_a_wait_that_times_out(engine, busybox):
    cid = create(engine, busybox, "sleep", "60")
    engine.start(cid)
    frames = iter(engine.stats(cid, stream=True, decode=True))
    frame = next(f for f in frames if (f.get("memory_stats") or {}).get("usage"))
    assert frame["cpu_stats"]["cpu_usage"]["total_usage"] > 0 and frame["read"].endswith("Z")
    started = time.monotonic()
    with pytest.raises(EngineTimeout):
        engine.wait(cid, timeout=0.5)
    assert time.monotonic() - started < 5
    engine.kill(cid, signal="SIGKILL")
    assert engine.wait(cid, timeout=30)["StatusCode"] == 137


def test_closing_a_stream_ends_its_reader_at_once(busybox):
    engine = connect(os.environ)  # the SDK's streams end only when the engine ends them
    cid = create(engine, busybox, "sleep", "60")
    try:
        logs = engine.attach(cid)
        engine.start(cid)
        stats = engine.stats(cid)
        ended = threading.Event()

        def read_all() -> None:
            for _ in stats:
                pass
            for _ in logs:
                pass
            ended.set()
        threading.Thread(target=read_all, daemon=True).start()
        time.sleep(0.5)
        stats.close()
        logs.close()
        assert ended.wait(2)
    finally:
        engine.remove_container(cid, force=True)


def test_containers_are_listed_by_label(engine, busybox):
    mark = f"{TEST_LABEL}-list={uuid.uuid4().hex[:8]}"
    key, value = mark.split("=")
    cid = create(engine, busybox, "true", labels={TEST_LABEL: "engine", key: value})
    (listed,) = engine.list_containers(mark)
    assert listed["Id"] == cid and listed["Labels"][key] == value
    assert listed["Names"][0].startswith("/engine-test-")
    assert engine.list_containers(f"{key}=other") == []


def test_image_inspect(engine, busybox):
    image = engine.inspect_image(busybox)
    assert image["Id"].startswith("sha256:")


# ---- errors ------------------------------------------------------------------------------------

def test_missing_image_and_container_are_not_found(engine, busybox):
    with pytest.raises(NotFound, match="No such image"):
        engine.inspect_image("provisioner-test/nosuch:1")
    with pytest.raises(NotFound, match="No such image"):
        create(engine, "provisioner-test/nosuch:1", "true")
    for call in (engine.inspect_container, engine.start, engine.remove_container, engine.attach):
        with pytest.raises(NotFound, match="No such container"):
            call("0" * 64)


def test_a_refusal_keeps_the_engines_status_and_message(engine, busybox):
    cid = create(engine, busybox, "true")
    with pytest.raises(EngineError) as exc:
        engine.kill(cid, signal="SIGTERM")  # created, never started
    assert exc.value.status == 409 and "is not running" in str(exc.value)
    assert not isinstance(exc.value, NotFound)


def test_pull_failure_is_an_engine_error(engine):
    with pytest.raises(EngineError) as exc:
        engine.pull_image("127.0.0.1:9/nosuch/image", "1")
    assert "127.0.0.1:9" in str(exc.value)


def test_no_engine_at_the_socket(tmp_path):
    missing = UnixEngine(str(tmp_path / "none.sock"))
    with pytest.raises(Unreachable, match=r"cannot connect to unix://.*none.sock: No such file"):
        missing.ping()
    dead = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(dead))  # bound, never listening: connection refused
        with pytest.raises(Unreachable, match="Connection refused"):
            UnixEngine(str(dead)).list_containers("x")


def fake_engine(path: Path, answer: bytes | None) -> threading.Thread:
    """A one-connection server that reads the request, then answers `answer` and closes (None:
    closes without a word)."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        if answer:
            conn.sendall(answer)
        conn.close()
        server.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_an_engine_that_hangs_up_or_never_answers(tmp_path):
    fake_engine(tmp_path / "mute.sock", None)
    with pytest.raises(Unreachable, match="closed the connection without an answer"):
        UnixEngine(str(tmp_path / "mute.sock")).ping()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "slow.sock"))
    server.listen(1)  # accepted by the kernel, never answered
    try:
        with pytest.raises(EngineTimeout):
            UnixEngine(str(tmp_path / "slow.sock")).wait("c", timeout=0.3)
    finally:
        server.close()


def test_http_details_chunked_bodies_and_plain_text_errors(tmp_path):
    body = b'[{"Id": "abc", "Names": ["/x"], "Labels": {}}]'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:])) + b"0\r\n\r\n"
    fake_engine(tmp_path / "a.sock", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    assert UnixEngine(str(tmp_path / "a.sock")).list_containers("x")[0]["Id"] == "abc"
    fake_engine(tmp_path / "b.sock", b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 9\r\n"
                                     b"\r\nno disk\r\n")
    with pytest.raises(EngineError) as exc:
        UnixEngine(str(tmp_path / "b.sock")).start("c")
    assert exc.value.status == 500 and str(exc.value) == "no disk"


def test_a_garbled_answer_is_an_engine_error(tmp_path):
    fake_engine(tmp_path / "g.sock", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: 8\r\n\r\n{\"Id\": ")
    with pytest.raises(EngineError, match="malformed answer"):
        UnixEngine(str(tmp_path / "g.sock")).inspect_container("c")


# ---- which engine ------------------------------------------------------------------------------

def test_docker_host_picks_the_engine(monkeypatch):
    assert connect({}).path == DEFAULT_SOCKET
    assert connect({"DOCKER_HOST": ""}).path == DEFAULT_SOCKET
    assert connect({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}).path == "/run/user/1000/docker.sock"
    import docker
    seen: list[dict] = []

    class FakeClient:
        api = object()
        containers = object()
    monkeypatch.setattr(docker, "from_env", lambda environment: seen.append(environment) or FakeClient())
    picked = connect({"DOCKER_HOST": "tcp://10.0.0.1:2376", "DOCKER_TLS_VERIFY": "1"})
    assert isinstance(picked, SdkEngine) and seen[0]["DOCKER_TLS_VERIFY"] == "1"


def test_as_engine_wraps_an_sdk_client_only(docker_client):
    assert isinstance(as_engine(docker_client), SdkEngine)
    unix = UnixEngine()
    assert as_engine(unix) is unix


def test_an_unreachable_tcp_engine_fails_to_connect():
    import docker.errors
    with pytest.raises(docker.errors.DockerException):
        connect({"DOCKER_HOST": "tcp://127.0.0.1:9"})
