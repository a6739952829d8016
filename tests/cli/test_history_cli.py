"""`provisioner history import|export|show` through the installed console script."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

from tests.conftest import provisioner_exe
from tests.factories import run


def write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_is_idempotent_and_export_round_trips_extra_fields(cli, tmp_path):
    hist = str(tmp_path / "h.sqlite3")
    records = [run(n=i) | {"x_team_cost_centre": "cc-1"} for i in range(5)]
    f = write_jsonl(tmp_path / "in.jsonl", records)
    first = cli("history", "import", str(f), "--history", hist)
    assert first.returncode == 0, first.stderr
    assert "imported 5, already present 0, rejected 0" in first.stdout
    again = cli("--history", hist, "history", "import", str(f))
    assert again.returncode == 0 and "imported 0, already present 5" in again.stdout
    out = cli("history", "export", "--history", hist)
    exported = [json.loads(line) for line in out.stdout.splitlines()]
    assert exported == [dict(r, build=str(r["build"])) for r in records]


def test_bad_lines_are_reported_by_number_and_good_ones_kept(cli, tmp_path):
    hist = str(tmp_path / "h.sqlite3")
    f = write_jsonl(tmp_path / "in.jsonl", [run(n=1)],
                    ["{not json", json.dumps(run(n=2) | {"exit_code": "zero"}), json.dumps(run(n=3))])
    result = cli("history", "import", str(f), "--history", hist)
    assert result.returncode == 1
    assert f"{f}:2: rejected: not JSON" in result.stderr
    assert f"{f}:3: rejected: exit_code: must be a number" in result.stderr
    assert "imported 2, already present 0, rejected 2" in result.stdout
    assert [r["run_id"] for r in map(json.loads, cli("history", "export", "--history", hist).stdout.splitlines())] \
        == ["train-1", "train-3"]


def test_a_line_that_is_not_utf8_is_rejected_alone(cli, tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_bytes(json.dumps(run(n=1)).encode() + b"\n\xff\xfe{}\n" + json.dumps(run(n=2)).encode() + b"\n")
    result = cli("history", "import", str(f), "--history", str(tmp_path / "h.sqlite3"))
    assert result.returncode == 1 and f"{f}:2: rejected: not UTF-8" in result.stderr
    assert "imported 2" in result.stdout


def test_import_from_stdin(cli, tmp_path):
    result = cli("history", "import", "-", "--history", str(tmp_path / "h.sqlite3"), input=json.dumps(run()) + "\n")
    assert result.returncode == 0 and "imported 1" in result.stdout


def test_show_lists_runs_and_unknown_job_is_a_clear_error(cli, tmp_path):
    hist = str(tmp_path / "h.sqlite3")
    f = write_jsonl(tmp_path / "in.jsonl", [run(n=1, cost_usd=0.5), run(n=2, exit_code=137, oom_killed=True)])
    cli("history", "import", str(f), "--history", hist)
    shown = cli("history", "show", "train", "--history", hist)
    assert shown.returncode == 0
    assert "OOM" in shown.stdout and "2 runs, 1 successful, total cost $0.50" in shown.stdout
    as_json = json.loads(cli("history", "show", "train", "--json", "--history", hist).stdout)
    assert [r["run_id"] for r in as_json] == ["train-1", "train-2"]
    missing = cli("history", "show", "nope", "--history", hist)
    assert missing.returncode == 2 and "no runs of job 'nope'" in missing.stderr and "known jobs: train" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_foreign_history_file_is_a_message_not_a_traceback(cli, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00garbage" * 500)
    result = cli("history", "show", "x", "--history", str(junk))
    assert result.returncode != 0 and "not a usable history store" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_is_a_usage_error(cli, tmp_path):
    result = cli("history", "import", str(tmp_path / "nope.jsonl"), "--history", str(tmp_path / "h"))
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_sigkill_during_import_leaves_all_or_none(tmp_path):
    hist = tmp_path / "h.sqlite3"
    n = 150_000
    with open(tmp_path / "big.jsonl", "w") as fh:
        for i in range(n):
            fh.write(json.dumps(run(n=i) | {"run_id": f"r{i}"}) + "\n")
    # a first, small import creates the store so the kill lands inside the big one's transaction
    write_jsonl(tmp_path / "one.jsonl", [run(n=0) | {"run_id": "seed"}])
    subprocess.run([provisioner_exe(), "history", "import", str(tmp_path / "one.jsonl"), "--history", str(hist)],
                   check=True, capture_output=True)
    proc = subprocess.Popen([provisioner_exe(), "history", "import", str(tmp_path / "big.jsonl"),
                             "--history", str(hist)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # kill once the import has started writing (the WAL grows), or after a bound
    wal = hist.with_name(hist.name + "-wal")
    deadline = time.monotonic() + 60
    base = wal.stat().st_size if wal.exists() else 0
    while time.monotonic() < deadline and proc.poll() is None:
        if wal.exists() and wal.stat().st_size > base + 1_000_000:
            break
        time.sleep(0.01)
    alive = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(hist) as conn:
        count = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert count in (1, n + 1)
    if alive:
        assert count == 1, "killed mid-transaction: none of the file's records may be there"


def test_show_and_export_do_not_create_a_store(cli, tmp_path):
    missing = tmp_path / "none.sqlite3"
    for args in (("history", "show", "x"), ("history", "export")):
        result = cli(*args, "--history", str(missing))
        assert result.returncode == 1 and "no history store at" in result.stderr
    assert not missing.exists()


def test_only_the_chosen_command_is_loaded_but_help_lists_all(cli):
    from provisioner.cli.main import COMMANDS, chosen_command
    assert chosen_command(["--history", "plan", "history", "show"]) == "history"
    assert chosen_command(["--config=x", "plan"]) == "plan"
    assert chosen_command(["--help"]) is None
    out = cli("--help").stdout
    assert all(name in out for name in COMMANDS)
