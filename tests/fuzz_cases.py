"""Fuzz cases for the command line, shared by tests/cli/test_fuzz.py (about 1,000 each in CI) and
bench/fuzz_cli.py (10,000 and more each): hypothesis strategies for the CLI's numeric options, for
configuration files and for history JSONL, and one `check_*` function per kind that runs a case
in-process through `main(argv)` and returns what went wrong (None when the outcome is allowed).

Allowed outcomes: an exit code the contract gives the command, one `error:` line for a refused value,
never a traceback. Nothing here starts a container or a daemon: `run` stops where the job would
start (its validation is what is fuzzed), `daemon` has no Jenkins URL and so stops at its check.
"""

from __future__ import annotations

import contextlib
import io
import json
import traceback
from pathlib import Path
from typing import Any, Callable

from hypothesis import strategies as st

# ---- values ------------------------------------------------------------------------------------

_NUMBERISH = st.one_of(
    st.integers(min_value=-10 ** 6, max_value=10 ** 6).map(str),
    st.integers(min_value=0, max_value=10 ** 500).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "Infinity", "NaN", "1e-12", "1e308", "1e309",
                     "0", "0.0", "-0", "00", "0x10", "1_000", "²", "١٢", "", " ", "\t", "9" * 400,
                     "1e999", ".5", "5.", "+3", "0.001", "6M", "5M", "1000000000d", "9999999d"]),
)
_UNIT = st.sampled_from(["", "s", "m", "h", "d", "G", "Gi", "GiB", "M", "Mi", "MiB", "g", "mib",
                         "h30m", "d1h", "x", " ", "ms", "1h", "e5"])
VALUE = st.one_of(_NUMBERISH, st.tuples(_NUMBERISH, _UNIT).map("".join),
                  st.text(max_size=30), st.text(alphabet="0123456789.:-eE+dhmsGMi ", max_size=25))

# (command prefix, option) pairs whose values are numbers, sizes, durations, prices or addresses
NUMERIC_OPTIONS = [
    (["run", "--image", "img"], "--timeout"), (["run", "--image", "img"], "--grace"),
    (["run", "--image", "img"], "--retry"), (["run", "--image", "img"], "--retry-delay"),
    (["run", "--image", "img"], "--memory"), (["run", "--image", "img"], "--cpus"),
    (["run", "--image", "img", "--remote"], "--max-price"),
    (["run", "--image", "img", "--remote"], "--max-concurrent"),
    (["plan"], "--timeout"), (["plan"], "--max-price"),
    (["history", "export"], "--since"), (["history", "export"], "--workers"),
    (["report"], "--since"), (["report"], "--top"),
    (["daemon", "--once"], "--listen"),
]
ALLOWED_EXIT = {"run": {0, 2}, "plan": {0, 2, 3}, "history": {0, 1, 2}, "report": {0, 1, 2},
                "daemon": {2}}


@st.composite
def numeric_argv(draw: Callable) -> list[str]:
    """A command with one to three of its numeric options, each with a hostile or plain value."""
    prefix, first = draw(st.sampled_from(NUMERIC_OPTIONS))
    same = [opt for p, opt in NUMERIC_OPTIONS if p == prefix and opt != first]
    options = [first] + draw(st.lists(st.sampled_from(same), max_size=2, unique=True)) if same else [first]
    argv = list(prefix)
    for option in options:
        value = draw(VALUE)
        argv += [f"{option}={value}"] if draw(st.booleans()) else [option, value]
    if prefix[0] == "run":
        argv += ["--", "true"]
    return argv


# ---- configuration files -----------------------------------------------------------------------

_SECTIONS = {
    "cloud": None, "regions": None, "history": None,
    "defaults": ["image", "timeout", "policy", "runtime_target", "scaled_margin", "max_price", "arch"],
    "docker": ["image", "max_cpus", "max_memory"],
    "ec2": ["subnets", "security_groups", "instance_profile", "images", "tags"],
    "jenkins": ["url", "user", "token_env", "token_file", "managed_atom", "sentinel"],
    "daemon": ["owner_id", "interval_s", "listen", "max_agents", "budget"],
    "teams": None, "alerts": ["sinks", "rules", "rate_limit_s"], "bogus": None,
}
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                    st.sampled_from([".nan", ".inf", "-.inf", "1h", "0s", "-5m", "9" * 400, "~",
                                     "127.0.0.1:99999", "abc", "docker", "ec2", "x86_64"]))
_YAML_VALUE = st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)


def _yaml_scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, float) or value == value \
        else ".nan"


