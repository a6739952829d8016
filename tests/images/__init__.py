"""Local test images built without a registry (the engine builds them here), cached by tag so a suite builds them once.

- busybox: Debian's static busybox plus its applet symlinks, `docker import`ed (~0.2 s, 2 MB).
- python: the system Debian python3.11, its standard library and the shared libraries `ldd` lists,
  plus busybox for `sh` (~3 s, ~50 MB).

Use from tests (`busybox_image(client)`), or build both from a shell: `python -m tests.images`.
A recipe change bumps RECIPE, which changes the tags, so stale images are never reused.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path

RECIPE = "1"
BUSYBOX_TAG = f"provisioner-test/busybox:{RECIPE}"
PYTHON_TAG = f"provisioner-test/python:3.11-{RECIPE}"

BUSYBOX = Path("/usr/bin/busybox")
PYTHON = Path("/usr/bin/python3.11")
PYLIB = Path("/usr/lib/python3.11")
# Large parts of the standard library no test image needs.
_SKIP_DIRS = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
              "site-packages", "dist-packages"}
_SKIP_DYNLOAD = re.compile(r"^(_test|_xxtest|xxlimited|_ctypes_test)")


def _exists(client, tag: str) -> bool:
    import docker.errors
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _add_busybox(tar: tarfile.TarFile) -> None:
    """/bin/busybox and a symlink per applet (sh, sleep, cat, ...), plus /tmp."""
    tar.add(str(BUSYBOX), arcname="bin/busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for name in applets:
        if name == "busybox":
            continue
        info = tarfile.TarInfo(f"bin/{name}")
        info.type, info.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(info)
    for folder in ("tmp", "proc", "sys", "dev", "etc"):
        info = tarfile.TarInfo(folder)
        info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
        tar.addfile(info)


def _import(client, tag: str, fill) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        fill(tar)
    repo, _, version = tag.rpartition(":")
    client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=version,
                                      changes=['ENV PATH=/usr/local/bin:/usr/bin:/bin'])
    return tag


def busybox_image(client) -> str:
    """The busybox test image's tag, built if missing."""
    if not _exists(client, BUSYBOX_TAG):
        _import(client, BUSYBOX_TAG, _add_busybox)
    return BUSYBOX_TAG


def _shared_libs(binaries: list[Path]) -> set[Path]:
    libs: set[Path] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        for m in re.finditer(r"(/\S+\.so[^\s]*)", out):
            libs.add(Path(m.group(1)))
    return libs


def _add_python(tar: tarfile.TarFile) -> None:
    _add_busybox(tar)
    tar.add(str(PYTHON), arcname="usr/bin/python3.11")
    for alias in ("python3", "python"):
        info = tarfile.TarInfo(f"usr/bin/{alias}")
        info.type, info.linkname = tarfile.SYMTYPE, "python3.11"
        tar.addfile(info)
    dynload = [p for p in (PYLIB / "lib-dynload").glob("*.so") if not _SKIP_DYNLOAD.match(p.name)]

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if len(parts) > 3 and parts[3] in _SKIP_DIRS:
            return None
        if parts[-1].endswith(".so") and _SKIP_DYNLOAD.match(parts[-1]):
            return None
        return info

    tar.add(str(PYLIB), arcname=str(PYLIB).lstrip("/"), filter=keep)
    for lib in sorted(_shared_libs([PYTHON, *dynload])):
        tar.add(str(lib.resolve()), arcname=str(lib).lstrip("/"))


def python_image(client) -> str:
    """The python test image's tag (Debian python3.11 with json, hashlib ...), built if missing."""
    if not _exists(client, PYTHON_TAG):
        _import(client, PYTHON_TAG, _add_python)
    return PYTHON_TAG


RUNTIME_STUB_TAG = f"provisioner-test/runtime-stub:{RECIPE}"


def _add_runtime_stubs(tar: tarfile.TarFile) -> None:
    """busybox plus `java` and `provisioner-agent` commands that only say who they are: an image
    `daemon --check` finds complete without the cost of a real instance image."""
    _add_busybox(tar)
    for path in ("usr/bin/java", "usr/local/bin/provisioner-agent"):
        script = f"#!/bin/sh\necho stub {path}\n".encode()
        info = tarfile.TarInfo(path)
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))


def runtime_stub_image(client) -> str:
    """An image with stand-ins for the agent's runtime (java) and the bootstrap (provisioner-agent)."""
    if not _exists(client, RUNTIME_STUB_TAG):
        _import(client, RUNTIME_STUB_TAG, _add_runtime_stubs)
    return RUNTIME_STUB_TAG
