"""provisioner/sync.py: the tree a `--sync` ships (gitignore semantics of .provisionerignore), the
keys of a run, and a round trip through S3 on the moto server that keeps bytes and executable bits."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from provisioner import sync


def make_tree(root: Path) -> None:
    files = {
        "train.py": b"print('hi')\n",
        "run.sh": b"#!/bin/sh\necho run\n",
        "data/a.csv": b"1,2\n" * 1000,
        "data/cache/big.bin": os.urandom(4096),
        "data/keep.tmp": b"kept by a negation",
        "data/drop.tmp": b"ignored",
        "logs/today.log": b"ignored folder",
        "src/pkg/__pycache__/m.cpython-311.pyc": b"ignored anywhere",
        "src/pkg/m.py": b"x = 1\n",
        "nested/logs/deep.log": b"ignored: logs/ matches at any depth",
        sync.IGNORE_FILE: b"# comments and blank lines are fine\n\n__pycache__/\nlogs/\n*.tmp\n!data/keep.tmp\n"
                          b"/data/cache/\n",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "run.sh").chmod(0o755)


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_scan_honours_gitignore_semantics(tmp_path):
    make_tree(tmp_path)
    tree = sync.scan_for_sync(tmp_path)
    assert [e.rel for e in tree.files] == [
        ".provisionerignore", "data/a.csv", "data/keep.tmp", "run.sh", "src/pkg/m.py", "train.py"]
    assert tree.ignored == 5           # __pycache__/, logs/, nested/logs/, data/cache/, data/drop.tmp
    assert tree.total_bytes == sum((tmp_path / e.rel).stat().st_size for e in tree.files)
    assert sync.describe(tree) == f"6 files, {sync.human_size(tree.total_bytes)} (5 ignored by .provisionerignore)"


def test_no_ignore_file_ships_everything_and_links_to_folders_are_not_followed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "alias").symlink_to(tmp_path / "a" / "f")
    assert [e.rel for e in sync.scan_for_sync(tmp_path).files] == ["a/f", "alias"]


def test_not_a_directory_is_an_error_naming_it(tmp_path):
    with pytest.raises(sync.SyncError, match="not a directory"):
        sync.scan(tmp_path / "missing")


@pytest.mark.parametrize("key", ["runs/1/sync/../x", "runs/1/sync//etc/passwd", "runs/2/sync/x", "runs/1/sync/"],
                         ids=["dotdot", "absolute", "other-prefix", "empty"])
def test_a_key_never_lands_outside_its_folder(tmp_path, key):
    with pytest.raises(sync.SyncError):
        sync.local_path(tmp_path, "runs/1/sync/", key)


def test_keys_and_urls():
    assert sync.run_prefix("s3://b/team/", "abc") == "s3://b/team/runs/abc"
    assert sync.split_url("s3://b/team/runs/abc/sync/") == ("b", "team/runs/abc/sync/")
    assert sync.split_url("s3://b") == ("b", "")
    with pytest.raises(sync.SyncError):
        sync.split_url("https://b/x")


@pytest.mark.moto
def test_round_trip_through_s3_keeps_bytes_and_modes(moto_env, tmp_path, monkeypatch):
    from provisioner import aws
    monkeypatch.setattr(sync, "LARGE", 2048)       # the transfer manager's path too (big.bin, a.csv)
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)
    s3 = aws.client("s3", region="us-east-1")
    s3.create_bucket(Bucket="sync-bucket")
    tree = sync.scan(src)                           # no ignore spec: everything
    url = sync.run_prefix("s3://sync-bucket/p/", "r1") + "/sync/"
    assert sync.upload_tree(s3, tree, url) == tree.total_bytes
    files, size = sync.download_prefix(s3, url, dst)
    assert (files, size) == (len(tree.files), tree.total_bytes)
    assert digests(dst) == digests(src)
    assert os.access(dst / "run.sh", os.X_OK) and not os.access(dst / "train.py", os.X_OK)
    assert sync.delete_prefix(s3, "s3://sync-bucket/p/runs/r1/") == len(tree.files)
    assert sync.list_keys(s3, url) == []
