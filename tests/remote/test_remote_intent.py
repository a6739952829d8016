"""`run --remote` plans through the same intent as `plan` and the daemon: the remote job gets the
intent's timeout, the launch its market rule, and the plan's reasons are printed before `Starting`.

The launch itself is not the subject here: a cloud that records the LaunchSpec it is handed and
refuses it stands in for the real one (run --remote then exits 125, as on any failed launch);
tests/remote/test_remote_docker.py and test_remote_ec2_moto.py launch for real.
"""

from __future__ import annotations

import re

import pytest

from provisioner.cli.main import main
from provisioner.clouds import registry
from provisioner.clouds.base import CloudDefaults, CloudError
from provisioner.config import parse_config
from provisioner.daemon.provision_executor import AgentSettings, ProvisionExecutor
from provisioner.daemon.model import PlanKey
from provisioner.daemon.plan_cache import PlanCache
from provisioner.daemon.state import Tokens
from tests.factories import run


class RecordingCloud(CloudDefaults):
    """Records each LaunchSpec and refuses it."""

    name = "docker"

    def __init__(self):
        self.specs: list = []

    def describe(self, owner):
        return []

    def launch(self, spec):
        self.specs.append(spec)
        raise CloudError("refused by the test", code="Test", kind="capacity")

    def terminate(self, ids):
        pass


@pytest.fixture
def remote(monkeypatch, tmp_path, capsys):
    cloud = RecordingCloud()
    monkeypatch.setattr(registry, "make_cloud", lambda config, name=None, purpose=None: cloud)
    for var in ("PROVISIONER_CONFIG", "PROVISIONER_HISTORY", "PROVISIONER_REPORT_URL", "JOB_NAME"):
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "config.yaml"
    config.write_text("regions: [us-east-1]\n")
    history = tmp_path / "h.sqlite3"

    def go(label: str, *extra: str, job: str = "intent-job"):
        cloud.specs.clear()
        code = main(["--config", str(config), "--history", str(history), "run", "--remote", "--cloud", "docker",
                     "--label", label, "--job", job, *extra, "--image", "python:3.11-slim", "--", "true"])
        out = capsys.readouterr()
        return code, out.out, out.err, cloud.specs[0] if cloud.specs else None
    go.config, go.history = config, history
    return go


def remote_timeout(user_data: str) -> str:
    """The `--timeout` the instance's `provisioner run` gets, from the rendered bootstrap."""
    m = re.search(r"--timeout'? '?([0-9.]+s)", user_data)
    assert m, user_data
    return m.group(1)


def test_the_remote_job_runs_with_the_labels_timeout(remote):
    """Observation 3: `--label 'ec2 && timeout=2h'` planned for 2 h, but the remote job got 6 h."""
    code, out, err, spec = remote("ec2 && timeout=2h")
    assert code == 125 and "refused by the test" in err
    assert remote_timeout(spec.user_data) == "7200s"
    code, out, err, spec = remote("ec2 && timeout=2h", "--timeout", "30m")     # the flag wins
    assert remote_timeout(spec.user_data) == "1800s"
    code, out, err, spec = remote("ec2")
    assert remote_timeout(spec.user_data) == "21600s"


SPOT_ONLY = [("ec2 && spot", True), ("ec2 && (spot || ondemand)", False), ("ec2 && !spot", False),
             ("ec2 && !ondemand", True), ("ec2 && vcpu=2", False)]


@pytest.mark.parametrize("label, spot_only", SPOT_ONLY, ids=[x[0] for x in SPOT_ONLY])
def test_run_remote_the_daemon_and_plan_read_the_market_alike(remote, label, spot_only):
    """Observation 4: `ec2 && (spot || ondemand)` was spot-only for run --remote, not for the daemon."""
    code, out, err, spec = remote(label)
    assert spec.spot_only is spot_only
    from provisioner.catalog import load_catalog
    planner = PlanCache(parse_config("regions: [us-east-1]\n"), load_catalog(), None, lambda: frozenset())
    plan = planner.plans([PlanKey(label, "j")], {})[PlanKey(label, "j")]
    from provisioner.daemon.model import Item, Provision
    item = Item(1, 1, label, "j")
    daemon_spec, _ = ProvisionExecutor(AgentSettings("t", "http://127.0.0.1:8080/", "http://127.0.0.1:9108"),
                                         None, RecordingCloud(), None, Tokens(b"k" * 32)).spec(
        Provision("prov-t-q1", item, plan, 1, True, "tok"), "ab" * 32, 0.0)
    assert daemon_spec.spot_only is spot_only
    from provisioner.planner import resolve_for_config                # what `plan` resolves
    assert resolve_for_config(parse_config(""), label).spot_only is spot_only


def test_run_remote_prints_the_plans_reasons_before_starting(remote):
    """Observation 8: a label asking 16 vCPU / 64 GiB, downsized from history, printed only
    `Starting c7a.medium ... vcpu:1 mem:2.00`; now it prints what `plan` prints, first."""
    from provisioner.history import open_store
    with open_store(str(remote.history)) as store:
        for n in range(4):
            store.add(run("small-job", n, instance_type="m5.large", duration=600, cpu_avg=90, cpu_max=100,
                          mem_gib=1))
    label = "ec2 && vcpu=16 && mem=64"
    code, out, err, spec = remote(label, job="small-job")
    assert code == 125
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Starting "))
    before = lines[:start]
    assert any("Autotuned memory" in line and "declared mem=64" in line for line in before), out
    assert f"Requirements: {label}" in before


def test_run_remote_prints_the_same_reason_lines_as_plan(remote, capsys):
    from provisioner.history import open_store
    with open_store(str(remote.history)) as store:
        for n in range(4):
            store.add(run("same-job", n, instance_type="m5.large", duration=600, cpu_avg=90, cpu_max=100,
                          mem_gib=1))
    label = "ec2 && vcpu=16 && mem=64 && timeout=1h"
    code, out, err, spec = remote(label, job="same-job")
    before = out.split("\nStarting ")[0].splitlines()
    assert main(["--config", str(remote.config), "--history", str(remote.history), "plan", "--label", label,
                 "--job", "same-job"]) == 0
    planned = capsys.readouterr().out.split("\n\nPlan: ")[0].splitlines()
    # the same lines, bar the architecture rule: run --remote's is its image's (here the docker host's)
    differ = [line for line in planned if line not in before]
    assert len(differ) == 1 and differ[0].startswith("  - Architecture:"), differ
    assert any(line.startswith("  - Architecture: the docker cloud runs the host's architecture") for line in before)