@st.composite
def config_text(draw: Callable) -> bytes:
    """A configuration file: known and unknown sections and keys, any values, sometimes a key given
    twice, deep nesting, YAML syntax errors, or bytes that are not UTF-8."""
    lines = []
    for section in draw(st.lists(st.sampled_from(sorted(_SECTIONS)), max_size=5)):
        keys = _SECTIONS[section]
        if keys is None or draw(st.integers(0, 5)) == 0:
            lines.append(f"{section}: {_yaml_scalar(draw(_YAML_VALUE))}")
            continue
        lines.append(f"{section}:")
        for key in draw(st.lists(st.sampled_from(keys + ["unknown_key"]), max_size=4)):
            lines.append(f"  {key}: {_yaml_scalar(draw(_YAML_VALUE))}")
    text = "\n".join(lines) + "\n"
    mutation = draw(st.integers(0, 9))
    if mutation == 0:
        depth = draw(st.integers(1, 3000))
        text += "teams: " + "[" * depth + "]" * depth + "\n"
    elif mutation == 1 and lines:
        text += draw(st.sampled_from(lines)) + "\n"  # a line (often a key) given twice
    elif mutation == 2:
        text += draw(st.text(alphabet="{}[]:,-?&*!|>'\"%@` \n\t#", max_size=20))
    data = text.encode("utf-8", "surrogatepass")
    if mutation == 3:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return data


# ---- history JSONL -----------------------------------------------------------------------------

_JSON_ANY = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner,
                                                                          max_size=3)), max_leaves=6)
_HOSTILE = st.sampled_from(['NaN', 'Infinity', '-Infinity', '1e300', '1e400', '9' * 500, '"\\ud800"',
                            '"tr\\udfffain"', '-9223372036854775809', '9223372036854775808',
                            '2147483648', '-2147483649', '2147483647', '1.5', 'true', '""', '[]', '{}',
                            "[" * 5000 + "]" * 5000, '"2026-13-45T99:00:00Z"', '"2026-01-01T00:00:00"'])
FIELDS = ["job", "build", "run_id", "start", "duration_s", "exit_code", "cpu_avg_pct", "mem_max_bytes",
          "gpu_count", "market", "timed_out", "queue_id", "vcpu", "extra"]


def base_record(n: int) -> dict:
    return {"job": "fuzz", "build": str(n), "run_id": f"r{n}", "start": "2026-01-01T00:00:00Z",
            "duration_s": 60.0, "exit_code": 0, "cpu_avg_pct": 50.0, "mem_max_bytes": 1 << 30}


@st.composite
def history_line(draw: Callable) -> bytes:
    """One JSONL line: a good record, a record with one field set to a hostile value, or junk."""
    n = draw(st.integers(0, 50))
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return json.dumps(base_record(n)).encode()
    if kind in (1, 2):
        field = draw(st.sampled_from(FIELDS))
        value = draw(_HOSTILE) if kind == 1 else json.dumps(draw(_JSON_ANY))
        body = json.dumps({k: v for k, v in base_record(n).items() if k != field})
        return (body[:-1] + f', "{field}": {value}}}').encode("utf-8", "surrogatepass")
    if kind == 3:
        return json.dumps(draw(_JSON_ANY)).encode()
    return draw(st.binary(max_size=40)).replace(b"\n", b" ")


HISTORY_LINES = st.lists(history_line(), min_size=1, max_size=8)


# ---- running one case --------------------------------------------------------------------------

@contextlib.contextmanager
def nothing_starts():
    """`run` returns 0 where its job (local or remote) would start: the options were accepted."""
    from unittest import mock
    with mock.patch("provisioner.cli.run._handle", lambda args, ctx: 0), \
            mock.patch("provisioner.remote.run.run_remote", lambda args, ctx: 0):
        yield


def call_main(argv: list[str]) -> tuple[Any, str, str]:
    """main(argv) in-process: (exit code or the exception's traceback, stdout, stderr)."""
    from provisioner.cli.main import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: Any = main(argv)
        except SystemExit as exc:  # only --help/--version may leave this way
            code = f"SystemExit({exc.code})"
        except BaseException:  # noqa: BLE001  # the finding itself
            code = traceback.format_exc()
    return code, out.getvalue(), err.getvalue()


def _problem(code: Any, err: str, allowed: set[int]) -> str | None:
    if not isinstance(code, int):
        return f"raised:\n{code}"
    if "Traceback" in err:
        return f"traceback on stderr:\n{err}"
    if code not in allowed:
        return f"exit {code} (allowed {sorted(allowed)}):\n{err[-2000:]}"
    if code == 2 and len([line for line in err.splitlines() if "error:" in line]) != 1:
        return f"exit 2 without exactly one error line:\n{err[-2000:]}"
    return None


