"""The remote-run client: what runs on the user's machine (the launcher) for `provisioner run
--remote` and for `ps`, `logs`, `stop`, `attach` and `output` on its runs.

`run` is the sequence of one remote run (plan, launch, wait until ready, follow, record, terminate);
`parts` its small steps (plan, cloud, bootstrap, secret bundle, tags, final record); `image_arch`
the architectures a job's image is built for; `follow` an instance's output and end as events (the
clouds' followers); `transfer` the `--sync` / `--output` folders; `output` brings outputs back;
`runs` lists the runs that go on by themselves. What runs on the instance is provisioner/agent/.
"""
