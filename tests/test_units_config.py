"""Units and the configuration file."""

from __future__ import annotations

import pytest

from provisioner import paths
from provisioner.config import DEFAULTS, load_config, parse_config
from provisioner.errors import ConfigError, UsageError
from provisioner.planner import settings_from
from provisioner.requirements import Requirements
from provisioner.units import format_duration, parse_duration_s, parse_memory_gib


@pytest.mark.parametrize("text,seconds", [
    ("5400", 5400), ("5400s", 5400), ("90m", 5400), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
    ("1.5h", 5400), (120, 120),
])
def test_durations(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5", "0m", "2x", "h", "", "1h 30m", "30m1h2"])
def test_bad_durations(text):
    with pytest.raises(UsageError):
        parse_duration_s(text)


@pytest.mark.parametrize("text,gib", [
    ("16", 16), ("16G", 16), ("16gi", 16), ("16GiB", 16), ("512M", 0.5), ("512Mi", 0.5), ("512mib", 0.5),
    ("1.5", 1.5),
])
def test_memory(text, gib):
    assert parse_memory_gib(text) == gib


@pytest.mark.parametrize("text", ["16X", "G", "-1", "16 TB", ""])
def test_bad_memory(text):
    with pytest.raises(UsageError):
        parse_memory_gib(text)


def test_format_duration():
    assert format_duration(59) == "59s" and format_duration(7260) == "2h1m" and format_duration(90061) == "1d1h1m"


def test_no_file_means_builtin_defaults():
    cfg = load_config(None)
    assert cfg.path is None and cfg.data == DEFAULTS and cfg.regions == ["us-east-1"]
    assert cfg.data["cloud"] == "docker"


def test_file_merges_over_defaults_and_env_finds_it(tmp_path, monkeypatch):
    f = tmp_path / "c.yaml"
    f.write_text("cloud: ec2\ndefaults:\n  timeout: 2h\njenkins:\n  managed_atom: farm\n")
    monkeypatch.setenv("PROVISIONER_CONFIG", str(f))
    cfg = load_config(None)
    assert cfg.data["cloud"] == "ec2" and cfg.defaults.timeout == "2h" and cfg.defaults.policy == "deadline"
    assert cfg.jenkins.managed_atom == "farm" and cfg.jenkins.token_env == "JENKINS_TOKEN"


def test_xdg_config_location(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "provisioner").mkdir()
    (tmp_path / "provisioner" / "config.yaml").write_text("regions: [eu-west-1]\n")
    assert paths.resolve_config_path(None) == tmp_path / "provisioner" / "config.yaml"
    assert load_config(None).regions == ["eu-west-1"]


def test_every_problem_is_named_with_key_and_line():
    text = "cloud: gcp\nregions: us-east-1\ndefaults:\n  runtime_target: 2\n  max_price: -1\nnope: 1\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    problems = {(key, line) for key, line, _ in info.value.problems}
    assert problems == {("cloud", 1), ("regions", 2), ("defaults.runtime_target", 4), ("defaults.max_price", 5),
                        ("nope", 6)}
    assert info.value.exit_code == 2


@pytest.mark.parametrize("value", ["-0.1", "1.5", "x", "true", ".nan", ".inf"])
def test_scaled_margin_must_be_a_number_from_0_to_1(value):
    with pytest.raises(ConfigError) as info:
        parse_config(f"defaults:\n  scaled_margin: {value}\n", "c.yaml")
    assert [(key, line) for key, line, _ in info.value.problems] == [("defaults.scaled_margin", 2)]
    assert "must be a number in [0, 1]" in str(info.value)


@pytest.mark.parametrize("value", [0, 0.1, 1])
def test_scaled_margin_reaches_the_plan_settings(value):
    config = parse_config(f"defaults:\n  scaled_margin: {value}\n", "c.yaml")
    assert settings_from(config, Requirements()).scaled_margin == value


def test_yaml_syntax_error_has_a_line():
    with pytest.raises(ConfigError) as info:
        parse_config("defaults:\n  timeout: [2h\n", "c.yaml")
    assert info.value.problems[0][1] is not None and "not valid YAML" in str(info.value)


def test_history_resolution_order(monkeypatch):
    monkeypatch.setenv("PROVISIONER_HISTORY", "/env.sqlite3")
    assert paths.resolve_history("/flag.sqlite3", "/cfg") == "/flag.sqlite3"
    assert paths.resolve_history(None, "/cfg") == "/env.sqlite3"
    monkeypatch.delenv("PROVISIONER_HISTORY")
    assert paths.resolve_history(None, "/cfg") == "/cfg"
    assert paths.resolve_history(None, None).endswith("provisioner/history.sqlite3")
