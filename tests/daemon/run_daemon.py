"""`python -m tests.daemon.run_daemon`: the real daemon (wiring.build + Daemon.run) over the fake
process cloud, as a separate process the robustness tests can SIGKILL and restart."""

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
from tests.daemon.fakes import ProcessCloud, small_catalog


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--history", required=True)
    p.add_argument("--cloud-dir", required=True)
    p.add_argument("--agent-jar", required=True)
    p.add_argument("--owner", default="t")
    p.add_argument("--launch-delay", type=float, default=0.0)
    p.add_argument("--once", action="store_true", help="one tick, then exit (0: it observed)")
    p.add_argument("--real-cloud", action="store_true", help="the config's cloud (docker), not the fake")
    p.add_argument("--ec2-moto", help="the ec2 cloud against this moto server, with --ec2-settings (JSON)")
    p.add_argument("--ec2-settings", default="{}")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    config = parse_config(Path(args.config).read_text(), args.config)
    cloud = None if args.real_cloud else ProcessCloud(Path(args.cloud_dir), config.section("jenkins")["url"],
                                                      Path(args.agent_jar), launch_delay_s=args.launch_delay)
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
