"""What differs on EC2 besides launch/describe/terminate (clouds.base.Cloud; Ec2Cloud inherits this):
how it is built from the config, the secret bundle handed over through SSM after the launch and
deleted when no instance will read it, the admin's extra tags, and the account's vCPU quotas."""

from __future__ import annotations

import threading
from typing import Any, Callable

from provisioner.clouds.base import BlockedOffers, CloudDefaults, CloudError, Forget, Handover, Instance
from provisioner.clouds.pacing import grouper
from provisioner.init_scripts import USER_DATA_LIMIT

SSM_DELETE_BATCH = 10            # DeleteParameters takes at most 10 names


class Ec2Seam(CloudDefaults):
    settings: Any                # Ec2Cloud's (resolved) Ec2Settings

    @classmethod
    def from_config(cls, config: Any, blocked: BlockedOffers, *, purpose: str = "daemon") -> Any:
        from provisioner.clouds.ec2_params import Ec2Settings
        settings = Ec2Settings.from_config(config.ec2, config.regions)
        if purpose == "run" and not (settings.images and any(settings.images.values())):
            raise CloudError("no image configured for ec2: set ec2.images.<region>.<x86_64|arm64|gpu_x86_64|"
                             "gpu_arm64|...> to the pre-warmed AMI (agent_bootstrap/packer)", code="Config",
                             kind="config")
        return cls(None, settings, blocked=blocked)                  # type: ignore[call-arg]

    user_data_limit = USER_DATA_LIMIT      # bytes of user-data before base64
    bundle_source = "ssm"                  # the bootstrap reads its bundle from SSM (secret_handover puts it)
    ships_logs = True                      # to CloudWatch Logs (agent/supervise.py), what `follower` reads

    @classmethod
    def secret_env(cls, bundle: dict) -> dict[str, str]:
        return {}                # the bundle goes to SSM after the launch (secret_handover)

    @classmethod
    def pinned_arches(cls, config: Any) -> frozenset[str]:
        from provisioner.intent import ec2_image_arches
        return ec2_image_arches(config.ec2)

    @classmethod
    def image_arches(cls, config: Any) -> tuple[frozenset[str] | None, str]:
        """Those with an AMI in `ec2.images` (a plain or GPU slot, in any region); none configured is
        unknown (None): the launch names the missing image."""
        arches = cls.pinned_arches(config)
        if not arches:
            return None, "ec2.images names no image: every architecture is planned"
        return arches, f"ec2.images has images for {', '.join(sorted(arches))}"

    def put_run_secrets(self, instance: Instance, parameter: str, bundle: dict) -> None:
        """The bundle as an SSM SecureString tagged with the instance's ARN (the instance polls for it)."""
        from provisioner import aws
        from provisioner import secret_bundle
        try:
            account = aws.client("sts", region=instance.region).get_caller_identity()["Account"]
            arn = f"arn:aws:ec2:{instance.region}:{account}:instance/{instance.id}"
            secret_bundle.put_ssm(aws.client("ssm", region=instance.region), parameter, bundle, arn)
        except Exception as exc:
            raise CloudError(f"cannot hand the secret bundle to {instance.id} via SSM: {type(exc).__name__}: {exc}",
                             code="SecretHandover", kind="auth") from None

    def forget_run_secrets(self, parameter: str, region: str) -> None:
        try:
            from provisioner import aws
            from provisioner import secret_bundle
            secret_bundle.delete_ssm(aws.client("ssm", region=region, max_attempts=2), parameter)
        except Exception:
            pass      # never there, or no credentials: nothing to clean

    def follower(self, instance: Instance, events: Any, tag: object, log_group: str) -> Any:
        """The instance's CloudWatch log stream, until the instance is gone."""
        from provisioner import aws
        from provisioner.remote.follow import CloudWatchFollower
        logs = aws.client("logs", region=instance.region)
        alive = lambda: any(i.id == instance.id for i in self.describe(instance.tags["provisioner:owner"]))  # noqa: E731
        return CloudWatchFollower(logs, log_group, instance.id, alive, events, tag).start()

    def secret_handover(self) -> tuple[Handover, Forget]:
        ssm = ssm_clients()
        return handover(ssm, account_ids()), cleanup(ssm)

    def next_build_handover(self) -> Any:
        from provisioner.clouds.ec2_nextbuild import SsmHandover
        return SsmHandover(ssm_clients(), account_ids())

    def launch_tags(self) -> dict[str, str]:
        return dict(self._configured.extra_tags)                     # type: ignore[attr-defined]

    @classmethod
    def vcpu_quotas(cls, regions: list[str], client_for: Callable[[str], Any] | None = None) -> Any:
        from provisioner import aws
        from provisioner.clouds.service_quotas import read_quotas
        return read_quotas(client_for or (lambda region: aws.client("service-quotas", region=region,
                                                                   max_attempts=2)), regions)

    @classmethod
    def runs(cls, config: Any) -> Any:
        from provisioner import aws
        from provisioner.remote.runs import Ec2Runs
        return Ec2Runs(config.regions, lambda service, region: aws.client(service, region=region))

    @classmethod
    def selector_problems(cls, config: Any, note: Callable[[str], None]) -> tuple[list, list[tuple[str, str]]]:
        """EC2 selectors (tags / name patterns) resolved with the Describe* calls the daemon makes.
        Without AWS credentials they are left for the daemon (a note)."""
        from provisioner.clouds.ec2_params import Ec2Settings
        from provisioner.clouds.ec2_selectors import has_selectors
        settings = Ec2Settings.from_config(config.ec2, config.regions)
        if not has_selectors(settings):
            return [], []
        try:
            return cls(settings=settings).resolve_selectors()[1], []               # type: ignore[call-arg]
        except CloudError as exc:
            if exc.kind == "auth":
                note(f"the ec2 selectors were not resolved here: {exc}")
                return [], []
            text = str(exc).removesuffix(f" [{exc.code}]")
            return [], [tuple(text.split(": ", 1)) if text.startswith("ec2.") else ("ec2", text)]  # type: ignore[list-item]

    @classmethod
    def existence_problems(cls, config: Any, note: Callable[[str], None]) -> list[tuple[str, str]]:
        """With credentials: the AMIs, subnets, security groups and instance profile (daemon/deepcheck.py)."""
        from provisioner import aws
        from provisioner.clouds.ec2_params import Ec2Settings
        from provisioner.daemon import deepcheck
        if not deepcheck.has_credentials():
            note("no AWS credentials here: the ec2 images, subnets, security groups and instance "
                 "profile were not checked")
            return []
        settings = Ec2Settings.from_config(config.ec2, config.regions)
        return deepcheck.ec2_problems(settings, lambda service, region: aws.client(service, region=region))


