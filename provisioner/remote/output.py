"""Outputs of a remote run (`run --remote --output DIR`) brought back once it ended, by whoever
follows it: the foreground launcher, `attach`, `logs -f`, or `provisioner output RUN [DIR]`.

Where the outputs are and where they go travel with the run: its tags / container labels
`provisioner:output` (EC2: the run's `s3://…/runs/<id>/output/`; docker cloud: the host folder the
job's output folder is mounted from) and `provisioner:output-dest` (the launching machine's
`--output` folder), and the launcher's state dir (`remote-outputs`: the same, also for a folder name
too long for a tag). Another machine sees where they are, not a destination of its own.

A set is complete when
- EC2: the instance put its list of outputs (`sync.MANIFEST`, after the last file) and every file
  it names arrived with its size;
- docker cloud: the instance has ended (its job writes no more).
Files are fetched into a hidden sibling folder of the destination and moved in only once the set is
complete, so an interrupted or partial fetch is never reported (nor recorded) as done. A fetch is
recorded in the state dir (`remote-outputs-fetched`): a second one into the same folder does nothing.
Once in the launcher's own `--output` folder the run's transfer is over, as after a foreground run:
its S3 prefix or host folder is removed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from provisioner import sync
from provisioner.errors import UsageError

OUTPUT_TAG = "provisioner:output"          # where the outputs are
DEST_TAG = "provisioner:output-dest"       # the launching machine's --output folder
TAG_MAX = 256                              # EC2's limit on a tag value
RECORD_FILE = "remote-outputs"             # state dir, one JSON object a line
FETCHED_FILE = "remote-outputs-fetched"    # state dir, "<run id> <folder>" a line


class Incomplete(Exception):
    """The outputs are not (all) there yet, or no longer; the message says which."""


class NotEnded(Incomplete):
    """The run still runs: its outputs are not final."""


@dataclass(frozen=True)
class Outputs:
    run_id: str
    cloud: str
    where: str                   # s3://…/output/ or a host folder
    dest: Path | None            # the launcher's --output folder (known on the launching machine only)
    region: str | None = None


# ---- what the launcher records ---------------------------------------------------------------

def tags(where: str, dest: Path | None) -> dict[str, str]:
    """The run's tags / labels (a value too long for an EC2 tag is only recorded locally)."""
    out = {OUTPUT_TAG: where} if len(where) <= TAG_MAX else {}
    if dest is not None and len(str(dest)) <= TAG_MAX:
        out[DEST_TAG] = str(dest)
    return out


def _state(name: str) -> Path:
    from provisioner.paths import state_dir
    return state_dir() / name


def _append(name: str, line: str) -> None:
    try:
        path = _state(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(line + "\n")
    except OSError:
        pass                    # the tags still say where the outputs are


def note(run_id: str, cloud: str, where: str, dest: Path | None) -> None:
    _append(RECORD_FILE, json.dumps({"run_id": run_id, "cloud": cloud, "where": where,
                                     "dest": str(dest) if dest else None}))


def recorded(run_id: str) -> dict | None:
    found = None
    try:
        lines = _state(RECORD_FILE).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("run_id") == run_id:
            found = item
    return found


def mark_fetched(run_id: str, dest: Path) -> None:
    _append(FETCHED_FILE, f"{run_id} {dest}")


def fetched_into(run_id: str) -> set[str]:
    try:
        lines = _state(FETCHED_FILE).read_text().splitlines()
    except OSError:
        return set()
    return {line.partition(" ")[2] for line in lines if line.partition(" ")[0] == run_id}


def of_run(run: Any, here: bool) -> Outputs | None:
    """The outputs of a run (a remote_runs.RunView), or None when it was started without --output.
    `here`: this machine launched it (only then is the destination tag its own)."""
    local = recorded(run.run_id) or {}
    where = run.tags.get(OUTPUT_TAG) or local.get("where")
    if not where:
        return None
    dest = local.get("dest") or (run.tags.get(DEST_TAG) if here else None)
    return Outputs(run.run_id, run.cloud, where, Path(dest) if dest else None, run.region or None)


# ---- fetching a complete set -----------------------------------------------------------------

def partial_dir(dest: Path, run_id: str) -> Path:
    """Next to the destination (same file system: files are moved in, not copied twice)."""
    return dest.parent / f".{dest.name}.partial-{run_id[:8]}"


def _sizes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _move_in(part: Path, dest: Path, files: dict[str, int]) -> tuple[int, int]:
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sorted(files):
        target = dest.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part.joinpath(*rel.split("/")), target)
    return len(files), sum(files.values())


