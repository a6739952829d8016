"""Code and data that travel with a remote run: `run --remote --sync DIR` and `--output DIR`.

The pure half lists a tree (honouring `.provisionerignore`, gitignore syntax through `pathspec`),
names the S3 keys of a run (`<prefix>/runs/<transfer id>/sync/…` and `…/output/…`), and maps
keys back to paths without letting one escape its folder. The thin half moves files with an
injected S3 client, a pool of workers for many small files and the transfer manager for large ones.
Both the launcher (upload, then download of the outputs) and the instance (download before the job,
upload of its outputs after) use it; the instance never needs `pathspec` (nothing is ignored there).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

IGNORE_FILE = ".provisionerignore"
SYNC_MOUNT = "/work"                 # the job's working directory when --sync is given without -w
OUTPUT_MOUNT = "/outputs"            # where the job writes what --output brings back
OUTPUT_ENV = "PROVISIONER_OUTPUT_DIR"
WORKERS = 16                         # concurrent requests (aws s3 sync uses 10)
LARGE = 32 * 1024 * 1024             # from this size on: the multipart transfer manager
MODE_KEY = "mode"                    # object metadata: the file's permission bits (x survives)
MANIFEST = ".provisioner-outputs.json"   # under output/, put last by the instance: {"files": {rel: size}}


class SyncError(Exception):
    """A tree that cannot be shipped or fetched; the message names the file or key."""


@dataclass(frozen=True)
class Entry:
    rel: str            # POSIX path relative to the root
    size: int
    mode: int


@dataclass(frozen=True)
class Tree:
    root: Path
    files: tuple[Entry, ...]
    ignored: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.files)


def ignore_spec(root: Path) -> Any:
    """The root's `.provisionerignore` as a gitignore-style matcher, or None when there is none."""
    path = root / IGNORE_FILE
    if not path.is_file():
        return None
    import pathspec
    try:
        return pathspec.GitIgnoreSpec.from_lines(path.read_text().splitlines())
    except (ValueError, UnicodeDecodeError) as exc:
        raise SyncError(f"{path}: {exc}") from None


def scan(root: Path, spec: Any = None) -> Tree:
    """The regular files under `root` (symlinks to files are read through; links to folders are
    not followed), minus what `spec` ignores; ignored folders are not walked at all."""
    root = Path(root)
    if not root.is_dir():
        raise SyncError(f"{root}: not a directory")
    files: list[Entry] = []
    ignored = 0
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        rel_dir = here.relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        if spec is not None:
            kept = [d for d in dirs if not spec.match_file(prefix + d + "/")]
            ignored += len(dirs) - len(kept)
            dirs[:] = kept
        dirs.sort()
        for name in sorted(names):
            rel = prefix + name
            if spec is not None and spec.match_file(rel):
                ignored += 1
                continue
            try:
                info = (here / name).stat()
            except OSError:
                continue                          # a dangling link
            if stat.S_ISREG(info.st_mode):
                files.append(Entry(rel, info.st_size, stat.S_IMODE(info.st_mode)))
    return Tree(root, tuple(sorted(files, key=lambda e: e.rel)), ignored)


def scan_for_sync(root: Path) -> Tree:
    return scan(root, ignore_spec(Path(root)))


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def describe(tree: Tree) -> str:
    """E.g. `1,204 files, 35.2 MiB (17 ignored by .provisionerignore)`."""
    text = f"{len(tree.files):,} files, {human_size(tree.total_bytes)}"
    return text + (f" ({tree.ignored:,} ignored by {IGNORE_FILE})" if tree.ignored else "")


def run_prefix(base: str, transfer_id: str) -> str:
    """`s3://bucket/prefix/` (the config's ec2.sync_s3) -> `s3://bucket/prefix/runs/<id>`."""
    return f"{base.rstrip('/')}/runs/{transfer_id}"


