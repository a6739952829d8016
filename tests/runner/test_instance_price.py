"""Which instance a run is priced as: flag, agent environment, IMDS (a stub on 127.0.0.1), catalog."""

from __future__ import annotations

from http.server import HTTPServer
from types import SimpleNamespace

import pytest

from provisioner.runner.instance_price import Pricing, catalog_offer, imds_identity, on_ec2, resolve_pricing
from tests.http_stub import QuietHandler, serving

OFFER = SimpleNamespace(price=0.096, ondemand_price=0.096, vcpu=2)


def finder(calls: list):
    def find(instance_type, region, market):
        calls.append((instance_type, region, market))
        return OFFER if instance_type == "m5.large" else None
    return find


def no_imds(url):
    raise AssertionError("IMDS must not be asked")


def test_nothing_known_means_no_cost():
    p = resolve_pricing(None, {}, imds=no_imds, is_ec2=lambda: False)
    assert p == Pricing() and p.cost(3600) is None


def test_flag_prices_from_catalog_on_demand_by_default():
    calls: list = []
    p = resolve_pricing("m5.large", {}, "eu-west-1", find_offer=finder(calls), imds=no_imds)
    assert calls == [("m5.large", "eu-west-1", None)]
    assert (p.instance_type, p.region, p.market, p.price_usd_per_hour, p.vcpu) == \
        ("m5.large", "eu-west-1", None, 0.096, 2)
    assert p.cost(1800) == 0.048 and p.source == "--instance-type"


def test_agent_environment_plan():
    env = {"PROVISIONER_INSTANCE_TYPE": "m5.large", "PROVISIONER_MARKET": "spot",
           "PROVISIONER_REGION": "us-west-2", "PROVISIONER_PRICE_USD_PER_HOUR": "0.04"}
    calls: list = []
    p = resolve_pricing(None, env, find_offer=finder(calls), imds=no_imds)
    assert (p.market, p.region, p.price_usd_per_hour, p.ondemand_usd_per_hour) == \
        ("spot", "us-west-2", 0.04, 0.096)
    assert calls == [("m5.large", "us-west-2", "spot")] and p.source == "environment"


def test_unknown_type_keeps_the_environment_price_and_bad_values_are_ignored():
    env = {"PROVISIONER_INSTANCE_TYPE": "x9.huge", "PROVISIONER_MARKET": "weird",
           "PROVISIONER_PRICE_USD_PER_HOUR": "cheap"}
    p = resolve_pricing(None, env, find_offer=finder([]), imds=no_imds)
    assert (p.instance_type, p.market, p.price_usd_per_hour) == ("x9.huge", None, None)


class IMDSStub(QuietHandler):
    def do_PUT(self):
        assert self.headers["X-aws-ec2-metadata-token-ttl-seconds"]
        self._send(b"TOKEN")

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != "TOKEN":
            self.send_response(401)
            self.end_headers()
            return
        answers = {"/latest/meta-data/instance-type": b"c5.xlarge",
                   "/latest/meta-data/placement/region": b"ap-south-1",
                   "/latest/meta-data/instance-life-cycle": b"spot"}
        if self.path in answers:
            self._send(answers[self.path])
        else:
            self.send_response(404)
            self.end_headers()

    def _send(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def imds_url():
    with serving(HTTPServer(("127.0.0.1", 0), IMDSStub)) as server:
        yield f"http://127.0.0.1:{server.server_port}"


def test_imds_identity_against_a_stub(imds_url):
    assert imds_identity(imds_url) == {"instance_type": "c5.xlarge", "region": "ap-south-1",
                                       "market": "spot"}


def test_imds_used_when_its_address_is_configured(imds_url):
    calls: list = []
    p = resolve_pricing(None, {"PROVISIONER_IMDS_URL": imds_url}, find_offer=finder(calls))
    assert (p.instance_type, p.region, p.market, p.source) == \
        ("c5.xlarge", "ap-south-1", "spot", "instance metadata")
    assert calls == [("c5.xlarge", "ap-south-1", "spot")]


def test_imds_silent_address_gives_up_quickly():
    import socket
    with socket.socket() as s:  # listening, never answering
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        assert imds_identity(f"http://127.0.0.1:{s.getsockname()[1]}", timeout_s=0.2) == {}


def test_ec2_detection(tmp_path):
    vendor = tmp_path / "sys_vendor"
    vendor.write_text("Amazon EC2\n")
    assert on_ec2([(str(tmp_path / "missing"), "ec2"), (str(vendor), "Amazon EC2")])
    assert not on_ec2([(str(tmp_path / "missing"), "ec2")])


def test_real_catalog_when_present():
    offer = catalog_offer("m5.large", "us-east-1", None)
    if offer is None:
        pytest.skip("catalog module not available")
    p = resolve_pricing("m5.large", {}, imds=no_imds)
    assert p.price_usd_per_hour and p.price_usd_per_hour > 0 and p.vcpu == 2