def check_numeric(argv: list[str], history: Path) -> str | None:
    code, _out, err = call_main(["--history", str(history), *argv])
    return _problem(code, err, ALLOWED_EXIT[argv[0]])


def check_config(data: bytes, folder: Path) -> str | None:
    path = folder / "config.yaml"
    path.write_bytes(data)
    code, _out, err = call_main(["daemon", "--check", str(path)])
    if not isinstance(code, int) or "Traceback" in err:
        return _problem(code, err, {0, 2})
    if code not in (0, 2):
        return f"exit {code} (allowed 0, 2):\n{err[-2000:]}"
    if code == 2 and str(path) not in err:
        return f"an invalid configuration not named by its file:\n{err[-2000:]}"
    return None


class HistoryFuzz:
    """The history importer's cases. Most go through the import command's own handler into one
    shared store (a parser and a fresh store per case would cost ~90 ms on a busy 2-CPU machine);
    every `full_every`-th case is a whole round trip through `main(argv)` on a store of its own:
    import, strict-JSON export, re-import of the export as all present. Every 100th case exports
    the shared store through `main` and checks it is strict JSON."""

    def __init__(self, folder: Path, full_every: int = 10):
        self.folder, self.full_every, self.cases = folder, full_every, 0
        self.shared = folder / "shared.sqlite3"

    def check(self, lines: list[bytes]) -> str | None:
        self.cases += 1
        src = self.folder / "in.jsonl"
        src.write_bytes(b"\n".join(lines) + b"\n")
        non_blank = sum(1 for line in lines if line.strip(b" \t\r\n"))
        if self.cases % self.full_every == 0:
            return check_history_round_trip(src, self.folder / f"h{self.cases}.sqlite3", non_blank)
        problem = self._fast(src, non_blank)
        if problem is None and self.cases % 100 == 0:
            code, out, err = call_main(["--history", str(self.shared), "history", "export"])
            problem = _problem(code, err, {0}) or _not_strict(out)
        return problem

    def _fast(self, src: Path, non_blank: int) -> str | None:
        import argparse

        from provisioner.cli.context import Context
        from provisioner.cli.history import run_import
        from provisioner.history import open_store
        with open_store(str(self.shared)) as store:
            before = store.count()
        args = argparse.Namespace(file=str(src), history=str(self.shared))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code: Any = run_import(args, Context(args))
            except BaseException:  # noqa: BLE001  # the finding itself
                code = traceback.format_exc()
        problem = _problem(code, err.getvalue(), {0, 1}) or _counts(out.getvalue(), non_blank, code)
        if problem:
            return problem
        with open_store(str(self.shared)) as store:
            grown = store.count() - before
        added = _summary(out.getvalue())[0]
        return None if grown == added else f"{added} imported but the store grew by {grown}"


def _summary(out: str) -> tuple[int, int, int]:
    added, present, rejected = (int(out.split(word)[1].split(",")[0].split()[0])
                                for word in ("imported ", "already present ", "rejected "))
    return added, present, rejected


def _counts(out: str, non_blank: int, code: int) -> str | None:
    try:
        added, present, rejected = _summary(out)
    except (IndexError, ValueError):
        return f"no import summary:\n{out}"
    if added + present + rejected != non_blank or (code == 1) != (rejected > 0):
        return f"counts do not add up ({added}+{present}+{rejected} != {non_blank} lines, exit {code})"
    return None


def _not_strict(out: str) -> str | None:
    def strict(name: str) -> None:
        raise ValueError(f"non-standard {name}")
    try:
        for line in out.splitlines():
            json.loads(line, parse_constant=strict)
    except ValueError as exc:
        return f"export is not strict JSON: {exc}"
    return None


def check_history_round_trip(src: Path, hist: Path, non_blank: int) -> str | None:
    """Through main(argv): import, then the counts add up, the export is strict JSON with as many
    records as were imported, and it imports again as all present."""
    code, out, err = call_main(["--history", str(hist), "history", "import", str(src)])
    problem = _problem(code, err, {0, 1}) or _counts(out, non_blank, code)
    if problem:
        return problem
    added = _summary(out)[0]
    code, out, err = call_main(["--history", str(hist), "history", "export"])
    if code != 0 or "Traceback" in err:
        return f"export failed ({code}):\n{err[-2000:]}"
    problem = _not_strict(out)
    if problem:
        return problem
    if len(out.splitlines()) != added:
        return f"{added} imported but {len(out.splitlines())} exported"
    again = src.with_name("again.jsonl")
    again.write_text(out)
    code, out, err = call_main(["--history", str(hist), "history", "import", str(again)])
    if code != 0 or f"imported 0, already present {added}, rejected 0" not in out:
        return f"re-import of the export: exit {code}: {out} {err[-1000:]}"
    return None
