"""Build the docker cloud's instance image (`provisioner-agent:latest`) without a registry.

The image is a base image with a Python 3.11 (the tests use the Debian python imported by
`python -m tests.images`; on-premises users may name any, e.g. python:3.11-slim) plus:
provisioner itself and the few libraries `provisioner run` needs on an instance, copied from this
interpreter's installation (no download), a `provisioner` command, and optionally a small Java
runtime (jlink) and agent.jar for agent mode. The build is skipped when an image with the same
recipe hash (base image id, sources, library versions, options) already carries the tag.

    python -m provisioner.clouds.docker_image --base provisioner-test/python:3.11-1 [--java] [--agent-jar FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

RECIPE = "5"
DEFAULT_TAG = "provisioner-agent:latest"
SITE = "opt/provisioner/site"
# What `provisioner run`, the watcher and the helpers import on an instance (boto3 is left out:
# the docker cloud has no AWS; EC2 instances get the full install from the Packer recipe).
DISTRIBUTIONS = ("docker", "requests", "urllib3", "idna", "charset-normalizer", "certifi", "psutil",
                 "PyYAML", "Jinja2", "MarkupSafe")
# --aws: what the EC2 helpers add (secrets from SSM, --sync from S3, logs to CloudWatch), for an
# image that plays an EC2 instance in a container (the tests, against moto and a metadata stub).
AWS_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six")
JAVA_MODULES = ("java.base,java.logging,java.management,java.naming,java.net.http,java.xml,"
                "java.desktop,java.instrument,java.sql,jdk.unsupported,jdk.crypto.ec,jdk.zipfs")
RECIPE_LABEL = "provisioner:recipe"


def _package_files(aws: bool = False) -> Iterator[tuple[Path, str]]:
    """(source, path in the image) for the provisioner package and each library."""
    import provisioner
    root = Path(provisioner.__file__).resolve().parent
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path, f"{SITE}/provisioner/{path.relative_to(root).as_posix()}"
    for name in DISTRIBUTIONS + (AWS_DISTRIBUTIONS if aws else ()):
        dist = metadata.distribution(name)
        for entry in dist.files or ():
            parts = Path(str(entry)).parts
            if not parts or parts[0] == ".." or "__pycache__" in parts:
                continue                       # console scripts outside site-packages; caches
            source = Path(str(dist.locate_file(entry)))
            if source.is_file():
                yield source, f"{SITE}/{Path(str(entry)).as_posix()}"


# The image's commands: `provisioner` and the bootstrap's stable entry point `provisioner-agent`.
LAUNCHERS = {"provisioner": 'exec python3 -m provisioner "$@"',
             "provisioner-agent": 'exec python3 -m provisioner.agent "$@"'}


def _digest(files: list[tuple[Path, str]], base_id: str, java: bool, agent_jar: Path | None) -> str:
    h = hashlib.sha256(f"{RECIPE}|{base_id}|{java}|{JAVA_MODULES if java else ''}".encode())
    for source, target in files:
        h.update(target.encode() + b"\0" + source.read_bytes())
    if agent_jar:
        h.update(agent_jar.read_bytes())
    return h.hexdigest()[:20]


def _jre(cache: Path) -> Path:
    """A jlink'ed Java runtime with the modules agent.jar uses, built once per machine."""
    jlink = shutil.which("jlink")
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "jlink").exists():
        jlink = str(Path(java_home, "bin", "jlink"))
    if not jlink:
        raise RuntimeError("--java needs a JDK (jlink) on this machine")
    target = cache / f"jre-{hashlib.sha256(JAVA_MODULES.encode()).hexdigest()[:10]}"
    if not (target / "bin" / "java").exists():
        tmp = Path(tempfile.mkdtemp(dir=cache))
        subprocess.run([jlink, "--add-modules", JAVA_MODULES, "--strip-debug", "--no-header-files",
                        "--no-man-pages", "--compress=1", "--output", str(tmp / "jre")], check=True)
        os.replace(tmp / "jre", target)
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _shared_libs(binaries: list[Path]) -> set[Path]:
    import re
    libs: set[Path] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        libs.update(Path(m.group(1)) for m in re.finditer(r"=> (/\S+)", out))
    return libs


