"""`provisioner run`: one container on the local Docker engine, with timeout, retry, clean stop,
timestamped live logs, usage sampling and a usage record.

Modules: `spec` (what to run, pure), `docker_args` (extra docker run parameters), `engine` (the
Engine API on the unix socket; `engine_create` its create request, `engine_sdk` the same calls over
the docker SDK), `images` (pull, ECR auth), `console` (header, log lines, summary), `sampler` /
`gpu` (usage), `owners` (labels and orphan removal), `container` (one attempt against the engine),
`session` (attempts, records, sinks), `cloudwatch` (the log sink; `cloudwatch_batch` its
request bodies).
"""

import os
from typing import Any

from provisioner.errors import ProvisionerError

EXIT_TIMEOUT = 124
EXIT_LAUNCH = 125
EXIT_OOM = 137
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class LaunchError(ProvisionerError):
    """A failure before the job ran: engine down, image not found, unreadable env file. Exit 125."""

    exit_code = EXIT_LAUNCH


# Start-up cost is part of every run (bench/runner_overhead.py): the two helpers below spare a run
# the uuid module (which imports platform) and the logging package, neither needed on its hot path.

def new_run_id() -> str:
    """A random (version 4) UUID as text, like str(uuid.uuid4())."""
    b = bytearray(os.urandom(16))
    b[6] = b[6] & 0x0F | 0x40  # version 4
    b[8] = b[8] & 0x3F | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class LazyLogger:
    """`logging.getLogger(name)`, looked up on first use: the runner logs only on unusual paths."""

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        import logging
        return getattr(logging.getLogger(self.name), attr)
