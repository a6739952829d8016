"""`provisioner completion bash|zsh`: scripts generated from the parser that complete commands,
options and choices in a real shell."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def complete(script: str, *words: str) -> list[str]:
    """What bash offers for the last of `words`, with the script sourced."""
    line = " ".join(words)
    program = (f'source "$0"; COMP_WORDS=({" ".join(repr(w) for w in words)}); '
               f'COMP_CWORD={len(words) - 1}; COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; '
               '_shtab_provisioner; printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "-c", program, script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_commands_options_and_choices(cli, tmp_path):
    done = cli("completion", "bash")
    assert done.returncode == 0, done.stderr
    script = tmp_path / "provisioner.bash"
    script.write_text(done.stdout)
    assert complete(str(script), "provisioner", "pl") == ["plan"]
    assert {"daemon", "run", "report", "history", "completion"} <= set(complete(str(script), "provisioner", ""))
    assert "--label" in complete(str(script), "provisioner", "plan", "--la")
    assert complete(str(script), "provisioner", "plan", "--policy", "ch") == ["cheapest"]
    assert "--remote" in complete(str(script), "provisioner", "run", "--rem")


def test_zsh_script_parses(cli, tmp_path):
    if not shutil.which("zsh"):
        if os.environ.get("CI"):
            pytest.fail("zsh is missing: scripts/test installs it")
        pytest.skip("zsh is not installed")
    done = cli("completion", "zsh")
    assert done.returncode == 0 and "#compdef provisioner" in done.stdout
    script = tmp_path / "_provisioner"
    script.write_text(done.stdout)
    assert subprocess.run(["zsh", "-n", str(script)], capture_output=True).returncode == 0


def test_an_unknown_shell_is_a_usage_error(cli):
    done = cli("completion", "fish")
    assert done.returncode == 2 and "invalid choice: 'fish'" in done.stderr
