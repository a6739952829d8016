"""The real bootstrap in a real instance container (docker cloud), against the IMDSv2 stub and a
stub of the daemon's usage API, both on 127.0.0.1 and reached through host networking: a spot
notice stops the job with SIGTERM and reports `interrupted`; the maximum lifetime stops it too."""

from __future__ import annotations

import time
import uuid

import pytest

from provisioner import bootstrap
from provisioner import secret_bundle
from provisioner.agent import markers
from provisioner.clouds.base import LaunchSpec
from provisioner.clouds.docker import DockerCloud, DockerSettings
from tests.bootstrap.stubs import ImdsStub, ReportStub
from tests.factories import offer

pytestmark = pytest.mark.docker

JOB = ("import signal, sys, time\n"
       "def stop(*_):\n    print('job got SIGTERM, checkpointing', flush=True); sys.exit(143)\n"
       "signal.signal(signal.SIGTERM, stop)\nprint('job up', flush=True)\ntime.sleep(120)\n")


@pytest.fixture
def stubs():
    imds = ImdsStub({"instance-type": "c5.large", "instance-life-cycle": "spot"}).start()
    report = ReportStub().start()
    yield imds, report
    imds.stop()
    report.stop()


def launch(docker_client, agent_image, pyimage, imds_url: str, report: ReportStub, lifetime_s: float):
    owner = f"bootstrap-test-{uuid.uuid4().hex[:8]}"
    cloud = DockerCloud(docker_client, DockerSettings(
        instance_image=agent_image, host_cpus=2, host_mem_gib=4, imds_url=imds_url,
        environment={"PROVISIONER_WATCH_INTERVAL_S": "0.2"}))
    plan = offer("c5.large", market="spot", price=0.04, ondemand=0.085, mem=4)
    run_id = str(uuid.uuid4())
    spec = bootstrap.BootstrapSpec(
        run_id=run_id, expires_at=bootstrap.expires_at(lifetime_s), grace_s=20,
        run_args=("--image", pyimage, "--timeout", "5m", "--grace", "20s", "--job", owner, "--",
                  "python3", "-c", JOB))
    bundle = secret_bundle.make_bundle(report_url=report.url, report_token=report.token, job_env={"X": "1"})
    instance = cloud.launch(LaunchSpec(
        candidates=(plan,), user_data=bootstrap.render_user_data("job", plan, spec, cloud),
        tags={"provisioner:owner": owner, "provisioner:job": owner}, client_token=run_id,
        secret_env=bootstrap.secret_env(cloud, bundle)))
    return cloud, instance


def logs_of(docker_client, instance_id: str) -> str:
    return docker_client.containers.get(instance_id).logs().decode()


