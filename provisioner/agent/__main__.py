"""`provisioner-agent COMMAND` (also `python3 -m provisioner.agent`): the bootstrap's helpers on the
instance. User-data and baked images call this console script, never module paths, so moving
modules never breaks an image.

  secrets --from-env [NAME] | --from-ssm NAME --region R   fetch the secret bundle into 0600 files
          | --for-instance ID --region R                    (the parameter named after instance ID)
  job -- RUN-OPTIONS -- COMMAND                             job mode: one `provisioner run`
  fetch-agent-jar JENKINS_URL OUT                           GET {JENKINS_URL}/jnlpJars/agent.jar
  plan-env                                                  shell exports that correct the plan
                                                            from instance metadata (EC2 only)
  watch [WATCHER-OPTIONS]                                   the spot/expiry/idle watcher
  check-version VERSION                                     exit 125 unless this is provisioner VERSION
  sync-down S3-URL DIR [--region R]                         the run's synced folder, before the job
  report-event --code CODE [--exit-code N] [--message M] [--log FILE]
                                                            the instance's own failure report to the
                                                            daemon (POST /v1/events); never fails

Exit codes: the job's own for `job`; 125 when a helper failed before the job ran (docs/contracts.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from pathlib import Path

EXIT_BEFORE_JOB = 125


def _state_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("PROVISIONER_STATE_DIR") or "/run/provisioner")


def cmd_secrets(a: argparse.Namespace) -> int:
    from provisioner import secret_bundle
    from provisioner.agent import secrets
    try:
        if a.for_instance is not None and not a.for_instance.strip():
            raise secret_bundle.SecretError("no instance id (instance metadata did not answer): cannot name "
                                      "the SSM parameter of this instance's bundle")
        name = secret_bundle.parameter_name(a.for_instance) if a.for_instance else a.from_ssm
        if name:
            from provisioner import aws
            client = aws.client("ssm", region=a.region)
            bundle = secrets.from_ssm(name, client, wait_s=a.wait)
        else:
            bundle = secrets.from_env(os.environ, a.from_env or secret_bundle.BUNDLE_ENV)
        written = secrets.write_files(bundle, _state_dir(a.state_dir))
    except (secret_bundle.SecretError, OSError) as exc:
        print(f"provisioner-agent: error: {exc}", file=sys.stderr)
        return EXIT_BEFORE_JOB
    except Exception as exc:  # boto errors (no credentials, access denied): name the kind only
        print(f"provisioner-agent: error: cannot read the secret bundle: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return EXIT_BEFORE_JOB
    print(f"provisioner-agent: secrets in place ({len(written)} files, mode 0600)", flush=True)
    return 0


def cmd_job(a: argparse.Namespace) -> int:
    from provisioner.agent.supervise import run_job
    args = list(a.run_args)
    if args and args[0] == "--":
        args = args[1:]
    return run_job(args, _state_dir(a.state_dir))


def cmd_fetch_agent_jar(a: argparse.Namespace) -> int:
    """Download agent.jar, retrying while the controller is not reachable yet."""
    url = a.jenkins_url.rstrip("/") + "/jnlpJars/agent.jar"
    target = Path(a.out)
    deadline = time.monotonic() + a.wait
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                data = resp.read()
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(target)
            print(f"provisioner-agent: agent.jar from {url} ({len(data)} bytes)", flush=True)
            return 0
        except OSError as exc:
            if time.monotonic() >= deadline:
                print(f"provisioner-agent: error: cannot download {url}: {exc}", file=sys.stderr)
                return EXIT_BEFORE_JOB
            time.sleep(2)


def cmd_plan_env(_: argparse.Namespace) -> int:
    """Print `export` lines for what instance metadata says (type, market, region, instance id)
    where it differs from the rendered plan; nothing where there is no metadata service."""
    import shlex
    from provisioner.agent.imds import Imds, ImdsError, resolve_url
    from provisioner.runner.instance_price import on_ec2
    url = resolve_url(os.environ, on_ec2)
    if not url:
        return 0
    try:
        imds = Imds(url)
        found = {"PROVISIONER_INSTANCE_ID": imds.get("instance-id"),
                 "PROVISIONER_INSTANCE_TYPE": imds.get("instance-type"),
                 "PROVISIONER_REGION": imds.get("placement/region")}
        life = imds.get("instance-life-cycle")
        found["PROVISIONER_MARKET"] = {"spot": "spot", "on-demand": "on-demand"}.get(life or "")
    except ImdsError as exc:
        print(f"provisioner-agent: warning: {exc}; keeping the rendered plan", file=sys.stderr)
        return 0
    changed = {k: v for k, v in found.items() if v and os.environ.get(k) != v}
    for key, value in changed.items():
        print(f"export {key}={shlex.quote(value)}")
    if {"PROVISIONER_INSTANCE_TYPE", "PROVISIONER_MARKET"} & changed.keys():
        print("unset PROVISIONER_PRICE_USD_PER_HOUR")   # the runner prices it from the catalog
    return 0


def cmd_check_version(a: argparse.Namespace) -> int:
    """The user-data was rendered by one provisioner version; the image must carry the same one, or
    the helpers' flags and the bundle's format may differ."""
    from provisioner import __version__
    if a.version != __version__:
        print(f"provisioner-agent: error: this image has provisioner {__version__}, but the user-data "
              f"was rendered by provisioner {a.version}: rebuild the image with provisioner {a.version} "
              "(agent_bootstrap/packer; on the docker cloud python -m provisioner.clouds.docker_image)",
              file=sys.stderr)
        return EXIT_BEFORE_JOB
    return 0


def cmd_sync_down(a: argparse.Namespace) -> int:
    """`run --remote --sync`: every object under the URL into DIR, with the instance role."""
    from provisioner import aws, sync
    try:
        files, size = sync.download_prefix(aws.client("s3", region=a.region), a.url, Path(a.dir))
    except Exception as exc:       # no credentials, access denied, a key escaping DIR: name it
        print(f"provisioner-agent: error: cannot read {a.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BEFORE_JOB
    print(f"provisioner-agent: synced folder in place ({files} files, {sync.human_size(size)})", flush=True)
    return 0


def cmd_report_event(a: argparse.Namespace) -> int:
    """POST the failure report to {PROVISIONER_REPORT_URL}/v1/events with the instance's token.
    Best effort (two tries, a few seconds): the instance shuts down after it whatever happens."""
    import json
    url, token = os.environ.get("PROVISIONER_REPORT_URL"), os.environ.get("PROVISIONER_REPORT_TOKEN")
    if not url or not token:
        return 0
    tail: list[str] = []
    if a.log:
        try:
            tail = Path(a.log).read_text(errors="replace").splitlines()[-20:]
        except OSError:
            pass
    body = json.dumps({"code": a.code, "exit_code": a.exit_code, "message": (a.message or "")[:500],
                       "log_tail": [line[:300] for line in tail]}).encode()
    request = urllib.request.Request(url.rstrip("/") + "/v1/events", data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    for attempt in range(2):
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                resp.read()
            return 0
        except OSError as exc:
            if attempt == 1:
                print(f"provisioner-agent: warning: the failure report did not reach the daemon: {exc}",
                      file=sys.stderr)
            else:
                time.sleep(1)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["watch"]:                     # the watcher parses its own options
        from provisioner.agent import watcher
        return watcher.main(args[1:])
    p = argparse.ArgumentParser(prog="provisioner-agent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("secrets", help="fetch the secret bundle into 0600 files")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-env", nargs="?", const="PROVISIONER_SECRETS", metavar="NAME")
    src.add_argument("--from-ssm", metavar="PARAMETER")
    src.add_argument("--for-instance", metavar="INSTANCE_ID",
                     help="SSM: the parameter named after this instance (agents of a batched launch)")
    s.add_argument("--region")
    s.add_argument("--wait", type=float, default=600.0, help="seconds to wait for the SSM parameter")
    s.add_argument("--state-dir")
    s.set_defaults(func=cmd_secrets)
    j = sub.add_parser("job", help="job mode: run one `provisioner run`")
    j.add_argument("--state-dir")
    j.add_argument("run_args", nargs=argparse.REMAINDER)
    j.set_defaults(func=cmd_job)
    f = sub.add_parser("fetch-agent-jar", help="download agent.jar from the controller")
    f.add_argument("jenkins_url")
    f.add_argument("out")
    f.add_argument("--wait", type=float, default=120.0)
    f.set_defaults(func=cmd_fetch_agent_jar)
    e = sub.add_parser("plan-env", help="exports correcting the plan from instance metadata")
    e.set_defaults(func=cmd_plan_env)
    sub.add_parser("watch", help="the spot, expiry and idle watcher (its options: watch --help)")
    r = sub.add_parser("recycle", help="agent reuse: clean up after a build, take the next bundle")
    r.add_argument("--work-dir", required=True)
    r.add_argument("--agent-user", help="the user builds run as (their processes are killed)")
    r.add_argument("--state-dir")
    r.set_defaults(func=lambda a: __import__("provisioner.agent.recycle", fromlist=["main"]).main(
        _state_dir(a.state_dir), Path(a.work_dir), a.agent_user))
    v = sub.add_parser("check-version", help="exit 125 unless this is provisioner VERSION")
    v.add_argument("version")
    v.set_defaults(func=cmd_check_version)
    d = sub.add_parser("sync-down", help="the run's synced folder from S3, before the job")
    d.add_argument("url")
    d.add_argument("dir")
    d.add_argument("--region")
    d.set_defaults(func=cmd_sync_down)
    r = sub.add_parser("report-event", help="report this instance's failure to the daemon")
    r.add_argument("--code", required=True, choices=("bootstrap-failed", "agent-exited"))
    r.add_argument("--exit-code", type=int)
    r.add_argument("--message")
    r.add_argument("--log", help="a log file whose last lines go with the report")
    r.set_defaults(func=cmd_report_event)
    a = p.parse_args(args)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
