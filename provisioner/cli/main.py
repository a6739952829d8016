"""Entry point: global options, subcommands, and the mapping of errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from provisioner import __version__
from provisioner.cli.context import Context
from provisioner.errors import EXIT_USAGE, NoOfferError, ProvisionerError

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
    "output": "bring a remote run's --output folder back",
    "completion": "print a shell completion script (bash, zsh)",
}
_GLOBAL_WITH_VALUE = ("--config", "--history")


class ArgumentError(Exception):
    """A bad command line, raised by Parser.error instead of argparse's print-and-exit."""

    def __init__(self, parser: argparse.ArgumentParser, message: str):
        self.parser, self.message = parser, message
        super().__init__(message)


class Parser(argparse.ArgumentParser):
    """argparse that raises ArgumentError, so `main` reports every usage error in one place (as
    one JSON object under `--json`) and returns 2 rather than leaving by SystemExit."""

    def error(self, message: str):  # type: ignore[override]
        raise ArgumentError(self, message)


def non_empty(what: str):
    """An argparse type that refuses an empty or blank value (it would silently mean the default)."""
    def convert(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{what} must not be empty")
        return text
    convert.__name__ = what
    return convert


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
    common = Parser(add_help=False)
    # SUPPRESS: given before or after the subcommand, neither position overwrites the other.
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE", type=non_empty("--config"),
                        help="configuration file (default: $PROVISIONER_CONFIG, then "
                             "$XDG_CONFIG_HOME/provisioner/config.yaml)")
    common.add_argument("--history", default=argparse.SUPPRESS, metavar="PATH", type=non_empty("--history"),
                        help="history store: a SQLite path or a postgresql:// URL (default: $PROVISIONER_HISTORY, config "
                             "'history:', then $XDG_STATE_HOME/provisioner/history.sqlite3)")
    parser = Parser(
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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except ArgumentError as exc:
        return _usage_error(exc, argv)
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


def _usage_error(exc: ArgumentError, argv: list[str]) -> int:
    """argparse's own report (usage, then `prog: error: message`, exit 2); under `--json` of a
    command that prints JSON errors, one JSON object on stdout instead."""
    options = argv[:argv.index("--")] if "--" in argv else argv  # not the job's own arguments
    if "--json" in options:
        print(json.dumps({"error": exc.message, "constraint": None}))
    else:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc.message}", file=sys.stderr)
    return EXIT_USAGE


def _report(args: argparse.Namespace, exc: ProvisionerError, obj: dict) -> int:
    if getattr(args, "json", False) and getattr(args, "json_errors", False):
        print(json.dumps(obj))
    else:
        print(f"provisioner: error: {exc}", file=sys.stderr)
    return exc.exit_code
