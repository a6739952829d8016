"""Entry point: global options, subcommands, and the mapping of errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from provisioner import __version__
from provisioner.cli.context import Context
from provisioner.errors import NoOfferError, ProvisionerError

# Each is a module provisioner.cli.<name> with register(subparsers, common). Keep their imports of
# heavy libraries (boto3, docker) inside functions: `plan` must start fast.
COMMANDS = ("plan", "catalog", "history", "run", "report", "daemon", "alerts")


def build_parser() -> argparse.ArgumentParser:
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
    for name in COMMANDS:
        importlib.import_module(f"provisioner.cli.{name}").register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
