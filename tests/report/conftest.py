"""Report tests: one matplotlib cache per session (the per-test XDG cache would rebuild the font
cache, ~3 s, in every test that draws)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def _mpl_config_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("matplotlib"))


@pytest.fixture(autouse=True)
def _shared_matplotlib_cache(_mpl_config_dir, monkeypatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", _mpl_config_dir)
