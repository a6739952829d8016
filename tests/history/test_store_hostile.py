"""The history store under hostile input and failing disks (issue 13, item 10): bad lines are
rejected one by one and good ones kept; damaged, locked and read-only stores give one line naming
the store; creation is race-free; export is strict JSON."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.history import open_store
from provisioner.history import store as store_module
from provisioner.history.spool import spool_dirs, spool_record
from tests.factories import run

ROOT = Path(__file__).resolve().parents[2]


def one_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def good(n: int) -> str:
    return json.dumps(run("train", n))


def test_bad_lines_rejected_one_by_one_good_lines_kept(tmp_path, capsys):
    lines = [
        good(1),
        json.dumps(run("train", 2, exit_code=2 ** 63)),
        json.dumps(run("train", 3)).replace('"exit_code": 0', '"exit_code": 1e300'),
        json.dumps(run("train", 4)).replace('"job": "train"', '"job": "tr\\ud800ain"'),
        '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        json.dumps(run("train", 6)).replace('"cpu_avg_pct": 100', '"cpu_avg_pct": NaN'),
        json.dumps(run("train", 7) | {"extra": {"deep": "[" * 3}}).replace('"deep": "[[["', '"deep": NaN'),
        json.dumps(run("train", 8) | {"nest": 1}).replace('"nest": 1', '"nest": ' + "[" * 40 + "]" * 40),
        json.dumps(run("train", 9, duration=10 ** 400)) if sys.get_int_max_str_digits() > 400 else good(90),
        json.dumps(run("train", 10, exit_code=-(2 ** 31) - 1)),
        json.dumps(run("train", 11) | {"\ud800key": 1}),
        good(12),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    hist = tmp_path / "h.sqlite3"
    code = main(["--history", str(hist), "history", "import", str(src)])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    rejected = sorted(int(line.split(":")[1]) for line in err.splitlines() if ": rejected: " in line)
    assert rejected == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11], err
    assert "imported 2, already present 0, rejected 10" in out
    with open_store(str(hist), create=False) as store:
        assert sorted(r["build"] for r in store.runs("train")) == ["1", "12"]


def _damaged_store(tmp_path: Path) -> Path:
    """A store with a valid header page and garbage in the pages behind it."""
    hist = tmp_path / "damaged.sqlite3"
    with open_store(str(hist)) as store:
        store.add_many(run("train", n, image="x" * 2000) for n in range(200))
    size = hist.stat().st_size
    with open(hist, "r+b") as fh:
        fh.seek(4096)
        fh.write(bytes((i * 37 + 11) % 256 for i in range(size - 4096)))
    return hist


@pytest.mark.parametrize("argv", [
    ["history", "show", "train"], ["history", "export"], ["history", "import", "IN"],
    ["plan", "--job", "train"], ["report"],
], ids=["show", "export", "import", "plan", "report"])
def test_damaged_pages_give_one_line_naming_the_store(tmp_path, capsys, argv):
    hist = _damaged_store(tmp_path)
    src = tmp_path / "in.jsonl"
    src.write_text(good(500) + "\n")
    code = main(["--history", str(hist), *[str(src) if a == "IN" else a for a in argv]])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert str(hist) in one_error(err)


def test_lock_held_past_the_timeout_is_one_line_for_import(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.3)
    hist = tmp_path / "h.sqlite3"
    open_store(str(hist)).close()
    src = tmp_path / "in.jsonl"
    src.write_text(good(1) + "\n")
    holder = sqlite3.connect(str(hist), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        code = main(["--history", str(hist), "history", "import", str(src)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    out, err = capsys.readouterr()
    assert code == 1
    assert "locked" in one_error(err) and str(hist) in err
    assert main(["--history", str(hist), "history", "import", str(src)]) == 0  # nothing lost


def test_spooled_record_is_merged_by_the_next_command(tmp_path, capsys):
    hist = tmp_path / "h.sqlite3"
    open_store(str(hist)).close()
    where = spool_record(str(hist), run("train", 1))
    assert where.parent == spool_dirs(str(hist))[0] and where.exists()
    assert main(["--history", str(hist), "history", "show", "train", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [r["build"] for r in shown] == ["1"]
    assert not where.exists()


def test_spool_falls_back_to_the_state_directory(tmp_path):
    hist = tmp_path / "h.sqlite3"
    open_store(str(hist)).close()
    beside = spool_dirs(str(hist))[0]
    beside.write_text("a file where the spool folder would go")  # the folder cannot be made
    where = spool_record(str(hist), run("train", 2))
    assert where.parent == spool_dirs(str(hist))[1]
    with open_store(str(hist)) as store:
        assert [r["build"] for r in store.runs("train")] == ["2"]
    assert not where.exists()


def test_twenty_processes_creating_one_new_store_lose_nothing(tmp_path):
    hist = tmp_path / "new" / "h.sqlite3"
    # every process imports first, then all open the store at one agreed moment
    code = ("import sys, time\nfrom provisioner.history import open_store\nfrom tests.factories import run\n"
            "i, start_at = int(sys.argv[1]), float(sys.argv[3])\n"
            "time.sleep(max(0.0, start_at - time.time()))\n"
            "with open_store(sys.argv[2]) as s:\n"
            "    s.add_many(run('train', i * 5 + k) | {'run_id': f'r{i}-{k}'} for k in range(5))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start_at = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i), str(hist), start_at], cwd=ROOT,
                              env=env, stderr=subprocess.PIPE, text=True) for i in range(20)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [e for e in errors if e][:2]
    with open_store(str(hist)) as store:
        assert store.count() == 100


def _unshare_works() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs root and mount namespaces (CI runs as root)")
def test_read_only_store_can_be_shown_and_exported(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    hist = folder / "h.sqlite3"
    with open_store(str(hist)) as store:
        store.add_many([run("train", 1), run("train", 2)])
    script = (f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && "
              f"! touch {folder}/probe 2>/dev/null && "
              f"{sys.executable} -m provisioner --history {hist} history show train && "
              f"{sys.executable} -m provisioner --history {hist} history export && "
              f"{sys.executable} -m provisioner --history {hist} plan --job train >/dev/null")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 runs, 2 successful" in done.stdout
    exported = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["build"] for r in exported] == ["1", "2"]


def test_export_is_strict_json_even_for_a_stored_nan(tmp_path, capsys):
    hist = tmp_path / "h.sqlite3"
    with open_store(str(hist)) as store:
        store.add(run("train", 1))
    conn = sqlite3.connect(str(hist))  # as an older version could have stored it
    conn.execute("UPDATE runs SET record = ?", (json.dumps(run("train", 1) | {"x": float("nan")}),))
    conn.commit()
    conn.close()
    assert main(["--history", str(hist), "history", "export"]) == 0
    assert main(["--history", str(hist), "history", "show", "train", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()

    def strict(name):
        raise AssertionError(f"non-standard {name} in the output")
    assert json.loads(out[0], parse_constant=strict)["x"] is None
    assert json.loads(out[1], parse_constant=strict)[0]["x"] is None
