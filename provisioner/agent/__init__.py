"""Job mode and agent mode: what runs on an instance next to the rendered bootstrap
(agent_bootstrap/*.sh.j2), and the launcher's side of job mode.

On the instance (`python3 -m provisioner.agent COMMAND`, `python3 -m provisioner.agent.watcher`):
`secrets` fetches the secret bundle (EC2: an SSM SecureString read then deleted; docker cloud: the
container environment) into 0600 files; `supervise` runs the job-mode `provisioner run` and hands
its record back; `watcher` polls instance metadata (`imds`, IMDSv2) for a spot interruption notice
and enforces the maximum lifetime / idle limit; `markers` are the lines the launcher reads.
On the launcher (`provisioner run --remote`, provisioner/remote.py): `launcher` (plan, bootstrap,
secrets, record of one remote run) and `follow` (an instance's output and end as events).
`image` builds the docker cloud's instance image without a registry.
"""
