"""Job mode on the instance: run one `provisioner run`, hand its record back, return its exit code.

The bootstrap starts `python3 -m provisioner.agent job -- RUN-OPTIONS -- COMMAND`. This adds what
only the instance knows (the job's environment file from the secret bundle, the summary path, the
docker cloud's CPU and memory limits, so the job container inherits the instance's), prints the
ready marker, runs `provisioner run` with the job's output passing straight through (on the docker
cloud the container logs are the stream), and finally prints the record and exit markers. On EC2,
when PROVISIONER_LOG_GROUP is set, every line is also shipped to CloudWatch Logs, stream = the
instance id, which is where `run --remote` reads it. SIGTERM / SIGINT are passed to the runner,
which stops the job container with its grace and records `interrupted`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, TextIO

from provisioner.agent import markers
from provisioner.agent.secrets import JOB_ENV_FILE

MIB = 1024 * 1024
SUMMARY_FILE = "summary.json"
PID_FILE = "job.pid"


def runner_argv(run_args: list[str], state_dir: Path, environ: Mapping[str, str]) -> list[str]:
    """`provisioner run` with the instance's additions inserted before the command's `--`."""
    options, command = (run_args[:run_args.index("--")], run_args[run_args.index("--"):]) \
        if "--" in run_args else (list(run_args), [])
    extra = ["--env-file", str(state_dir / JOB_ENV_FILE), "--summary-json", str(state_dir / SUMMARY_FILE)]
    # The docker cloud's instance limits are a ceiling for the job container (it is a sibling on the
    # host's engine, so it would not inherit them otherwise); a smaller request of the job's own wins.
    cpus_limit = _number(environ.get("PROVISIONER_CPUS"))
    if cpus_limit:
        asked = _number(_option(options, "--cpus"))
        options = _drop_option(options, ("--cpus",))
        extra += ["--cpus", f"{min(cpus_limit, asked) if asked else cpus_limit:g}"]
    mem_limit = _number(environ.get("PROVISIONER_MEMORY"))
    if mem_limit:
        asked_text = _option(options, "--memory") or _option(options, "-m")
        limit = int(mem_limit)
        if asked_text:
            from provisioner.units import GIB, parse_memory_gib
            limit = min(limit, int(parse_memory_gib(asked_text) * GIB))
        options = _drop_option(options, ("--memory", "-m"))
        extra += ["--memory", f"{max(limit // MIB, 6)}M"]        # docker's minimum is 6 MiB
    extra += job_folders(environ)
    return [sys.executable, "-m", "provisioner", "run", *options, *extra, *command]


def job_folders(environ: Mapping[str, str]) -> list[str]:
    """`run --remote --sync/--output`: the bootstrap's folders mounted into the job (the synced
    tree at its working directory, the output folder with its path in PROVISIONER_OUTPUT_DIR)."""
    root = environ.get("PROVISIONER_SYNC_ROOT")
    if not root:
        return []
    out: list[str] = []
    if environ.get("PROVISIONER_SYNC_MOUNT"):
        out += ["--volume", f"{root}/work:{environ['PROVISIONER_SYNC_MOUNT']}"]
    if environ.get("PROVISIONER_OUTPUT_MOUNT"):
        mount = environ["PROVISIONER_OUTPUT_MOUNT"]
        out += ["--volume", f"{root}/output:{mount}", "--env", f"PROVISIONER_OUTPUT_DIR={mount}"]
    return out


def upload_outputs(environ: Mapping[str, str], emit: Any) -> None:
    """EC2: put the job's output folder to PROVISIONER_OUTPUT_S3 with the instance role. Before
    the record and exit lines: on the exit line the launcher terminates the instance."""
    url, root = environ.get("PROVISIONER_OUTPUT_S3"), environ.get("PROVISIONER_SYNC_ROOT")
    if not url or not root:
        return
    from provisioner import aws, sync
    try:
        tree = sync.scan(Path(root) / "output")
        tree = sync.Tree(tree.root, tuple(e for e in tree.files if e.rel != sync.MANIFEST))
        s3 = aws.client("s3", region=environ.get("PROVISIONER_REGION"))
        sync.upload_tree(s3, tree, url)
        sync.put_manifest(s3, tree, url)             # last: the set is complete
        emit(f"provisioner-agent: outputs: {sync.describe(tree)} to {url}")
    except Exception as exc:           # the job's exit code stands
        emit(f"provisioner-agent: warning: outputs not uploaded to {url}: {type(exc).__name__}: {exc}")


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _option(options: list[str], name: str) -> str | None:
    for i, token in enumerate(options):
        if token == name and i + 1 < len(options):
            return options[i + 1]
        if token.startswith(name + "="):
            return token[len(name) + 1:]
    return None


def _drop_option(options: list[str], names: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for token in options:
        if skip:
            skip = False
        elif token in names:
            skip = True
        elif not any(token.startswith(n + "=") for n in names):
            out.append(token)
    return out


def final_record(state_dir: Path) -> dict | None:
    """The runner's summary (its usage record), marked interrupted when the watcher stopped it."""
    try:
        record = json.loads((state_dir / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    for reason in ("interrupted", "expired", "idle"):
        if (state_dir / reason).exists():
            record["interrupted"] = True
            record["stopped_by"] = "spot" if reason == "interrupted" else reason
    return record


class _Tee:
    """Copies a child's stream to ours and to a log sink, line by line."""

    def __init__(self, source: Any, target: TextIO, sink: Any):
        self.thread = threading.Thread(target=self._run, args=(source, target, sink), daemon=True)
        self.thread.start()

    @staticmethod
    def _run(source: Any, target: TextIO, sink: Any) -> None:
        for raw in iter(source.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            target.write(line + "\n")
            target.flush()
            sink.write(time.time(), line)


def _sink(environ: Mapping[str, str]) -> Any:
    """A CloudWatch sink (stream = instance id) with PROVISIONER_LOG_GROUP (the bootstrap sets it on a
    cloud that ships logs: Cloud.ships_logs, EC2), else None."""
    group = environ.get("PROVISIONER_LOG_GROUP")
    if not group:
        return None
    instance_id = environ.get("PROVISIONER_INSTANCE_ID")
    if not instance_id:
        from provisioner.agent.imds import Imds, resolve_url
        from provisioner.runner.instance_price import on_ec2
        url = resolve_url(environ, on_ec2)
        instance_id = Imds(url).get("instance-id") if url else None
    from provisioner.runner.cloudwatch import CloudWatchSink
    return CloudWatchSink(group, instance_id or "unknown-instance", region=environ.get("PROVISIONER_REGION"))


def run_job(run_args: list[str], state_dir: Path, environ: Mapping[str, str] = os.environ,
            out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        sink = _sink(environ)
    except Exception as exc:  # logs are not worth failing the job for
        err.write(f"provisioner-agent: warning: CloudWatch Logs not available: {exc}\n")
        sink = None

    def emit(line: str) -> None:
        out.write(line + "\n")
        out.flush()
        if sink is not None:
            sink.write(time.time(), line)

    argv = runner_argv(run_args, state_dir, environ)
    pipe = subprocess.PIPE if sink is not None else None
    emit(markers.READY)
    proc = subprocess.Popen(argv, stdout=pipe, stderr=pipe)
    (state_dir / PID_FILE).write_text(f"{proc.pid}\n")
    # Signals for us (the bootstrap's trap, or the watcher) go to the runner, which stops its job.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _f: _forward(proc, s))
    tees = [_Tee(proc.stdout, out, sink), _Tee(proc.stderr, err, sink)] if sink is not None else []
    code = proc.wait()
    for tee in tees:
        tee.thread.join(5)
    upload_outputs(environ, emit)
    record = final_record(state_dir)
    if record is not None:
        emit(markers.record_line(record))
    emit(markers.exit_line(code))
    if sink is not None:
        sink.close(10)
    return code


def _forward(proc: subprocess.Popen, signum: int) -> None:
    try:
        proc.send_signal(signum)
    except OSError:
        pass
