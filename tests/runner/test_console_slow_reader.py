"""Every line of the job's output reaches a slow console, even when the job ended long before
(issue 13, item 5). On the real Docker engine; the console is a pipe read by a subprocess that
starts reading only well after the job's exit."""

from __future__ import annotations

import re
import subprocess
import sys

LINES = 20_000
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (\d+)$")

# Sleeps, then copies its stdin to its stdout in small slow reads.
SLOW_READER = """
import sys, time
time.sleep(float(sys.argv[1]))
while True:
    chunk = sys.stdin.buffer.read1(16384)
    if not chunk:
        break
    sys.stdout.buffer.write(chunk)
    time.sleep(0.002)
"""


def test_every_line_reaches_a_console_read_late_and_slowly(prun, busybox):
    job = subprocess.Popen(prun.argv("--image", busybox, "--", "sh", "-c", f"seq 1 {LINES}; exit 3"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=prun.env(None))
    reader = subprocess.Popen([sys.executable, "-c", SLOW_READER, "9"], stdin=job.stdout,
                              stdout=subprocess.PIPE)
    job.stdout.close()  # the reader holds the pipe now
    shown, _ = reader.communicate(timeout=180)
    err = job.communicate(timeout=60)[1].decode()
    assert job.returncode == 3, err
    numbers = [int(m.group(1)) for m in map(STAMPED.match, shown.decode().splitlines()) if m]
    assert numbers == list(range(1, LINES + 1)), (len(numbers), err)
    summary = prun.summary_json()
    assert summary["log_lines"] == LINES
    assert not summary.get("console_lines_dropped")
    assert prun.records()[0]["log_lines"] == LINES


def test_a_reader_that_goes_away_costs_no_exit_code_and_the_drop_is_counted(prun, busybox):
    job = subprocess.Popen(prun.argv("--image", busybox, "--", "sh", "-c", f"seq 1 {LINES}; exit 3"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=prun.env(None))
    head = subprocess.Popen(["head", "-n", "5"], stdin=job.stdout, stdout=subprocess.PIPE)
    job.stdout.close()
    head.communicate(timeout=60)
    err = job.communicate(timeout=120)[1].decode()
    assert job.returncode == 3, err
    summary = prun.summary_json()
    assert summary["log_lines"] == LINES  # the true count, shown or not
    assert 0 < summary["console_lines_dropped"] <= LINES
    assert f"{summary['console_lines_dropped']} lines of output not shown" in err
    assert "Traceback" not in err
