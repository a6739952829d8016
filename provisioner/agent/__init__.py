"""Job mode and agent mode on the instance: what runs there next to the rendered bootstrap
(agent_bootstrap/*.sh.j2), always through the `provisioner-agent COMMAND` console script
(`__main__`), never a module path, so moving a module never breaks an image.

`secrets` reads the secret bundle (provisioner/secret_bundle.py; EC2: an SSM SecureString read then
deleted; docker cloud: the container environment) into 0600 files; `supervise` runs the job-mode
`provisioner run` and hands its record back; `watcher` polls instance metadata (`imds`, IMDSv2) for
a spot interruption notice and enforces the maximum lifetime / idle limit, with `buildstart`,
`buildtree`, `buildusage` (a build's start and usage, agent mode), `procs`, `nextbuild` and
`recycle` (EC2 agent reuse); `markers` are the lines the launcher reads.
The launcher's side (`provisioner run --remote`) is provisioner/remote/.
"""
