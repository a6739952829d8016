from provisioner.cli.main import main

raise SystemExit(main())
