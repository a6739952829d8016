"""Compile the stand-in agent.jar (agent/src, Java 17, no dependencies) once per source version.

The jar is cached under `$JENKINS_EMULATOR_CACHE` (default: the system temp dir) in a file named
by the sources' hash, so every test and every process reuses one build; it is written to a
temporary name and renamed, so concurrent first uses cannot see half a jar.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

SRC = Path(__file__).resolve().parent / 'agent' / 'src'
MAIN_CLASS = 'emulator.agent.Main'
_lock = threading.Lock()


class JarBuildError(RuntimeError):
    """javac or jar is missing or failed."""


def sources() -> list[Path]:
    return sorted(SRC.rglob('*.java'))


def jar_path() -> Path:
    digest = hashlib.sha256()
    for path in sources():
        digest.update(path.relative_to(SRC).as_posix().encode() + b'\0' + path.read_bytes())
    cache = Path(os.environ.get('JENKINS_EMULATOR_CACHE') or Path(tempfile.gettempdir()) / f'jenkins-emulator-{os.getuid()}')
    return cache / f'agent-{digest.hexdigest()[:16]}.jar'


def tools_available() -> bool:
    return all(shutil.which(t) for t in ('java', 'javac', 'jar'))


def build_agent_jar() -> Path:
    """Return the cached jar, compiling it first if needed."""
    target = jar_path()
    if target.exists():
        return target
    with _lock:
        if target.exists():
            return target
        if not tools_available():
            raise JarBuildError('java, javac and jar (a JDK 17) are needed to build the stand-in agent.jar')
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            classes = Path(tmp) / 'classes'
            _run(['javac', '--release', '17', '-encoding', 'UTF-8', '-d', str(classes), *map(str, sources())])
            out = Path(tmp) / 'agent.jar'
            _run(['jar', '--create', '--file', str(out), '--main-class', MAIN_CLASS, '-C', str(classes), '.'])
            os.replace(out, target)
    return target


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise JarBuildError(f'{cmd[0]} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}')