def wait_for_log(docker_client, instance_id: str, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in logs_of(docker_client, instance_id):
            return
        time.sleep(0.1)
    pytest.fail(f"{text!r} never appeared:\n{logs_of(docker_client, instance_id)}")


def finish(docker_client, cloud, instance) -> tuple[int, str]:
    container = docker_client.containers.get(instance.id)
    code = container.wait(timeout=40)["StatusCode"]
    text = logs_of(docker_client, instance.id)
    cloud.terminate([instance.id])
    assert not docker_client.containers.list(all=True, sparse=True, filters={"label": f"provisioner:job={instance.tag('job')}"})
    return code, text


def parsed(text: str, kind: str) -> list:
    return [m[1] for m in map(markers.parse, text.splitlines()) if m and m[0] == kind]


def test_spot_notice_stops_the_job_gracefully_and_reports_interrupted(docker_client, agent_image, pyimage, stubs):
    imds, report = stubs
    cloud, instance = launch(docker_client, agent_image, pyimage, imds.url, report, lifetime_s=600)
    try:
        wait_for_log(docker_client, instance.id, "job up")
        assert not any(path.endswith("spot/instance-action") and not ok for _, path, ok in imds.log)
        imds.notify("terminate")
        code, text = finish(docker_client, cloud, instance)
    finally:
        cloud.terminate([instance.id])
    assert code == 143, text
    assert "spot interruption notice: stopping the job with SIGTERM (grace 20 s)" in text
    assert "job got SIGTERM, checkpointing" in text              # a graceful stop, not a kill
    assert parsed(text, "event")[0]["event"] == "interrupted"
    assert parsed(text, "exit") == [143]
    record = parsed(text, "record")[0]
    assert record["interrupted"] is True and record["stopped_by"] == "spot"
    # the daemon got the usage record from the instance's `provisioner run`, marked interrupted
    assert len(report.records) == 1
    sent = report.records[0]
    assert sent["interrupted"] is True and sent["exit_code"] == 143 and sent["signal"] == "SIGTERM"
    assert sent["instance_type"] == "c5.large" and sent["market"] == "spot" and sent["price_usd_per_hour"] == 0.04
    # IMDSv2 only: every metadata read carried a token
    assert imds.log and all(ok for _, _, ok in imds.log)


def test_max_lifetime_self_terminates_the_instance(docker_client, agent_image, pyimage, stubs):
    _, report = stubs
    cloud, instance = launch(docker_client, agent_image, pyimage, "", report, lifetime_s=4)
    try:
        started = time.monotonic()
        code, text = finish(docker_client, cloud, instance)     # nobody stops it: it stops itself
    finally:
        cloud.terminate([instance.id])
    assert time.monotonic() - started < 30
    assert code == 143, text
    assert "maximum lifetime reached" in text and "job got SIGTERM" in text
    assert parsed(text, "event")[0]["event"] == "expired"
    assert report.records and report.records[0]["interrupted"] is True


FAKE_JAVA = b"""#!/bin/sh
# Stands in for java: prints how it was called and what the secret file holds (mode, size).
echo "java-argv: $*"
secret=$(echo "$*" | sed -n 's/.*-secret @\\([^ ]*\\).*/\\1/p')
echo "secret-file: $(stat -c %a "$secret") $(wc -c < "$secret") bytes"
echo "jar: $(cat "$2")"
"""


@pytest.fixture
def fake_java_image(docker_client, agent_image) -> str:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, mode in (("Dockerfile", f"FROM {agent_image}\nCOPY java /usr/local/bin/java\n".encode(), 0o644),
                                 ("java", FAKE_JAVA, 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    tag = "provisioner-test/agent-fake-java:1"
    docker_client.images.build(fileobj=io.BytesIO(buf.getvalue()), custom_context=True, tag=tag, rm=True)
    return tag


@pytest.fixture
def jenkins_jar():
    """A Jenkins that serves only /jnlpJars/agent.jar (b"fake-agent-jar"), on 127.0.0.1."""
    from http.server import BaseHTTPRequestHandler
    from tests.bootstrap.stubs import _Server

    class Jenkins(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = b"fake-agent-jar" if self.path == "/jnlpJars/agent.jar" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = _Server(Jenkins).start()
    yield server
    server.stop()


def run_agent(docker_client, image: str, jenkins_url: str, bundle: dict, environment: dict | None = None
              ) -> tuple[int, str]:
    """The rendered agent bootstrap in an instance container of `image` until it ends: (exit code, log)."""
    owner = f"bootstrap-test-{uuid.uuid4().hex[:8]}"
    cloud = DockerCloud(docker_client, DockerSettings(instance_image=image, host_cpus=1, host_mem_gib=1,
                                                      environment=environment or {}))
    plan = offer("m5.large")
    spec = bootstrap.BootstrapSpec(run_id="", expires_at=bootstrap.expires_at(600),
                                   jenkins_url=jenkins_url + "/", work_dir="/tmp/agent-work")
    instance = cloud.launch(LaunchSpec(candidates=(plan,), user_data=bootstrap.render_user_data("agent", plan, spec, cloud),
                                       tags={"provisioner:owner": owner, "provisioner:job": owner},
                                       client_token=str(uuid.uuid4()), secret_env=bootstrap.secret_env(cloud, bundle)))
    try:
        return finish(docker_client, cloud, instance)
    finally:
        cloud.terminate([instance.id])


def test_agent_mode_downloads_agent_jar_and_connects_with_the_secret_from_a_file(docker_client, fake_java_image,
                                                                                  jenkins_jar):
    bundle = secret_bundle.make_bundle(agent_secret="f" * 64, node_name="ec2-q42", run_id="ec2-q42")
    code, text = run_agent(docker_client, fake_java_image, jenkins_jar.url, bundle)
    assert code == 0, text
    assert (f"java-argv: -jar /run/provisioner/agent.jar -url {jenkins_jar.url}/ -secret @/run/provisioner/agent-secret "
            "-name ec2-q42 -webSocket -workDir /tmp/agent-work") in text
    assert "secret-file: 600 64 bytes" in text and "jar: fake-agent-jar" in text
    assert "f" * 64 not in text and "::provisioner-ready::" in text


def test_an_image_without_java_reports_it_before_the_console_would(docker_client, agent_image, jenkins_jar):
    """The failure report (POST /v1/events) names the missing Java, so the daemon's boot-failure
    line says why whichever it reads first, the report or the container's console."""
    report = ReportStub().start()
    bundle = secret_bundle.make_bundle(agent_secret="f" * 64, node_name="ec2-q43", run_id="ec2-q43",
                                       report_url=report.url, report_token=report.token)
    try:
        code, text = run_agent(docker_client, agent_image, jenkins_jar.url, bundle,
                               {"PROVISIONER_JAVA": "/opt/no-such/java"})
    finally:
        report.stop()
    why = "/opt/no-such/java: not found: the image has no Java to run the Jenkins agent"
    assert code == 127, text
    assert report.events == [{"code": "agent-exited", "exit_code": 127, "message": why, "log_tail": []}]
    assert why in text and "::provisioner-ready::" not in text
