"""`provisioner daemon`: Jenkins queue -> ephemeral agents, metrics and the agent API.

    provisioner daemon [--once] [--listen HOST:PORT]
    provisioner daemon --check [CONFIG]      # validate and exit: 0 valid, 2 invalid

Credentials come from the environment (`jenkins.token_env`, default JENKINS_TOKEN) or a file
(`jenkins.token_file`), never from the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from provisioner.errors import ConfigError, UsageError

log = logging.getLogger("provisioner.daemon")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("daemon", parents=[common], help="provision ephemeral Jenkins agents for queued builds",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", nargs="?", const="", default=None, metavar="CONFIG",
                   help="validate the configuration (CONFIG, else the one --config/PROVISIONER_CONFIG "
                        "finds) and exit: 0 valid, 2 invalid")
    p.add_argument("--once", action="store_true", help="run one tick, then exit")
    p.add_argument("--listen", metavar="HOST:PORT", type=_listen, help="HTTP address (default: config daemon.listen)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.set_defaults(func=run)


def _listen(text: str) -> str:
    """HOST:PORT with a port from 0 to 65535 (the config's own rule), checked before anything starts."""
    from provisioner.config import _listen as listen_problem
    problem = listen_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def check(path: str | None) -> int:
    """Validate a configuration file; every problem named by key and line (exit 2)."""
    from provisioner.config import load_config, parse_config, read_config_text
    if path:
        config = parse_config(read_config_text(path), path)
    else:
        config = load_config(None)
    problems = daemon_problems(config)
    resolved = []
    if not problems:
        resolved, more = _selector_problems(config)
        problems += more
    if not problems:
        problems += _existence_problems(config)
    if problems:
        raise ConfigError(config.path or "<defaults>", problems)
    for r in resolved:
        named = f" ({r.detail})" if r.detail else ""
        print(f"{r.path}: {r.selector.describe()} -> {', '.join(r.ids)}{named}")
    token_env = config.jenkins.token_env
    if not config.jenkins.token_file and not os.environ.get(token_env or ""):
        print(f"note: ${token_env} is not set here; the daemon needs it (or jenkins.token_file)", file=sys.stderr)
    print(f"{config.path or '<built-in defaults>'}: valid")
    return 0


def daemon_problems(config) -> list[tuple[str, int | None, str]]:
    """What the daemon needs beyond the schema (lines come from the file when the key is there)."""
    j = config.jenkins
    problems = []
    lines = _KeyLines(config)
    if not j.url:
        problems.append(("jenkins.url", lines.get("jenkins"), "is required for the daemon"))
    if j.token_file and not Path(j.token_file).expanduser().is_file():
        problems.append(("jenkins.token_file", lines.get("jenkins.token_file"), "no such file"))
    if j.token_file or os.environ.get(j.token_env or ""):
        if not j.user:
            problems.append(("jenkins.user", lines.get("jenkins"), "is required with an API token"))
    return problems


class _KeyLines:
    """`lines.get(path)`: the line where the loaded file gives the key (provisioner.yamlfile)."""

    def __init__(self, config) -> None:
        self.config = config

    def get(self, path: str) -> int | None:
        return self.config.line(path) if self.config.path else None


def _selector_problems(config) -> tuple[list, list[tuple[str, int | None, str]]]:
    """The cloud's look-ups (EC2 selectors: tags / name patterns) resolved as the daemon would:
    (what each matched, problems)."""
    from provisioner.clouds import registry
    found, problems = registry.adapter(config.cloud).selector_problems(config, _note)
    return found, [(path, config.line(path), message) for path, message in problems]


def _existence_problems(config) -> list[tuple[str, int | None, str]]:
    """What the configuration names must exist (daemon/deepcheck.py): the docker cloud's instance
    image with java and the bootstrap; on EC2, with credentials, AMIs, subnets, security groups and
    the instance profile."""
    from provisioner.clouds import registry
    found = registry.adapter(config.cloud).existence_problems(config, _note)
    return [(key, config.line(key), message) for key, message in found]


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def read_token(j) -> str | None:
    """The API token (`j`: config.jenkins): the file (jenkins.token_file) if set, else the environment variable."""
    if j.token_file:
        try:
            return Path(j.token_file).expanduser().read_text().strip() or None
        except OSError as exc:
            raise UsageError(f"jenkins.token_file: cannot read {j.token_file}: {exc.strerror}") from None
    return os.environ.get(j.token_env or "", "").strip() or None


def run(args: argparse.Namespace, ctx) -> int:
    if args.check is not None:
        return check(args.check or getattr(args, "config", None))
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    problems = daemon_problems(ctx.config)
    if problems:
        raise ConfigError(ctx.config.path or "<defaults>", problems)
    from provisioner.daemon.wiring import build
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())          # finish the tick in progress, then exit
    owner = ctx.config.daemon.owner_id or socket.gethostname()
    parts = build(ctx.config, ctx.history_location, read_token(ctx.config.jenkins),
                  owner=owner, listen=args.listen)
    try:
        return parts.daemon.run(stop, once=args.once)
    finally:
        parts.close()
