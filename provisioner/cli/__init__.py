"""The `provisioner` command line: one module per command, each with `register(subparsers, common)`."""
