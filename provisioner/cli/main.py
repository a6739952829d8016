"""Entry point: global options, subcommands, and the mapping of errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from provisioner import __version__
from provisioner.cli.context import Context
from provisioner.errors import NoOfferError, ProvisionerError

# Each is a module provisioner.cli.<name> with register(subparsers, common), and its one-line help.
# Only the command being run is imported (the others are listed by their help): `plan` and `run`
# start once per build, so every module they don't need is time saved.
COMMANDS = {
    "plan": "explain which instance a job would get",
    "catalog": "list offers or refresh prices from AWS",
    "history": "import, export and show usage records",
    "run": "run a container with timeout, retry, usage and cost",
    "report": "cost, memory, spot savings, incidents and right-sizing",
    "daemon": "provision ephemeral Jenkins agents for queued builds",
    "alerts": "test alert sinks; alert on recent runs and budgets",
    "ps": "list remote runs (running and recently finished)",
    "logs": "print a remote run's output (-f: until it ends)",
    "stop": "stop a remote run (its usage record is kept)",
    "attach": "follow a remote run; Ctrl-C stops it",
}
_GLOBAL_WITH_VALUE = ("--config", "--history")


def chosen_command(argv: list[str]) -> str | None:
    """The command named on the command line (the first word that is not a global option)."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in _GLOBAL_WITH_VALUE:
            skip = True
        elif not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given before or after the subcommand, neither position overwrites the other.
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                        help="configuration file (default: $PROVISIONER_CONFIG, then "
                             "$XDG_CONFIG_HOME/provisioner/config.yaml)")
    common.add_argument("--history", default=argparse.SUPPRESS, metavar="PATH",
                        help="history store: a SQLite path or a postgresql:// URL (default: $PROVISIONER_HISTORY, config "
                             "'history:', then $XDG_STATE_HOME/provisioner/history.sqlite3)")
    parser = argparse.ArgumentParser(
        prog="provisioner", parents=[common],
        description="Right-sized, cost-aware machines for Jenkins jobs, and what they cost.")
    parser.add_argument("--version", action="version", version=f"provisioner {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = chosen_command(sys.argv[1:] if argv is None else argv)
    for name, help_text in COMMANDS.items():
        if chosen is None or name == chosen:
            importlib.import_module(f"provisioner.cli.{name}").register(sub, common)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return args.func(args, Context(args)) or 0
    except NoOfferError as exc:
        return _report(args, exc, {"error": str(exc), "constraint": exc.constraint})
    except ProvisionerError as exc:
        return _report(args, exc, {"error": str(exc), "constraint": None})
    except KeyboardInterrupt:
        print("provisioner: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _report(args: argparse.Namespace, exc: ProvisionerError, obj: dict) -> int:
    if getattr(args, "json", False) and getattr(args, "json_errors", False):
        print(json.dumps(obj))
    else:
        print(f"provisioner: error: {exc}", file=sys.stderr)
    return exc.exit_code
