#!/usr/bin/env python3
"""Fuzz the command line at scale: the CLI's numeric options, the configuration loader and the
history importer, each for --cases examples (default 10,000), in-process through `main(argv)`
(the history importer as in tests/cli/test_fuzz.py: its handler for most cases, a whole
import/export/re-import round trip through `main` for every --full-every-th).

The cases and what each checks are tests/fuzz_cases.py's (the CI test runs ~1,000 of each). A
finding does not stop the run: every problem is counted and the distinct ones are printed with
their tracebacks (the target is 0). Prints the seed (rerun with --seed to get the same cases),
the counts, the time per case and its ratio to a fixed valid case of the same kind measured in
the same command. Nothing starts a container or a daemon. Run from the repository root:

    .venv/bin/python bench/fuzz_cli.py [--cases 10000] [--seed N] [--only numeric,config,history]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = ("numeric", "config", "history")


def isolate(home: Path) -> None:
    """No user file is read or written: XDG folders under a temporary home."""
    for var in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        os.environ[var] = str(home / var.lower())
    for var in ("PROVISIONER_CONFIG", "PROVISIONER_HISTORY", "JOB_NAME", "BUILD_NUMBER"):
        os.environ.pop(var, None)


def fuzz(strategy: Any, check: Callable[[Any], str | None], cases: int, seed: int) -> dict:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    found: dict[str, tuple[int, Any]] = {}  # first line of the problem -> (count, example)
    counts = {"cases": 0, "problems": 0}

    @hypothesis_seed(seed)
    @settings(max_examples=cases, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(example: Any) -> None:
        counts["cases"] += 1
        problem = check(example)
        if problem:
            counts["problems"] += 1
            key = problem.strip().splitlines()[-1][:200]
            n, first = found.get(key, (0, (example, problem)))
            found[key] = (n + 1, first)

    started = time.perf_counter()
    run()
    counts["seconds"] = time.perf_counter() - started
    counts["found"] = found
    return counts


def baseline(check: Callable[[Any], str | None], example: Any, rounds: int = 30) -> float:
    """Seconds per call of one fixed valid case (median of `rounds`)."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        problem = check(example)
        times.append(time.perf_counter() - started)
        assert problem is None, problem
    return sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="examples per kind (default 10000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random, printed)")
    parser.add_argument("--only", default=",".join(KINDS), help="comma-separated: " + ", ".join(KINDS))
    parser.add_argument("--full-every", type=int, default=10,
                        help="history: every Nth case is a whole round trip through main (default 10)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2 ** 32)
    home = Path(tempfile.mkdtemp(prefix="fuzz-cli-"))
    isolate(home)
    from tests import fuzz_cases as fc

    print(f"seed {seed}; {args.cases} cases per kind; python {sys.version.split()[0]}")
    history = home / "numeric.sqlite3"
    hist_fuzz = fc.HistoryFuzz(home / "history", full_every=args.full_every)
    hist_fuzz.folder.mkdir()
    hist_base = fc.HistoryFuzz(home / "history-base", full_every=args.full_every)
    hist_base.folder.mkdir()
    good_config = b"cloud: docker\nregions: [us-east-1]\ndefaults:\n  timeout: 2h\n" \
                  b"jenkins:\n  url: http://127.0.0.1:8080\n"
    good_line = json.dumps(fc.base_record(1)).encode()
    kinds = {
        "numeric": (fc.numeric_argv(), lambda argv: fc.check_numeric(argv, history),
                    ["plan", "--timeout", "2h", "--max-price", "5"]),
        "config": (fc.config_text(), lambda data: fc.check_config(data, home), good_config),
        "history": (fc.HISTORY_LINES, hist_fuzz.check, [good_line]),
    }
    total_problems = 0
    with fc.nothing_starts():
        for kind in [k.strip() for k in args.only.split(",") if k.strip()]:
            strategy, check, valid = kinds[kind]
            base_check = (lambda lines: hist_base.check(lines)) if kind == "history" else check
            base_s = baseline(base_check, valid)
            result = fuzz(strategy, check, args.cases, seed)
            per_case = result["seconds"] / max(1, result["cases"])
            total_problems += result["problems"]
            print(f"{kind}: {result['cases']} cases in {result['seconds']:.1f} s "
                  f"({per_case * 1000:.2f} ms per case; a fixed valid case {base_s * 1000:.2f} ms, "
                  f"ratio {per_case / base_s:.2f}); problems {result['problems']} "
                  f"({len(result['found'])} distinct)")
            for key, (n, (example, problem)) in list(result["found"].items())[:5]:
                print(f"  {n}x {key}\n    example: {example!r:.300}\n    "
                      + "\n    ".join(problem.splitlines()[-25:]))
    print(f"total problems (tracebacks, wrong exit codes, lost or non-strict records): {total_problems}")
    with contextlib.suppress(OSError):
        import shutil
        shutil.rmtree(home)
    return 1 if total_problems else 0


if __name__ == "__main__":
    sys.exit(main())
