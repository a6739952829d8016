"""`provisioner completion bash|zsh`: a shell completion script for every command and option,
generated from the argument parser itself (shtab), so it never drifts from `--help`."""

from __future__ import annotations

import argparse

from provisioner.cli.context import Context

HELP = """\
install (bash):  provisioner completion bash > ~/.local/share/bash-completion/completions/provisioner
install (zsh):   provisioner completion zsh > "${fpath[1]}/_provisioner"   (then restart the shell)
or for the current shell only:  source <(provisioner completion bash)
"""


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("completion", parents=[common], help="print a shell completion script",
                       description="Print a completion script for bash or zsh.", epilog=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace, ctx: Context) -> int:
    import shtab

    from provisioner.cli.main import build_parser
    print(shtab.complete(build_parser([]), shell=args.shell), end="")
    return 0
