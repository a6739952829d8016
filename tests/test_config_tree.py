"""The typed settings tree (provisioner/config_tree.py): every DEFAULTS key has its field, the loader
builds it once, and consumers read attributes (nothing but provisioner/config.py reads by key)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from provisioner import config_tree
from provisioner.config import DEFAULTS, parse_config, typed_section
from provisioner.config_tree import LabelSection
from provisioner.errors import ConfigError
from provisioner.pool import PoolSpec, ReuseSpec

ROOT = Path(__file__).resolve().parent.parent
# what `config` attributes outside the tree's sections are (they are plain values or mappings)
TOP_LEVEL = {"cloud", "regions", "history", "teams", "labels"}


def _walk(defaults: dict, typed: object, where: str):
    """(key path, typed value, default) for every key of a DEFAULTS section, nested ones too."""
    for key, default in defaults.items():
        value = getattr(typed, key)
        if dataclasses.is_dataclass(value):
            yield from _walk(default, value, f"{where}.{key}")
        else:
            yield f"{where}.{key}", value, default


@pytest.mark.parametrize("section", sorted(config_tree.SECTIONS))
def test_every_defaults_key_has_a_typed_field_holding_its_default(section):
    """A key added to DEFAULTS without its field in config_tree.py fails here (and in the loader)."""
    typed = getattr(parse_config(""), section)
    assert type(typed) is config_tree.SECTIONS[section] and type(typed).__dataclass_params__.frozen
    for path, value, default in _walk(DEFAULTS[section], typed, section):
        assert (dict(value) if isinstance(default, dict) else value) == \
            (tuple(default) if isinstance(value, tuple) else default), path


def test_every_top_level_key_is_an_attribute_of_config():
    config = parse_config("")
    assert set(config_tree.SECTIONS) | TOP_LEVEL == set(DEFAULTS)
    assert (config.cloud, config.regions, config.history) == ("docker", ["us-east-1"], None)
    assert dict(config.teams) == {} and dict(config.labels) == {}
    from provisioner.clouds import registry        # other tests may have registered clouds with sections
    assert set(config.clouds) == set(registry.sections()) - set(DEFAULTS)


def test_the_loader_refuses_a_defaults_key_without_its_typed_field(monkeypatch):
    monkeypatch.setitem(DEFAULTS["daemon"], "brand_new_key", 1)
    with pytest.raises(TypeError, match=r"DaemonSection has no field for daemon\.brand_new_key"):
        parse_config("")


def test_durations_are_parsed_once_and_the_written_form_is_kept():
    config = parse_config("defaults: {timeout: 90m, default_runtime: 2h}\n")
    assert (config.defaults.timeout, config.defaults.timeout_s) == ("90m", 5400.0)
    assert (config.defaults.default_runtime, config.defaults.default_runtime_s) == ("2h", 7200.0)
    assert config.daemon.interval_s == 5 and config.daemon.api.token_grace_s == 900


def test_the_tree_is_frozen_and_built_once():
    config = parse_config("jenkins: {url: 'http://j:8080/'}\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.jenkins.url = "http://other/"                      # type: ignore[misc]
    with pytest.raises(TypeError):
        config.teams["x"] = "y"                                    # type: ignore[index]
    assert config.jenkins is config.jenkins and config.jenkins.url == "http://j:8080/"


def test_labels_carry_their_parsed_pool_and_reuse():
    config = parse_config("labels:\n  'docker && vcpu=2': {pool: {min_spare: 1, max_spare: 2},"
                          " reuse: {idle: 10m}, init_script: 'echo hi'}\n  'ec2': {init_script: 'echo ec2'}\n")
    entry = config.labels["docker && vcpu=2"]
    assert isinstance(entry, LabelSection) and entry.init_script == "echo hi"
    assert isinstance(entry.pool, PoolSpec) and (entry.pool.min_spare, entry.pool.max_spare) == (1, 2)
    assert isinstance(entry.reuse, ReuseSpec) and entry.reuse.idle_s == 600
    assert config.labels["ec2"] == LabelSection(init_script="echo ec2")


def test_alerts_are_parsed_at_load_and_an_unknown_sink_names_file_and_key():
    config = parse_config("alerts:\n  sinks: [{name: chat, type: slack, webhook_url: 'https://x'}]\n"
                          "  rules: [{on: [oom], teams: [ml]}]\n")
    assert [s.name for s in config.alerts.settings.sinks] == ["chat"]
    assert config.alerts.settings.rules[0].on == ("oom",)
    with pytest.raises(ConfigError, match=r"c\.yaml:3: alerts\.rules: item 1: unknown sink nope"):
        parse_config("alerts:\n  sinks: [{name: chat, type: slack, webhook_url: 'https://x'}]\n"
                     "  rules: [{on: [oom], sinks: [nope]}]\n", "c.yaml")


def test_a_registered_clouds_section_is_reached_through_its_typed_accessor():
    from provisioner.clouds import registry

    @dataclasses.dataclass(frozen=True)
    class Spot:
        folder: str
        init_script: str | None

    schema = {"folder": lambda v: None, "init_script": lambda v: None}
    registry.register("typedtest", "provisioner.clouds.docker:DockerCloud", schema=schema,
                      defaults={"folder": "/tmp/x", "init_script": None},
                      settings=lambda s: Spot(s["folder"], s["init_script"]))
    registry.register("plaintest", "provisioner.clouds.docker:DockerCloud", schema=schema,
                      defaults={"folder": "/tmp/y", "init_script": None})
    try:
        config = parse_config("cloud: typedtest\ntypedtest: {folder: /srv/f, init_script: 'echo t'}\n"
                              "plaintest: {init_script: 'echo p'}\n")
        assert config.cloud_section("typedtest") == Spot("/srv/f", "echo t")
        assert dict(config.cloud_section("plaintest")) == {"folder": "/tmp/y", "init_script": "echo p"}
        assert (config.init_script("typedtest"), config.init_script("plaintest")) == ("echo t", "echo p")
        with pytest.raises(TypeError):
            config.cloud_section("plaintest")["folder"] = "/elsewhere"     # type: ignore[index]
        with pytest.raises(ValueError, match="no config section for the cloud 'docker'"):
            config.cloud_section("docker")
    finally:
        registry._ENTRIES.pop("typedtest")
        registry._ENTRIES.pop("plaintest")


def test_a_partial_mapping_is_typed_over_the_defaults():
    ec2 = typed_section("ec2", {"subnets": ["subnet-1"]})
    assert ec2.subnets == ["subnet-1"] and ec2.encrypt_root_volume is True


def test_only_the_loader_reads_config_by_string_key():
    """The issue-12 figure: modules reading the config (or one of its sections) by key."""
    out = subprocess.run(["bash", "scripts/issue12-figures"], cwd=ROOT, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHON": "true"}).stdout
    block = out.split("modules reading config by string key", 1)[1].split("\n")
    assert re.fullmatch(r"\s*provisioner/config\.py", block[1]) and not block[2].startswith("  ")


def test_a_config_copies_and_pickles_with_its_tree():
    import copy
    import pickle
    config = parse_config("jenkins: {url: 'http://j/'}\nlabels: {ec2: {init_script: 'echo x'}}\n", "c.yaml")
    for other in (copy.deepcopy(config), pickle.loads(pickle.dumps(config))):
        assert other == config and other.path == "c.yaml" and other.jenkins.url == "http://j/"
        assert other.labels["ec2"].init_script == "echo x" and other.line("jenkins.url") == config.line("jenkins.url")
