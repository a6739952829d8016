"""Catalog warnings: off with `catalog_max_age_days: never`, else at most once a day on the CLI."""

from __future__ import annotations

import json

import pytest

from provisioner.catalog import load_catalog
from provisioner.catalog.notice import REMIND_EVERY_S, due
from provisioner.config import parse_config
from provisioner.errors import ProvisionerError


def stale_cache(tmp_path):
    cache = tmp_path / "catalog"
    cache.mkdir()
    (cache / "meta.json").write_text(json.dumps({"fetched_at": "2020-01-01T00:00:00Z"}))
    return cache


def test_a_stale_or_missing_cache_warns_unless_never(tmp_path):
    assert load_catalog(cache=tmp_path / "none").warnings          # no refreshed cache
    assert load_catalog(cache=tmp_path / "none", max_age_days="never").warnings == []
    assert load_catalog(cache=tmp_path / "none", max_age_days=None).warnings == []
    stale = stale_cache(tmp_path)
    assert any("stale" in w for w in load_catalog(cache=stale, max_age_days=30).warnings)
    assert load_catalog(cache=stale, max_age_days="never").warnings == []


def test_never_is_a_valid_setting_and_other_words_are_not():
    assert parse_config("defaults: {catalog_max_age_days: never}").defaults.catalog_max_age_days == "never"
    assert parse_config("defaults: {catalog_max_age_days: 7}").defaults.catalog_max_age_days == 7
    for bad in ("sometimes", 0, -3):
        with pytest.raises(ProvisionerError, match="catalog_max_age_days"):
            parse_config(f"defaults: {{catalog_max_age_days: {bad}}}")


def test_warnings_are_due_once_a_day(tmp_path):
    marker, now = tmp_path / "state" / "catalog-warned", 1_000_000.0
    assert due(["stale"], marker, now) == ["stale"]
    assert due(["stale"], marker, now + 60) == []
    assert due(["stale"], marker, now + REMIND_EVERY_S - 1) == []
    assert due(["stale"], marker, now + REMIND_EVERY_S + 1) == ["stale"]
    assert due([], marker, now + 10 * REMIND_EVERY_S) == []


def test_a_marker_that_cannot_be_written_never_hides_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert due(["stale"], blocker / "catalog-warned", 0.0) == ["stale"]
    assert due(["stale"], blocker / "catalog-warned", 1.0) == ["stale"]


def test_plan_prints_the_catalog_warning_once_a_day(cli):
    first = cli("plan", "--label", "ec2 && vcpu=2", "--json")
    second = cli("plan", "--label", "ec2 && vcpu=2", "--json")
    assert first.returncode == second.returncode == 0
    assert "warning: catalog:" in first.stderr
    assert "catalog" not in second.stderr


def test_never_silences_plan(cli, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("defaults: {catalog_max_age_days: never}\n")
    done = cli("plan", "--label", "ec2 && vcpu=2", "--json", "--config", str(config))
    assert done.returncode == 0 and "catalog" not in done.stderr