def split_url(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> ('bucket', 'a/b/') (a key prefix ending in / or empty)."""
    if not url.startswith("s3://") or not url[5:].partition("/")[0]:
        raise SyncError(f"{url!r}: expected s3://BUCKET/PREFIX")
    bucket, _, prefix = url[5:].partition("/")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


def local_path(dest: Path, prefix: str, key: str) -> Path:
    """Where `key` (under `prefix`) lands in `dest`; a key that would leave `dest` is refused."""
    rel = PurePosixPath(key[len(prefix):])
    if not key.startswith(prefix) or rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise SyncError(f"object {key!r} does not belong under {dest}")
    return dest.joinpath(*rel.parts)


# ---- moving files (an S3 client is injected) ----------------------------------------------------

def _pool(work: Callable[[Any], int], items: Iterable[Any], workers: int) -> int:
    items = list(items)
    if not items:
        return 0
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        return sum(pool.map(work, items))


def upload_tree(s3: Any, tree: Tree, url: str, workers: int = WORKERS) -> int:
    """Put every file of `tree` under `url`; returns the bytes sent."""
    bucket, prefix = split_url(url)

    def put(entry: Entry) -> int:
        path = tree.root / entry.rel
        extra = {"Metadata": {MODE_KEY: f"{entry.mode:o}"}}
        if entry.size >= LARGE:
            s3.upload_file(str(path), bucket, prefix + entry.rel, ExtraArgs=extra)
        else:
            with open(path, "rb") as handle:
                s3.put_object(Bucket=bucket, Key=prefix + entry.rel, Body=handle.read(), **extra)
        return entry.size
    return _pool(put, tree.files, workers)


def list_keys(s3: Any, url: str) -> list[tuple[str, int]]:
    bucket, prefix = split_url(url)
    out: list[tuple[str, int]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [(o["Key"], int(o["Size"])) for o in page.get("Contents", [])]
    return out


def download_prefix(s3: Any, url: str, dest: Path, workers: int = WORKERS) -> tuple[int, int]:
    """Every object under `url` into `dest` (made if needed); returns (files, bytes)."""
    bucket, prefix = split_url(url)
    dest = Path(dest)
    keys = list_keys(s3, url)
    targets = [(key, size, local_path(dest, prefix, key)) for key, size in keys
               if not key.endswith("/") and key != prefix + MANIFEST]

    def get(item: tuple[str, int, Path]) -> int:
        key, size, path = item
        path.parent.mkdir(parents=True, exist_ok=True)
        if size >= LARGE:
            s3.download_file(bucket, key, str(path))
            mode = s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(MODE_KEY)
        else:
            response = s3.get_object(Bucket=bucket, Key=key)
            path.write_bytes(response["Body"].read())
            mode = response.get("Metadata", {}).get(MODE_KEY)
        if mode:
            try:
                path.chmod(int(mode, 8) & 0o777)
            except ValueError:
                pass
        return size
    dest.mkdir(parents=True, exist_ok=True)
    return len(targets), _pool(get, targets, workers)


def put_manifest(s3: Any, tree: Tree, url: str) -> None:
    """The instance's last word on its outputs: every file and its size, put after all of them, so a
    set without it (or with fewer or other files) is known to be incomplete."""
    bucket, prefix = split_url(url)
    body = json.dumps({"files": {e.rel: e.size for e in tree.files if e.rel != MANIFEST}}, sort_keys=True)
    s3.put_object(Bucket=bucket, Key=prefix + MANIFEST, Body=body.encode())


def read_manifest(s3: Any, url: str) -> dict[str, int] | None:
    """{rel: size} the instance put under `url`, or None when it has not (yet, or ever)."""
    bucket, prefix = split_url(url)
    try:
        body = s3.get_object(Bucket=bucket, Key=prefix + MANIFEST)["Body"].read()
    except Exception as exc:
        if (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    try:
        files = json.loads(body)["files"]
        return {str(k): int(v) for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SyncError(f"{url}{MANIFEST}: not a manifest of outputs") from None


def delete_prefix(s3: Any, url: str) -> int:
    bucket, _ = split_url(url)
    keys = [k for k, _ in list_keys(s3, url)]
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]],
                                                 "Quiet": True})
    return len(keys)


def copy_tree(tree: Tree, dest: Path) -> int:
    """The docker cloud's transfer: the same files, copied into a folder the instance mounts."""
    for entry in tree.files:
        target = Path(dest) / entry.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree.root / entry.rel, target)
        target.chmod(entry.mode)
    return tree.total_bytes
