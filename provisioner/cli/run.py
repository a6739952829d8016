"""`provisioner run`: run one container on the local Docker engine, with timeout, retry, clean stop,
timestamped live logs, usage sampling, a usage record and an estimated cost."""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from typing import Any, Callable, Mapping

from provisioner.cli.context import Context
from provisioner.runner.options import after_record as _after_record  # noqa: F401 (moved; old names kept)
from provisioner.runner.options import build_spec, instance_ceiling as _instance_ceiling  # noqa: F401
from provisioner.errors import UsageError
from provisioner.units import parse_duration_s, parse_memory_gib, GIB

EPILOG = """\
exit codes: the container's own; 124 timeout; 137 killed for running out of memory (OOM);
130 interrupted by SIGINT; 143 by SIGTERM; 125 failure before the job ran (Docker engine
not reachable, image not found, unreadable env file); 2 bad option.

--docker-args accepts:
{docker_args}.

The cost needs the instance type: --instance-type, else PROVISIONER_INSTANCE_TYPE (and
PROVISIONER_MARKET, PROVISIONER_REGION, PROVISIONER_PRICE_USD_PER_HOUR) in the environment,
else EC2 instance metadata when running on EC2.

example: provisioner run --image python:3.11-slim --timeout 2h --memory 4G -- python train.py
"""


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A parse function as an argparse type: UsageError becomes argparse's exit-2 message."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _duration_or_zero(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0s") else parse_duration_s(text)


MAX_COUNT = 1000          # --retry, --max-concurrent: beyond this it is a typo, not a plan
MIN_CPUS, MAX_CPUS = 0.01, 4096.0   # Docker's smallest CPU quota; far above any host
MIN_MEMORY = 6 * 1024 ** 2          # Docker refuses a memory limit below 6 MiB


def _count(text: str) -> int:
    raw = text.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or int(raw) > MAX_COUNT:
        raise UsageError(f"expected a whole number from 0 to {MAX_COUNT}, got {text[:40]!r}")
    return int(raw)


def _cpus(text: str) -> float:
    try:
        value = float(text) if len(text) <= 40 else float("nan")
    except ValueError:
        value = float("nan")
    if not MIN_CPUS <= value <= MAX_CPUS:  # NaN fails both comparisons
        raise UsageError(f"bad --cpus {text[:40]!r}: use a number of vCPUs from {MIN_CPUS:g} "
                         f"to {MAX_CPUS:g}, e.g. 1.5")
    return value


def _memory_bytes(text: str) -> int:
    value = int(parse_memory_gib(text) * GIB)
    if value < MIN_MEMORY:  # 0 would mean "no limit" to Docker: never what the user wrote
        raise UsageError(f"bad memory limit {text[:40]!r}: at least 6 MiB (Docker's minimum)")
    return value


def _image(text: str) -> str:
    if not text.strip():  # an empty --image would silently mean the config's default
        raise UsageError("--image must not be empty")
    return text


