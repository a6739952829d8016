"""The launcher's side of `run --remote --sync DIR --output DIR` (provisioner/sync.py moves files).

Checked before anything is planned (exit 2): `-v` on EC2 (the instance cannot see this machine's
folders), a sync folder that is not one, EC2 without `ec2.sync_s3`. Before the first launch the
tree goes to S3 under `<ec2.sync_s3>/runs/<id>/sync/` (EC2; the instance role reads it) or is
copied into a host folder the instance mounts (docker cloud). After a foreground run the outputs
come back into `--output` and the run's S3 objects are deleted; a detached run carries where its
outputs are and go (tags / labels, and the launcher's state dir: provisioner/remote/output.py), and
`attach`, `logs -f` or `provisioner output` bring them back once it ended.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner import sync
from provisioner.clouds import registry
from provisioner.errors import UsageError

SYNC_S3_KEY = "ec2.sync_s3"


@dataclass
class Transfer:
    cloud: str
    sync_dir: Path | None
    output_dir: Path | None
    mount: str | None                 # the synced folder's path in the job (its working directory)
    base_url: str | None = None       # EC2: s3://bucket/prefix/runs/<id>
    stage: Path | None = None         # docker cloud: host folder holding work/ and output/
    region: str | None = None
    run_id: str | None = None         # the launch being followed (the last one tried)

    @property
    def sync_url(self) -> str | None:
        return f"{self.base_url}/sync/" if self.base_url and self.sync_dir else None

    @property
    def output_url(self) -> str | None:
        return f"{self.base_url}/output/" if self.base_url and self.output_dir else None

    def bootstrap_fields(self) -> dict[str, Any]:
        """BootstrapSpec keywords: where the instance finds the tree and puts the outputs."""
        return {"sync_s3": self.sync_url, "output_s3": self.output_url,
                "sync_root": str(self.stage) if self.stage else None,
                "sync_mount": self.mount if self.sync_dir else None,
                "output_mount": sync.OUTPUT_MOUNT if self.output_dir else None}

    @property
    def output_where(self) -> str | None:
        """Where the instance leaves the outputs: the S3 prefix, or the host folder (docker)."""
        if self.output_dir is None:
            return None
        return self.output_url or (str(self.stage / "output") if self.stage else None)

    def launched(self, run_id: str) -> dict[str, str]:
        """A launch of this run: recorded here, and the tags that carry it with the run."""
        from provisioner.remote import output as remote_output
        self.run_id = run_id
        where = self.output_where
        if where is None:
            return {}
        remote_output.note(run_id, self.cloud, where, self.output_dir)
        return remote_output.tags(where, self.output_dir)

    def _s3(self) -> Any:
        from provisioner import aws
        return aws.client("s3", region=self.region)

    def send(self, console: Any) -> None:
        """Ship the tree (EC2: S3; docker: a host copy); raises SyncError."""
        if registry.adapter(self.cloud).on_this_host:        # docker: a host folder the job mounts
            self.stage = Path(tempfile.mkdtemp(prefix="provisioner-sync-"))
            self.stage.chmod(0o755)
            (self.stage / "work").mkdir(parents=True, exist_ok=True)
            (self.stage / "output").mkdir(mode=0o777, exist_ok=True)
            (self.stage / "output").chmod(0o1777)            # the job may run as any user
        if self.sync_dir is None:
            return
        tree = sync.scan_for_sync(self.sync_dir)
        where = self.sync_url or f"the instance ({self.mount})"
        console.info(f"Syncing {self.sync_dir}: {sync.describe(tree)} to {where}")
        if self.stage is not None:
            sync.copy_tree(tree, self.stage / "work")
        else:
            sync.upload_tree(self._s3(), tree, self.sync_url or "")

    def receive(self, kind: str, console: Any) -> None:
        """After the run: outputs into --output (a detached run: say how they will come back)."""
        from provisioner.remote import output as remote_output
        if kind not in ("done", "detached"):        # nothing ran: only clean up
            self._clean()
            return
        if kind == "detached":
            if self.output_dir is not None:
                run = self.run_id or "RUN"
                console.info(f"  outputs: {self.output_where} once the run ended; `provisioner attach {run}` or "
                             f"`provisioner logs -f {run}` bring them into {self.output_dir} "
                             f"(or later: provisioner output {run})")
            return
        try:
            if self.output_dir is not None:
                where = self.output_where or ""
                if self.stage is not None:
                    files, size = remote_output.fetch_folder(self.stage / "output", self.output_dir,
                                                             self.run_id or "run")
                    console.info(f"Outputs: {files} files into {self.output_dir}")
                else:
                    files, size = remote_output.fetch_s3(self._s3(), where, self.output_dir, self.run_id or "run")
                    console.info(f"Outputs: {files} files, {sync.human_size(size)} from "
                                 f"{where} into {self.output_dir}")
                if self.run_id:
                    remote_output.mark_fetched(self.run_id, self.output_dir)
        except Exception as exc:          # the job's exit code stands; say what is missing (and keep it)
            where = self.output_url or (self.stage / "output" if self.stage else "")
            console.warn(f"outputs not fetched from {where}: {type(exc).__name__}: {exc}")
            return
        self._clean()

    def _clean(self) -> None:
        """The run's transfer is over: its S3 objects and host folder go."""
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
        if self.base_url:
            try:
                sync.delete_prefix(self._s3(), self.base_url + "/")
            except Exception:
                pass          # no rights or no bucket: a lifecycle rule on the prefix cleans up


def plan_transfer(args: argparse.Namespace, cloud_name: str, config: Any) -> Transfer | None:
    """The transfer this run asks for, or None; UsageError (exit 2) before anything is launched."""
    volumes = list(getattr(args, "volume", None) or ())
    if volumes and not registry.adapter(cloud_name).on_this_host:
        raise UsageError(f"-v/--volume {volumes[0]} cannot work with --remote on EC2 (the instance does not "
                         "see this machine's folders): ship a folder with --sync DIR, bring results back "
                         "with --output DIR")
    sync_dir = getattr(args, "sync", None)
    output_dir = getattr(args, "output", None)
    if not sync_dir and not output_dir:
        return None
    if sync_dir:
        sync_dir = Path(sync_dir).expanduser().resolve()
        if not sync_dir.is_dir():
            raise UsageError(f"--sync {args.sync}: not a directory")
    if output_dir:
        output_dir = Path(output_dir).expanduser().resolve()
        if output_dir.exists() and not output_dir.is_dir():
            raise UsageError(f"--output {args.output}: exists and is not a directory")
    mount = args.workdir or sync.SYNC_MOUNT
    if registry.adapter(cloud_name).on_this_host:
        return Transfer(cloud_name, sync_dir, output_dir, mount)
    base = config.ec2.sync_s3
    if not base:
        raise UsageError(f"--sync/--output on EC2 go through S3: set {SYNC_S3_KEY} (s3://BUCKET/PREFIX/) "
                         "in the config (docs/remote-runs.md)")
    try:
        sync.split_url(base)
    except sync.SyncError as exc:
        raise UsageError(f"{SYNC_S3_KEY}: {exc}") from None
    regions = list(getattr(config, "regions", None) or []) or [None]
    return Transfer("ec2", sync_dir, output_dir, mount, base_url=sync.run_prefix(base, str(uuid.uuid4())),
                    region=regions[0])
