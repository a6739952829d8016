"""The pure parts of provisioner/remote/output.py: the tags that carry a run's outputs (a value too
long for EC2 stays local), which destination counts (the launcher's record first; the destination tag
only on the launching machine), the fetch record, and a folder's outputs moved in only as a set."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.remote import output as remote_output
from tests.remote.test_remote_runs_core import view

URL = "s3://b/provisioner/runs/9b1e/output/"


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def test_tags_carry_where_and_the_destination_unless_too_long_for_ec2():
    assert remote_output.tags(URL, Path("/home/me/results")) == {
        "provisioner:output": URL, "provisioner:output-dest": "/home/me/results"}
    long_dest = Path("/home/me/" + "x" * 300)
    assert remote_output.tags(URL, long_dest) == {"provisioner:output": URL}
    assert remote_output.tags(URL, None) == {"provisioner:output": URL}


def test_the_launchers_record_wins_and_a_foreign_destination_tag_is_ignored():
    tags = remote_output.tags(URL, Path("/their/results"))
    assert remote_output.of_run(view(tags=tags), here=False).dest is None
    assert remote_output.of_run(view(tags=tags), here=True).dest == Path("/their/results")
    assert remote_output.of_run(view(tags={}), here=True) is None          # started without --output
    long_dest = Path("/home/me/" + "x" * 300)
    remote_output.note("4f0c9a2e-1", "ec2", URL, long_dest)
    found = remote_output.of_run(view(tags={"provisioner:output": URL}), here=True)
    assert (found.where, found.dest, found.cloud) == (URL, long_dest, "docker")
    assert remote_output.of_run(view(run_id="other", tags={}), here=True) is None


def test_fetches_are_recorded_per_run_and_folder():
    assert remote_output.fetched_into("r1") == set()
    remote_output.mark_fetched("r1", Path("/a b/results"))
    remote_output.mark_fetched("r2", Path("/x"))
    assert remote_output.fetched_into("r1") == {"/a b/results"}


def test_a_folder_set_is_moved_in_whole_and_files_there_are_replaced(tmp_path):
    src, dest = tmp_path / "stage" / "output", tmp_path / "results"
    (src / "model").mkdir(parents=True)
    (src / "model" / "w.bin").write_bytes(b"new")
    (src / "log.txt").write_text("done")
    (dest / "model").mkdir(parents=True)
    (dest / "model" / "w.bin").write_bytes(b"old")
    (dest / "mine.txt").write_text("kept")
    assert remote_output.fetch_folder(src, dest, "r1") == (2, 7)
    assert (dest / "model" / "w.bin").read_bytes() == b"new" and (dest / "mine.txt").read_text() == "kept"
    assert not remote_output.partial_dir(dest, "r1").exists() and (src / "log.txt").exists()
    with pytest.raises(remote_output.Incomplete, match="is gone"):
        remote_output.fetch_folder(tmp_path / "nowhere", dest, "r1")
