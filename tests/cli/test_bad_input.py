"""Bad values on the command line and in the config: one line naming the value, exit 2, never a
traceback, and nothing started (issue 13, items 6 and 7). In-process through `main(argv)`."""

from __future__ import annotations

import json

import pytest

from provisioner.cli.main import main

BIG = "9" * 400


def run_main(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The `...: error: ...` line; the test fails on a traceback or on no such line."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


# Each is refused before any container, store or server is touched (no image "x" exists: reaching
# the engine would give 125, not 2).
REFUSED = {
    "run-timeout-400-digits": (["run", "--image", "x", "--timeout", BIG, "--", "true"], "duration"),
    "run-timeout-1e9-days": (["run", "--image", "x", "--timeout", "1000000000d", "--", "true"], "duration"),
    "run-memory-400-digits": (["run", "--image", "x", "--memory", BIG, "--", "true"], "memory"),
    "run-memory-zero": (["run", "--image", "x", "--memory", "0", "--", "true"], "memory"),
    "run-memory-tiny": (["run", "--image", "x", "--memory", "1M", "--", "true"], "memory"),
    "run-cpus-inf": (["run", "--image", "x", "--cpus", "inf", "--", "true"], "cpus"),
    "run-cpus-nan": (["run", "--image", "x", "--cpus", "nan", "--", "true"], "cpus"),
    "run-cpus-1e-12": (["run", "--image", "x", "--cpus", "1e-12", "--", "true"], "cpus"),
    "run-image-empty": (["run", "--image", "", "--", "true"], "image"),
    "run-retry-huge": (["run", "--image", "x", "--retry", BIG, "--", "true"], "retry"),
    "run-retry-superscript": (["run", "--image", "x", "--retry", "\u00b2", "--", "true"], "retry"),
    "run-grace-inf": (["run", "--image", "x", "--grace", "1e999", "--", "true"], "grace"),
    "plan-timeout-400-digits": (["plan", "--timeout", BIG], "duration"),
    "plan-max-price-nan": (["plan", "--max-price", "nan"], "price"),
    "plan-max-price-inf": (["plan", "--max-price", "inf"], "price"),
    "history-empty": (["--history", "", "history", "show", "x"], "--history"),
    "history-empty-after": (["history", "show", "x", "--history", ""], "--history"),
    "config-empty": (["--config", "", "plan"], "--config"),
    "export-since-9999999d": (["history", "export", "--since", "9999999d"], "since"),
    "export-workers-zero": (["history", "export", "--workers", "0"], "workers"),
    "daemon-listen-abc": (["daemon", "--listen", "abc", "--once"], "listen"),
    "daemon-listen-port": (["daemon", "--listen", ":99999", "--once"], "listen"),
}


@pytest.mark.parametrize("argv,word", REFUSED.values(), ids=REFUSED.keys())
def test_refused_with_one_line_and_exit_2(capsys, tmp_path, argv, word):
    code, out, err = run_main(capsys, ["--history", str(tmp_path / "h.sqlite3"), *argv]
                              if "--history" not in argv else argv)
    assert code == 2, (out, err)
    assert word.lower() in error_line(err).lower()
    assert not (tmp_path / "h.sqlite3").exists()  # nothing was started, not even the store


def test_json_usage_error_is_one_object(capsys):
    code, out, err = run_main(capsys, ["plan", "--json", "--max-price", "nan"])
    assert code == 2
    obj = json.loads(out)
    assert "price" in obj["error"] and obj["constraint"] is None
    assert "Traceback" not in err


def test_json_after_the_double_dash_belongs_to_the_job(capsys):
    code, out, err = run_main(capsys, ["run", "--cpus", "nan", "--", "echo", "--json"])
    assert code == 2 and out == ""
    assert "cpus" in error_line(err)


def test_input_error_from_a_command_is_one_json_object(capsys, monkeypatch):
    """Whatever InputError the planner raises (labels are parsed there) is one object under --json."""
    from provisioner import planner
    from provisioner.errors import InputError

    def bad(*_a, **_k):
        raise InputError("nesting deeper than 64", where="--label", position=70)
    monkeypatch.setattr(planner, "plan_job", bad)
    code, out, err = run_main(capsys, ["plan", "--json", "--label", "(" * 100 + "ec2" + ")" * 100])
    assert code == 2
    assert json.loads(out)["error"] == "--label at position 71: nesting deeper than 64"
    code, out, err = run_main(capsys, ["plan", "--label", "x"])
    assert code == 2 and out == ""
    assert "nesting deeper than 64" in error_line(err)


def test_duplicate_config_key_names_file_and_both_lines(capsys, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("defaults:\n  image: a\n  timeout: 1h\n  image: b\nregions: [us-east-1]\n")
    code, out, err = run_main(capsys, ["--config", str(cfg), "plan"])
    assert code == 2
    assert f"{cfg}:4: defaults.image: duplicate key (first given at line 2)" in err
    assert "Traceback" not in err


def test_duplicate_top_level_and_nested_in_lists(capsys, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("alerts:\n  sinks:\n    - type: slack\n      type: webhook\ncloud: docker\ncloud: ec2\n")
    code, out, err = run_main(capsys, ["daemon", "--check", str(cfg)])
    assert code == 2
    assert f"{cfg}:4: alerts.sinks[0].type: duplicate key (first given at line 3)" in err
    assert f"{cfg}:6: cloud: duplicate key (first given at line 5)" in err


def test_non_utf8_config_names_file_and_line(capsys, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_bytes(b"cloud: docker\ndefaults:\n  image: caf\xe9\n")
    for argv in (["--config", str(cfg), "plan"], ["daemon", "--check", str(cfg)]):
        code, out, err = run_main(capsys, argv)
        assert code == 2
        assert f"{cfg}:3: not UTF-8 text" in err and "Traceback" not in err


def test_deeply_nested_config_is_an_error_not_a_crash(capsys, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("teams: " + "[" * 5000 + "]" * 5000 + "\n")
    code, out, err = run_main(capsys, ["--config", str(cfg), "plan"])
    assert code == 2 and "Traceback" not in err and str(cfg) in err