def ssm_clients() -> Callable[[str], Any]:
    """One SSM client per region, made on first use (a client costs ~0.2 s of CPU to make; a burst
    hands over dozens of bundles, from the launch pool's threads)."""
    from provisioner import aws
    clients: dict[str, Any] = {}
    lock = threading.Lock()

    def for_region(region: str) -> Any:
        with lock:
            if region not in clients:
                clients[region] = aws.client("ssm", region=region)
            return clients[region]
    return for_region


def account_ids() -> Callable[[], str]:
    """The account id, asked of STS once."""
    from provisioner import aws
    account: dict[str, str] = {}

    def account_id() -> str:
        if "id" not in account:
            account["id"] = aws.client("sts").get_caller_identity()["Account"]
        return account["id"]
    return account_id


def handover(ssm_for_region: Callable[[str], Any], account_id: Callable[[], str]) -> Handover:
    """After an EC2 launch: the bundle into an SSM SecureString named after the instance id (what
    the instance's bootstrap reads) and tagged with the instance's ARN (what its role may read)."""
    from provisioner import secret_bundle

    def put(instance: Instance, bundle: dict) -> None:
        arn = f"arn:aws:ec2:{instance.region}:{account_id()}:instance/{instance.id}"
        ssm = ssm_for_region(instance.region)
        try:
            secret_bundle.put_ssm(ssm, secret_bundle.parameter_name(instance.id), bundle, arn)
        except ssm.exceptions.ParameterAlreadyExists:
            pass                                 # put before (a restart): still waiting to be read
    return put


def cleanup(ssm_for_region: Callable[[str], Any]) -> Forget:
    """After terminating EC2 instances: delete the bundles none of them read, the first one's and a
    reused agent's next one (absent is fine)."""
    from provisioner import secret_bundle

    def forget(instances: list[Instance]) -> None:
        by_region: dict[str, list[str]] = {}
        for inst in instances:
            by_region.setdefault(inst.region, []).extend(
                (secret_bundle.parameter_name(inst.id), secret_bundle.next_parameter_name(inst.id)))
        for region, names in by_region.items():
            for batch in grouper(names, SSM_DELETE_BATCH):
                ssm_for_region(region).delete_parameters(Names=batch)
    return forget
