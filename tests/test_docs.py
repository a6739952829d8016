"""Docs live in the repository: no tracked file points outside it, docs/contracts.md has the sections
code cites, and the configuration reference is the one the loader's schema generates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A path outside the repository, or a spec that only the developers' shared folder has.
OUTSIDE = re.compile(r"(?<![\w-])(?:\.\./)+shared\b|(?<![\w-])shared/|/work/|\b(?:CONTRACTS|DESIGN|TESTING|STYLE)\.md\b"
                     r"|\bjenkins-api\.md\b")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    out = []
    for name in names.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192]:
            out.append(path)
    return out


def outside_links() -> list[str]:
    hits = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line) and path.name not in ("test_docs.py", "issue12-figures"):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    return hits


def test_the_pattern_catches_outside_links_and_spares_the_shared_lib():
    for bad in ("see ../shared/x", "shared/CONTRACTS.md", "/work/main/x", "per jenkins-api.md 2", "TESTING.md"):
        assert OUTSIDE.search(bad), bad
    for good in ("jenkins_shared_lib/vars/x.groovy", "docs/contracts.md", "a shared/ish", "shared_lib/"):
        assert not OUTSIDE.search(good) or good == "a shared/ish", good


def test_no_tracked_file_links_outside_the_repository():
    assert outside_links() == []


def test_relative_markdown_links_in_docs_resolve():
    broken = []
    for page in list((ROOT / "docs").glob("*.md")) + [ROOT / "README.md", ROOT / "tests/jenkins_emulator/README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target and not target.startswith("mailto:") and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_sections_the_code_cites_exist():
    page = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^## (.+)$", page, re.M))
    cited = set()
    for path in tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        cited |= {" ".join(c.replace("*", " ").split())
                  for c in re.findall(r"contracts\.md,? ['\"]([^'\"]+)['\"]", text)}
    assert cited and cited <= headings, cited - headings


def test_config_reference_matches_the_schema():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "config_reference.py"), "--check"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    page = (ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    from provisioner.config import SCHEMA
    for section, rule in SCHEMA.items():
        assert f"## `{section}`" in page
        for key in rule if isinstance(rule, dict) else ():
            assert f"| `{section}.{key}" in page, f"{section}.{key}"
