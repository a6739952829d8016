"""`provisioner run`: one container on the local Docker engine, with timeout, retry, clean stop,
timestamped live logs, usage sampling and a usage record.

Modules: `spec` (what to run, pure), `docker_args` (extra docker run parameters), `images` (pull,
ECR auth), `console` (header, log lines, summary), `sampler` / `gpu` (usage), `owners` (labels and
orphan removal), `container` (one attempt against the engine), `session` (attempts, records, sinks).
"""

from provisioner.errors import ProvisionerError

EXIT_TIMEOUT = 124
EXIT_LAUNCH = 125
EXIT_OOM = 137
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class LaunchError(ProvisionerError):
    """A failure before the job ran: engine down, image not found, unreadable env file. Exit 125."""

    exit_code = EXIT_LAUNCH