def _fill(text: str, width: int) -> str:
    """Greedy word wrap (textwrap.fill's result for plain words; textwrap itself would be imported
    by every run just for the help text)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from provisioner.runner.docker_args import ALIASES, SUPPORTED
    from provisioner.runner.spec import parse_gpus, parse_volume
    short = {long: short for short, long in ALIASES.items()}
    names = ", ".join(f"{n}/{short[n]}" if n in short else n for n in SUPPORTED)
    p = sub.add_parser("run", parents=[common], help="run a container with timeout, retry, usage and cost",
                       description="Run one container on the local Docker engine, with timeout, "
                                   "retry, clean stop, timestamped live logs, usage sampling, a "
                                   "usage record and an estimated cost.",
                       epilog=EPILOG.format(docker_args=_fill(names, 90)),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage="%(prog)s [options] [--image IMAGE] -- COMMAND...")
    p.add_argument("--image", type=_arg(_image), help="the image (default: the config's defaults.image)")
    p.add_argument("--timeout", type=_arg(parse_duration_s), metavar="DURATION",
                   help="stop the container after this long, exit 124 (default: config, 6h)")
    p.add_argument("--grace", type=_arg(parse_duration_s), default=10.0, metavar="DURATION",
                   help="time between the stop signal and SIGKILL (default 10s)")
    p.add_argument("--retry", type=_arg(_count), default=0, metavar="N",
                   help="run again up to N times after a failure (see --retry-on)")
    p.add_argument("--retry-on", metavar="LIST",
                   help="comma-separated: exit codes (1, 3-5), oom, interrupted, timeout, any "
                        "(default any: every non-zero exit but a timeout)")
    p.add_argument("--retry-delay", type=_arg(_duration_or_zero), default=10.0, metavar="DURATION",
                   help="first delay before a retry, doubling each time (default 10s)")
    p.add_argument("-e", "--env", action="append", metavar="KEY[=VALUE]",
                   help="an environment variable (KEY alone passes this process's value)")
    p.add_argument("--env-file", action="append", metavar="FILE", help="docker-style env file")
    p.add_argument("-v", "--volume", action="append", type=_arg(parse_volume), metavar="SRC:DST[:MODE]")
    p.add_argument("-w", "--workdir", metavar="DIR")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]")
    p.add_argument("--gpus", type=_arg(parse_gpus), metavar="all|N|device=IDS")
    p.add_argument("-m", "--memory", type=_arg(_memory_bytes), metavar="SIZE",
                   help="memory limit: a number of GiB, or 512M, 2G (exceeding it: exit 137, OOM)")
    p.add_argument("--cpus", type=_arg(_cpus), metavar="N", help="CPU limit in vCPUs")
    p.add_argument("--network", default="none", metavar="MODE",
                   help="none (default), host, bridge or a network name")
    p.add_argument("--name", help="the container's name (default: the run's UUID)")
    p.add_argument("--container-label", action="append", metavar="KEY=VALUE")
    p.add_argument("--docker-args", action="append", metavar="ARGS",
                   help="extra docker run parameters, e.g. \"--shm-size 1g\" (subset below)")
    p.add_argument("--job", help="job name for the usage record (default: $JOB_NAME, else adhoc)")
    p.add_argument("--build", help="build id for the usage record (default: $BUILD_NUMBER)")
    p.add_argument("--summary-json", metavar="PATH",
                   help="write the final usage record plus summary_line to this file")
    p.add_argument("--instance-type", metavar="TYPE", help="price the run as this EC2 type")
    p.add_argument("--log-group", metavar="GROUP",
                   help="also send the output to this CloudWatch Logs group (stream = run UUID)")
    p.add_argument("--usage-s3", type=_arg(_s3_url), metavar="s3://BUCKET/PREFIX/",
                   help="also put the usage record at PREFIX/dt=YYYY-MM-DD/<run_id>.json (for a warehouse)")
    _remote_arguments(p)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="the command and its arguments, after --")
    p.set_defaults(func=handle)


def _price(text: str) -> float:
    from provisioner.cli.plan import _price as plan_price  # plan's own rule, imported only when used
    return plan_price(text)


def _remote_arguments(p: argparse.ArgumentParser) -> None:
    """`--remote` and its planning flags (provisioner/remote/run.py does the work)."""
    from provisioner.config import POLICIES
    g = p.add_argument_group("remote", "run on a freshly launched instance chosen like `provisioner plan`")
    g.add_argument("--remote", action="store_true",
                   help="plan, launch an instance, run the job there, stream its output, terminate it")
    g.add_argument("--cloud", choices=_clouds(), help="where to launch (default: the config's cloud)")
    g.add_argument("--filter", action="append", default=[], metavar="F",
                   help="a requirement such as vcpu>=8, mem>=16, gpu=a10g, spot (repeatable)")
    g.add_argument("--label", metavar="EXPR", help="a Jenkins label expression, e.g. 'ec2 && vcpu=8'")
    g.add_argument("--no-autotune", action="store_true", help="keep the declared vCPU and memory as hard limits")
    g.add_argument("--policy", choices=POLICIES, help="deadline (default), cheapest or fastest")
    g.add_argument("--region", action="append", metavar="R", help="region to consider (repeatable)")
    g.add_argument("--max-price", type=_price, metavar="USD", help="maximum price per hour")
    g.add_argument("--max-concurrent", type=_arg(_count), metavar="N",
                   help="wait while N instances of this job (by name) are running")
    g.add_argument("--detach", "-d", action="store_true",
                   help="return once the job printed its first line; see `provisioner ps`, `logs`, `stop`")
    g.add_argument("--sync", metavar="DIR",
                   help="ship DIR (minus its .provisionerignore) to the job's working directory "
                        "(default /work): EC2 through S3 (ec2.sync_s3), docker cloud as a copy")
    g.add_argument("--output", metavar="DIR",
                   help="bring back what the job writes to $PROVISIONER_OUTPUT_DIR (/outputs) into DIR")


REMOTE_ONLY = ("cloud", "label", "policy", "region", "max_price", "max_concurrent", "detach", "sync", "output")


def docker_engine(environ: Mapping[str, str]) -> Any:
    """The engine DOCKER_HOST names (provisioner/runner/engine.py: the unix socket directly, the
    docker SDK for anything else)."""
    from provisioner.runner import LaunchError
    from provisioner.runner.engine import connect
    try:
        return connect(environ)
    except Exception as exc:  # DockerException, connection refused, bad DOCKER_HOST
        raise LaunchError(f"Docker engine not reachable: {exc}") from None


def make_reporter(environ: Mapping[str, str], warn: Callable[[str], None]) -> Any:
    """The daemon reporter when PROVISIONER_REPORT_URL is set and provisioner.runner.daemon_client exists
    (it offers `reporter_from_env(environ)`); otherwise None, with a warning when a URL was given."""
    if not environ.get("PROVISIONER_REPORT_URL"):
        return None
    try:
        module = importlib.import_module("provisioner.runner.daemon_client")
        return module.reporter_from_env(environ)
    except (ImportError, AttributeError) as exc:
        warn(f"PROVISIONER_REPORT_URL is set but the daemon reporter is not available ({exc}); "
             "not reporting")
    except Exception as exc:
        warn(f"daemon reporter not started: {exc}")
    return None


def make_sink_factories(log_group: str | None, region: str | None,
                        warn: Callable[[str], None]) -> list[Callable[[str], Any]]:
    """One CloudWatch Logs sink per attempt (stream = run UUID) when --log-group is given."""
    if not log_group:
        return []
    try:
        from provisioner.runner.cloudwatch import CloudWatchSink
    except ImportError as exc:
        warn(f"--log-group given but the CloudWatch Logs sink is not available ({exc})")
        return []
    return [lambda run_id: CloudWatchSink(log_group, run_id, region=region)]


def handle(args: argparse.Namespace, ctx: Context) -> int:
    # Start-up cost matters (bench/runner_overhead.py): the imports run with the garbage collector
    # paused, then everything imported is frozen so that no collection rescans it during the run or
    # at exit. The docker SDK is not among them: the engine is spoken to directly (engine.py).
    gc.disable()
    try:
        import provisioner.runner.session  # noqa: F401
    finally:
        gc.enable()
    gc.freeze()
    try:
        if args.remote:
            from provisioner.remote.run import run_remote
            return run_remote(args, ctx)
        given = [f"--{n.replace('_', '-')}" for n in REMOTE_ONLY if getattr(args, n)]
        given += ["--filter"] * bool(args.filter) + ["--no-autotune"] * args.no_autotune
        if given:
            raise UsageError(f"{', '.join(given)} only make sense with --remote")
        return _handle(args, ctx)
    finally:
        gc.freeze()


def _s3_url(text: str) -> str:
    from provisioner.export import parse_s3_url
    parse_s3_url(text)
    return text


def _spool(location: str, record: dict) -> Any:
    from provisioner.history.spool import spool_record
    return spool_record(location, record)


def _handle(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.runner.console import Console
    from provisioner.runner.instance_price import resolve_pricing
    from provisioner.runner.retry import RetryPolicy, parse_retry_on
    from provisioner.runner.session import RunSession, Services
    from provisioner.runner.summary import JobInfo
    environ = os.environ
    policy = RetryPolicy(retries=args.retry, delay_s=args.retry_delay, **parse_retry_on(args.retry_on))
    spec = build_spec(args, ctx, environ)
    console = Console(sys.stdout, sys.stderr)
    job = JobInfo.from_env(args.job, args.build, environ, ctx.config.teams)
    region = environ.get("PROVISIONER_REGION") or (ctx.config.regions or ["us-east-1"])[0]
    reporter = make_reporter(environ, console.warn)
    services = Services(
        client=docker_engine(environ), console=console, store_factory=ctx.open_history,
        reporter=reporter, sink_factories=make_sink_factories(args.log_group, region, console.warn),
        on_record=_after_record(ctx, args.usage_s3, reporter is None, console.warn),
        spool=lambda record: _spool(ctx.history_location, record))
    pricing = resolve_pricing(args.instance_type, environ, default_region=region)
    outcome = RunSession(services).run(spec, job, policy, pricing, args.summary_json)
    return outcome.exit_code


def _clouds() -> tuple[str, ...]:
    """The clouds `--cloud` may name: the registered ones (clouds/registry.py)."""
    from provisioner.clouds import registry
    return registry.names()