def fetch_s3(s3: Any, url: str, dest: Path, run_id: str) -> tuple[int, int]:
    """The instance's outputs under `url` into `dest` once all it listed arrived; (files, bytes)."""
    manifest = sync.read_manifest(s3, url)
    if manifest is None:
        raise Incomplete(f"{url} holds no complete set (the instance lists its outputs in {sync.MANIFEST} "
                         "after the last one): the run has not ended, ended before it uploaded them, or "
                         "they were fetched and removed already")
    part = partial_dir(dest, run_id)
    shutil.rmtree(part, ignore_errors=True)
    try:
        sync.download_prefix(s3, url, part)
        got = _sizes(part)
        wrong = sorted(rel for rel, size in manifest.items() if got.get(rel) != size)
        if wrong:
            raise Incomplete(f"{len(wrong)} of the {len(manifest)} files listed under {url} missing or of "
                             f"another size (e.g. {wrong[0]})")
        return _move_in(part, dest, manifest)
    finally:
        shutil.rmtree(part, ignore_errors=True)


def fetch_folder(src: Path, dest: Path, run_id: str) -> tuple[int, int]:
    """The docker cloud's outputs (a host folder; the run has ended) into `dest`; (files, bytes)."""
    if not src.is_dir():
        raise Incomplete(f"{src} is gone (fetched and removed already, or the host's temporary files were "
                         "cleaned)")
    part = partial_dir(dest, run_id)
    shutil.rmtree(part, ignore_errors=True)
    try:
        shutil.copytree(src, part, symlinks=True)
        return _move_in(part, dest, _sizes(part))
    finally:
        shutil.rmtree(part, ignore_errors=True)


def clean(out: Outputs, s3: Any = None) -> None:
    """The run's transfer is over: its S3 objects (inputs too) or its host folder go."""
    if out.where.startswith("s3://"):
        base = out.where.rstrip("/").rpartition("/")[0] + "/"
        try:
            sync.delete_prefix(s3, base)
        except Exception:
            pass                # no rights: a lifecycle rule on the prefix cleans up
    else:
        stage = Path(out.where).parent
        if stage.name.startswith("provisioner-sync-"):
            shutil.rmtree(stage, ignore_errors=True)


def _s3(region: str | None) -> Any:
    from provisioner import aws
    return aws.client("s3", region=region)


def bring_back(backend: Any, run: Any, dest: Path | None, say: Callable[[str], None],
               explicit: bool = False) -> int:
    """After following a run (or for `provisioner output`): its outputs into `dest` (default: the
    launcher's --output folder). 0 when done (or nothing to do), 1 when they are not all there."""
    from provisioner.remote.runs import owner_id
    here = run.owner == owner_id()
    out = of_run(run, here)
    if out is None:
        if explicit:
            raise UsageError(f"run {run.run_id} was started without --output: it has no outputs to bring back")
        return 0
    target = dest or out.dest
    if target is None:
        say(f"Outputs of run {run.run_id}: {out.where} (this machine did not launch it; bring them here "
            f"with: provisioner output {run.run_id} DIR)")
        return 0
    target = Path(target).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target}: exists and is not a directory")
    if str(target) in fetched_into(run.run_id):
        say(f"Outputs of run {run.run_id} are already in {target}")
        return 0
    s3 = _s3(out.region) if out.where.startswith("s3://") else None
    try:
        if s3 is None:
            if backend.alive(run):
                raise NotEnded("the run has not ended yet")
            files, size = fetch_folder(Path(out.where), target, run.run_id)
        else:
            try:
                files, size = fetch_s3(s3, out.where, target, run.run_id)
            except Incomplete:
                if backend.alive(run):
                    raise NotEnded("the run has not ended yet") from None
                raise
    except Incomplete as exc:
        hint = f" (they come back when it ends: provisioner attach {run.run_id})" if isinstance(exc, NotEnded) else ""
        say(f"warning: outputs of run {run.run_id} not brought back: {exc}{hint}")
        return 1
    except Exception as exc:          # a file system or S3 error: named, the run's outputs stay where they are
        say(f"warning: outputs of run {run.run_id} not brought back from {out.where}: "
            f"{type(exc).__name__}: {exc}")
        return 1
    say(f"Outputs: {files} files, {sync.human_size(size)} from {out.where} into {target}")
    mark_fetched(run.run_id, target)
    if here and out.dest is not None and target == out.dest.expanduser().resolve():
        clean(out, s3)
    return 0
