"""`provisioner catalog show` on the bundled catalog."""

from __future__ import annotations

import json


def test_show_filters_and_json(cli):
    out = cli("catalog", "show", "--filter", "gpu=a10g", "--filter", "spot", "--json", "--limit", "0")
    assert out.returncode == 0, out.stderr
    offers = json.loads(out.stdout)
    assert offers and all(o["gpu_model"] == "A10G" and o["market"] == "spot" and o["region"] == "us-east-1"
                          for o in offers)
    assert offers == sorted(offers, key=lambda o: (o["price"], o["instance_type"]))


def test_show_table_and_regions(cli):
    out = cli("catalog", "show", "--filter", "type=m5.large", "--region", "us-east-1", "--region", "eu-west-1")
    assert out.returncode == 0
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert {(r[0], r[1], r[2]) for r in rows} == {("m5.large", m, reg) for m in ("spot", "on-demand")
                                                   for reg in ("us-east-1", "eu-west-1")}
    assert "scores: composite" in out.stderr
    assert out.stdout.split()[4] == "cores" and {(r[3], r[4]) for r in rows} == {("2", "1")}   # two hyper-threads


def test_bad_filter_is_exit_2(cli):
    out = cli("catalog", "show", "--filter", "vram>=4")
    assert out.returncode == 2 and "unknown key 'vram'" in out.stderr