def _missing_in(client: Any, base: str, libs: set[Path]) -> list[Path]:
    """The shared libraries the base image lacks (only those are added: the base's own C library
    must never be replaced by this machine's)."""
    if not libs:
        return []
    script = "for f in " + " ".join(sorted(map(str, libs))) + '; do [ -e "$f" ] || echo "$f"; done'
    out = client.containers.run(base, ["/bin/sh", "-c", script], remove=True, network_mode="none",
                                entrypoint=[])
    return [Path(line) for line in out.decode().split()]


def _context(files: list[tuple[Path, str]], base: str, digest: str, jre: Path | None,
             agent_jar: Path | None, libs: list[Path]) -> bytes:
    # Byte-compiled in the image: every instance is a fresh container, and compiling provisioner and
    # the docker SDK on each boot would add about a second to every remote run.
    # The catalog's joined table is cached too (the runner prices the job from it).
    dockerfile = [f"FROM {base}", "COPY root/ /", f"ENV PYTHONPATH=/{SITE} XDG_CACHE_HOME=/var/cache/xdg",
                  f"RUN python3 -m compileall -q -j 0 /{SITE} >/dev/null || true",
                  "RUN python3 -c 'from provisioner.catalog import load_catalog; load_catalog()' || true"]
    if jre is not None:
        dockerfile.append("ENV PATH=/opt/java/bin:/usr/local/bin:/usr/bin:/bin")
    dockerfile.append(f'LABEL "{RECIPE_LABEL}"="{digest}"')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = ("\n".join(dockerfile) + "\n").encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for source, target in files:
            tar.add(str(source), arcname=f"root/{target}", recursive=False)
        for command, line in LAUNCHERS.items():
            script = f"#!/bin/sh\n{line}\n".encode()
            info = tarfile.TarInfo(f"root/usr/local/bin/{command}")
            info.size, info.mode = len(script), 0o755
            tar.addfile(info, io.BytesIO(script))
        if jre is not None:
            tar.add(str(jre), arcname="root/opt/java")
        for lib in libs:
            tar.add(str(lib.resolve()), arcname=f"root{lib}")
        if agent_jar is not None:
            tar.add(str(agent_jar), arcname="root/usr/share/provisioner/agent.jar")
    return buf.getvalue()


def build_agent_image(client: Any, *, base: str, tag: str = DEFAULT_TAG, java: bool = False,
                      agent_jar: Path | None = None, cache: Path | None = None, aws: bool = False) -> str:
    """Build (or find) the instance image; returns the tag."""
    import docker.errors
    base_id = client.images.get(base).id
    files = list(_package_files(aws))
    digest = _digest(files, base_id, java, agent_jar)
    try:
        if (client.images.get(tag).labels or {}).get(RECIPE_LABEL) == digest:
            return tag
    except docker.errors.ImageNotFound:
        pass
    cache = cache or Path(tempfile.gettempdir()) / f"provisioner-image-{os.getuid()}"
    cache.mkdir(parents=True, exist_ok=True)
    jre = _jre(cache) if java else None
    binaries = [source for source, _ in files if source.name.endswith(".so")]
    if jre is not None:
        binaries += [jre / "bin" / "java", *jre.rglob("*.so")]
    needed = {lib for lib in _shared_libs(binaries) if not (jre and str(lib).startswith(str(jre)))}
    context = _context(files, base, digest, jre, agent_jar, _missing_in(client, base, needed))
    client.images.build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, rm=True,
                        forcerm=True, pull=False)
    return tag


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m provisioner.clouds.docker_image", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="an image with python3 (3.11) and /bin/sh")
    p.add_argument("--tag", default=DEFAULT_TAG)
    p.add_argument("--java", action="store_true", help="add a Java runtime for agent mode")
    p.add_argument("--agent-jar", type=Path, help="bake this agent.jar in (else downloaded at boot)")
    p.add_argument("--aws", action="store_true", help="add boto3 (an image that plays an EC2 instance)")
    a = p.parse_args(argv)
    import docker
    print(build_agent_image(docker.from_env(), base=a.base, tag=a.tag, java=a.java, agent_jar=a.agent_jar,
                            aws=a.aws))
    return 0


if __name__ == "__main__":
    sys.exit(main())
