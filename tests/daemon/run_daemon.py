"""`python -m tests.daemon.run_daemon`: the real daemon (wiring.build + Daemon.run) over the config's
cloud (`cloud: process`: the tests' process cloud, registered here as tests/daemon/conftest.py does),
as a separate process the robustness tests can SIGKILL and restart."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from provisioner.config import parse_config
from provisioner.daemon.wiring import build
from tests.daemon.fakes import register_process_cloud, small_catalog


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--history", required=True)
    p.add_argument("--owner", default="t")
    p.add_argument("--once", action="store_true", help="one tick, then exit (0: it observed)")
    p.add_argument("--real-cloud", action="store_true", help="(the config's cloud is always the one built)")
    p.add_argument("--ec2-moto", help="the ec2 cloud against this moto server, with --ec2-settings (JSON)")
    p.add_argument("--ec2-settings", default="{}")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    register_process_cloud()
    config = parse_config(Path(args.config).read_text(), args.config)
    cloud = None                                  # the config's cloud, built by clouds/registry.py
    if args.ec2_moto:
        from provisioner.clouds.ec2 import Ec2Cloud
        from provisioner.clouds.ec2_params import Ec2Settings
        from tests.clouds.conftest import REGION, moto_client_factory
        cloud = Ec2Cloud(moto_client_factory(args.ec2_moto),
                         Ec2Settings.from_config(json.loads(args.ec2_settings), regions=[REGION]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parts = build(config, args.history, os.environ["JENKINS_TOKEN"], owner=args.owner, cloud=cloud,
                  catalog=small_catalog())
    print(f"listening {parts.http.url}", flush=True)
    try:
        return parts.daemon.run(stop, once=args.once)
    finally:
        parts.close()


if __name__ == "__main__":
    sys.exit(main())
