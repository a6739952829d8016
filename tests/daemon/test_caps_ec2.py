"""The daemon on the `ec2` cloud (moto server) reads the account's vCPU quotas from Service Quotas at
start (a stub serving recorded GetServiceQuota answers: moto has Service Quotas only for VPC) and
launches exactly the agents that fit them; the rest wait as `quota`."""

from __future__ import annotations

import pytest

from provisioner import aws
from provisioner.clouds.ec2 import Ec2Cloud
from provisioner.daemon.wiring import build
from tests.clouds.conftest import (ec2_moto_url, ec2_settings, moto_client_factory,  # noqa: F401
                                   moto_images, moto_world)
from tests.clouds.quota_stub import QuotaStub, quota_stub
from tests.daemon.conftest import ADMIN, RunningDaemon, daemon_config
from tests.daemon.fakes import small_catalog

pytestmark = pytest.mark.moto
LABEL = "ec2 && vcpu=2 && mem=4"           # c5.large, 2 vCPUs, on demand (the small catalog)


def test_the_account_quota_read_at_start_lets_exactly_the_agents_that_fit_launch(
        emu, moto_env, ec2_moto_url, ec2_settings, tmp_path):  # noqa: F811
    cloud = Ec2Cloud(moto_client_factory(ec2_moto_url), ec2_settings)
    owner = "quota"
    with quota_stub({"L-1216C47A": 5.0}) as url:          # standard on-demand: 5 vCPUs, two c5.large
        parts = build(daemon_config(emu.url, owner_id=owner, max_agents=20), str(tmp_path / "h.sqlite3"),
                      ADMIN[1], owner=owner, cloud=cloud, catalog=small_catalog(),
                      quota_clients=lambda region: aws.client("service-quotas", region=region, endpoint_url=url,
                                                              max_attempts=1))
    d = RunningDaemon(parts)
    try:
        assert ("GetServiceQuota", "L-1216C47A") in QuotaStub.calls
        assert d.daemon.s.class_quotas[("us-east-1", "standard", "on-demand")] == 5.0
        for n in range(3):
            emu.create_job(f"train-{n}", label=LABEL, script=["sleep 1"])
            emu.schedule(f"train-{n}", quiet_period=0)
        emu.wait_for(lambda: sum(1 for i in emu.queue_items() if i.get("buildable")) == 3, timeout=10)
        report = d.daemon.tick()
        assert report.ok and report.actions["Provision"] == 2 and report.actions["Hold"] == 1, report
        assert len(cloud.describe(owner)) == 2
        again = d.daemon.tick()                                   # still full: nothing more
        assert not again.actions.get("Provision") and len(cloud.describe(owner)) == 2
        reg = d.daemon.metrics.registry
        assert reg.get_sample_value("provisioner_queue_held_items", {"reason": "quota"}) == 1
        assert reg.get_sample_value("provisioner_vcpu_limit", {"region": "us-east-1", "quota_class": "standard",
                                                               "market": "on-demand", "source": "quota"}) == 5
        assert reg.get_sample_value("provisioner_agent_vcpus", {"region": "us-east-1", "quota_class": "standard",
                                                                "market": "on-demand"}) == 4
    finally:
        d.close()
