"""`provisioner output RUN [DIR]`: bring the outputs of a remote run started with `--output` back,
once it ended: into DIR, or by default into the --output folder it was launched with (on the
launching machine). `attach` and `logs -f` do the same when the run ends; this is for a run
followed from elsewhere, or not followed at all."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from provisioner.cli.context import Context
from provisioner.cli.ps import add_cloud_option, guarded

EPILOG = """\
The outputs are what the job wrote to $PROVISIONER_OUTPUT_DIR. They are brought back only as a
complete set (EC2: every file the instance listed after uploading them), through a hidden folder
next to DIR; files already in DIR with the same names are replaced. Bringing them into the
launcher's own --output folder ends the run's transfer (its S3 objects or host folder are removed);
doing it again says they are already there. Exit 0 when done, 1 when the run has not ended or its
outputs are incomplete or gone, 2 for an unknown run or one started without --output.
"""


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("output", parents=[common], help="bring a remote run's --output folder back",
                       description="Bring the outputs of a remote run started with --output back, once it ended.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_id", metavar="RUN", help="the run id (a unique prefix will do)")
    p.add_argument("dir", metavar="DIR", nargs="?", type=Path,
                   help="where to put them (default: the --output folder of the launch, on the machine that "
                        "launched it)")
    add_cloud_option(p)
    p.set_defaults(func=run_output)


@guarded
def run_output(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.remote import output as remote_output
    from provisioner.cli.logs import resolve
    from provisioner.errors import UsageError
    backend, run = resolve(args, ctx)
    out = remote_output.of_run(run, run.owner == _owner())
    if out is not None and args.dir is None and out.dest is None:
        raise UsageError(f"run {run.run_id} was launched from another machine: name the folder "
                         f"(provisioner output {run.run_id} DIR); its outputs are at {out.where}")
    return remote_output.bring_back(backend, run, args.dir, lambda text: print(text, file=sys.stderr, flush=True),
                                    explicit=True)


def _owner() -> str:
    from provisioner.remote.runs import owner_id
    return owner_id()
