"""Building a launch: tags, idempotency token, no secret in user-data, the EC2 secret hand-over."""

from __future__ import annotations

import json

import pytest

from dataclasses import replace

from provisioner.catalog.model import SPOT
from provisioner.config import parse_config
from provisioner.daemon.provision_executor import AgentSettings, ProvisionExecutor
from provisioner.daemon.model import Item, Provision, client_token
from provisioner.daemon.state import Tokens
from tests.daemon.helpers import plan

SECRET = "ab" * 32


class Named:
    def __init__(self, name: str):
        self.name = name


def provision(label: str = "ec2 && vcpu=2 && team=ml", market: str = "on-demand") -> Provision:
    """A provision whose plan carries the label's intent, as the daemon's PlanCache makes them."""
    from provisioner.planner import resolve_for_config
    item = Item(42, 1700000000000, label, "ml/train")
    intent = resolve_for_config(parse_config(""), label, lax=True)
    return Provision("prov-t-q42", item, replace(plan(market=market), intent=intent), 1, True,
                     client_token("t", "prov-t-q42", item.since, 1))


@pytest.mark.parametrize("cloud", ["docker", "ec2"])
def test_spec_tags_token_and_no_secret_in_user_data(cloud):
    tokens = Tokens(b"k" * 32)
    executor = ProvisionExecutor(AgentSettings("t", "http://127.0.0.1:8080/", "http://127.0.0.1:9108"),
                                 None, Named(cloud), None, tokens)
    p = provision()
    spec, bundle = executor.spec(p, SECRET, 1700000000.0)
    assert spec.client_token == p.token
    assert {k: v for k, v in spec.tags.items() if k not in ("provisioner:expires-at", "provisioner:boot-config")} == {
        "provisioner:owner": "t", "provisioner:node": "prov-t-q42", "provisioner:queue-id": "42",
        "provisioner:job": "ml/train", "provisioner:team": "ml"}
    # what the agent boots with besides its image (a boot-failure pause lifts when it changes)
    assert spec.tags["provisioner:boot-config"] == executor.boot_config(p.item.label)
    assert len(spec.tags["provisioner:boot-config"]) == 16
    assert spec.tags["provisioner:expires-at"].endswith("Z")
    token = tokens.for_node("prov-t-q42")
    assert SECRET not in spec.user_data and token not in spec.user_data
    assert SECRET not in json.dumps(spec.tags) and token not in json.dumps(spec.tags)
    assert bundle == {"agent_secret": SECRET, "report_url": "http://127.0.0.1:9108", "report_token": token,
                      "node_name": "prov-t-q42", "run_id": "prov-t-q42"}
    if cloud == "docker":
        assert json.loads(spec.secret_env["PROVISIONER_SECRETS"]) == bundle
    else:
        assert spec.secret_env == {}                     # EC2: the bundle goes to SSM after launch
    assert "prov-t-q42" not in spec.user_data and "http://127.0.0.1:8080/" in spec.user_data
    assert not spec.spot_only
    spot = executor.spec(provision("ec2 && spot", SPOT), SECRET, 0)[0]
    assert spot.spot_only
    assert not executor.spec(provision("ec2 && (spot || ondemand)", SPOT), SECRET, 0)[0].spot_only


def test_launch_reads_timeout_team_and_market_from_the_plans_intent_not_the_label():
    executor = ProvisionExecutor(AgentSettings("t", "http://127.0.0.1:8080/", "http://127.0.0.1:9108"),
                                 None, Named("ec2"), None, Tokens(b"k" * 32))
    p = provision("ec2 && spot && team=ml && timeout=2h", SPOT)
    spec, _ = executor.spec(p, SECRET, 1700000000.0)
    assert spec.spot_only and spec.tags["provisioner:team"] == "ml"
    assert spec.tags["provisioner:expires-at"] == "2023-11-15T00:34:00Z"   # 22:14 + 2 h + boot 600 s + 600 s
    from provisioner.intent import resolve
    one_h = parse_config("defaults: {timeout: 1h}").defaults
    other = replace(p, plan=replace(p.plan, intent=resolve("ec2", defaults=one_h, team="web")))
    spec, _ = executor.spec(other, SECRET, 1700000000.0)              # the item's label is not read again
    assert not spec.spot_only and spec.tags["provisioner:team"] == "web"
    assert spec.tags["provisioner:expires-at"] == "2023-11-14T23:34:00Z"


@pytest.mark.moto
def test_ec2_hand_over_puts_the_bundle_in_ssm_tagged_with_the_instance_arn(moto_env):
    from provisioner import aws
    from provisioner.clouds.base import Instance
    from provisioner.clouds.ec2_seam import account_ids, handover as ec2_handover, ssm_clients
    handover = ec2_handover(ssm_clients(), account_ids())
    inst = Instance("i-0123456789abcdef0", "c5.large", "on-demand", "us-east-1", "pending", 0.0)
    handover(inst, {"agent_secret": SECRET, "node_name": "prov-t-q42"})
    ssm = aws.client("ssm", region="us-east-1")
    name = "/provisioner/agents/i-0123456789abcdef0"        # the instance's bootstrap knows its id
    value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    assert json.loads(value) == {"agent_secret": SECRET, "node_name": "prov-t-q42"}
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)
    [tag] = tags["TagList"]
    assert tag["Value"].startswith("arn:aws:ec2:us-east-1:") and tag["Value"].endswith(":instance/i-0123456789abcdef0")


def test_agents_planned_alike_share_one_user_data_and_one_batch_key():
    from provisioner.clouds.base import batch_key
    executor = ProvisionExecutor(AgentSettings("t", "http://127.0.0.1:8080/", "http://127.0.0.1:9108"),
                                 None, Named("ec2"), None, Tokens(b"k" * 32))
    first = provision()
    item = Item(43, 1700000001000, first.item.label, "ml/other")
    second = Provision("prov-t-q43", item, first.plan, 1, True, client_token("t", "prov-t-q43", item.since, 1))
    a, bundle_a = executor.spec(first, SECRET, 1700000000.0)
    b, bundle_b = executor.spec(second, SECRET, 1700000002.0)      # a moment later in the same tick
    assert a.user_data == b.user_data and a.client_token != b.client_token
    assert batch_key(a) == batch_key(b)
    assert (bundle_a["node_name"], bundle_b["node_name"]) == ("prov-t-q42", "prov-t-q43")
    assert {a.tags["provisioner:job"], b.tags["provisioner:job"]} == {"ml/train", "ml/other"}
    later, _ = executor.spec(provision("ec2 && vcpu=2 && team=ml && timeout=2h"), SECRET, 1700000000.0)
    assert batch_key(later) != batch_key(a)                          # another lifetime, another script
