"""`provisioner daemon --check` beyond the schema: do the things the configuration names exist?

* docker cloud: the instance image is on the engine and has the agent's runtime (`java`, or
  `$PROVISIONER_JAVA`) and the bootstrap's helper (`provisioner-agent`), checked by running
  `/bin/sh` in a throw-away container of it (no network, removed at once).
* EC2, when AWS credentials are at hand: every configured AMI, subnet and security group id (ids
  written as such; tag/name selectors are resolved by the selector check) and the instance
  profile exist, in each configured region.

Each problem is (config key, message); the command prints one line per problem and exits 2.
"""

from __future__ import annotations

from typing import Any, Callable

Problem = tuple[str, str]
PROBE = ('command -v "${PROVISIONER_JAVA:-java}" >/dev/null 2>&1 || echo "no-java"; '
         'command -v provisioner-agent >/dev/null 2>&1 || echo "no-agent"')


def docker_problems(image: str, client: Any = None) -> list[Problem]:
    """The instance image exists and carries java and provisioner-agent."""
    import docker
    import docker.errors
    key = "docker.instance_image"
    try:
        client = client or docker.from_env()
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return [(key, f"the image {image} is not on this Docker engine (build it with "
                      "`python -m provisioner.clouds.docker_image --java`)")]
    except docker.errors.DockerException as exc:
        return [(key, f"cannot check the image {image}: the Docker engine is not reachable ({exc})")]
    try:
        out = client.containers.run(image, [], entrypoint=["/bin/sh", "-c", PROBE], remove=True,
                                    network_mode="none", stderr=True).decode(errors="replace").split()
    except docker.errors.DockerException as exc:
        return [(key, f"the image {image} cannot run /bin/sh (the bootstrap needs it): "
                      f"{getattr(exc, 'explanation', None) or exc}"[:300])]
    problems = []
    if "no-java" in out:
        problems.append((key, f"the image {image} has no java (the Jenkins agent needs a Java runtime: "
                              "build it with `python -m provisioner.clouds.docker_image --java`)"))
    if "no-agent" in out:
        problems.append((key, f"the image {image} has no provisioner-agent command (the bootstrap's "
                              "helper: build it with `python -m provisioner.clouds.docker_image`)"))
    return problems


def has_credentials() -> bool:
    import boto3
    try:
        return boto3.session.Session().get_credentials() is not None
    except Exception:                    # noqa: BLE001 - a broken profile: leave it to the daemon
        return False


def _literal(value: Any, prefix: str) -> str | None:
    return value if isinstance(value, str) and value.startswith(prefix) else None


def ec2_problems(settings: Any, client: Callable[[str, str], Any]) -> list[Problem]:
    """`settings`: Ec2Settings; `client(service, region)`: a boto3 client (moto in tests)."""
    from botocore.exceptions import ClientError
    problems: list[Problem] = []

    def exists(call: Callable[[], Any], key: str, what: str) -> None:
        try:
            call()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "NotFound" in code or "NoSuchEntity" in code or "Malformed" in code or "Invalid" in code:
                problems.append((key, f"{what} does not exist ({code})"))
            else:
                problems.append((key, f"cannot check {what}: {code or exc}"))

    for region in settings.regions:
        ec2 = client("ec2", region)
        for subnet in settings.subnets_in(region):
            if (sid := _literal(subnet, "subnet-")):
                exists(lambda sid=sid: ec2.describe_subnets(SubnetIds=[sid]), "ec2.subnets",
                       f"subnet {sid} in {region}")
        for group in settings.security_groups_in(region):
            if (gid := _literal(group, "sg-")):
                exists(lambda gid=gid: ec2.describe_security_groups(GroupIds=[gid]), "ec2.security_groups",
                       f"security group {gid} in {region}")
        for slot, image in sorted((settings.images.get(region) or {}).items()):
            if (ami := _literal(image, "ami-")):
                def image_call(ami: str = ami) -> None:
                    if not ec2.describe_images(ImageIds=[ami]).get("Images"):
                        raise ClientError({"Error": {"Code": "InvalidAMIID.NotFound"}}, "DescribeImages")
                exists(image_call, f"ec2.images.{region}.{slot}", f"image {ami} in {region}")
    profile = settings.instance_profile
    if profile:
        name = profile.rsplit("/", 1)[-1] if profile.startswith("arn:") else profile
        iam = client("iam", settings.regions[0])
        exists(lambda: iam.get_instance_profile(InstanceProfileName=name), "ec2.instance_profile",
               f"instance profile {name}")
    return problems
