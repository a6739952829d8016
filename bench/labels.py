#!/usr/bin/env python3
"""Benchmark: plan time of hostile but accepted label expressions, and a fuzz of the label parser.

Plan time is the parse plus `plan_for` over the bundled catalog (what `provisioner plan` does once
the catalog is loaded), for:
  issue      the issue's case: ten `(a_i || vcpu=100000)` conjuncts, long atom names, ~1.7 KB
  pairs      twelve free atoms each in `(a_i || vcpu=N)` and `(!a_i || mem=M)`: 2^12 assignments
  deep       parentheses nested 64 deep around comparisons and free atoms
  chain      a 4 KB `&&` chain of ~500 atoms
  random     random expressions up to 4 KB with 12 free atoms and many distinct comparisons
The worst is compared with a plain label (`ec2 && vcpu=2`) planned the same way in the same run,
and the matching part (every offer of the catalog tested) with the code before this change, read
from git (`--old-commit`), where it is available.

The fuzz feeds random strings of label tokens to parse, parse_jenkins, Requirements.parse and
is_demand, and plans a sample of the accepted ones; anything but a clear input error counts as a
traceback.

Usage: bench/labels.py [--seed N] [--fuzz N] [--random N] [--old-commit REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provisioner import labels  # noqa: E402
from provisioner.catalog import load_catalog  # noqa: E402
from provisioner.config import DEFAULTS, Config  # noqa: E402
from provisioner.errors import InputError, NoOfferError  # noqa: E402
from provisioner.planner import plan_for, settings_from  # noqa: E402
from provisioner.requirements import Requirements, is_demand  # noqa: E402

COMPARISONS = ["vcpu={}", "mem={}", "spot", "ondemand", "arch=arm64", "arch=x86_64", "type=m5.*", "type=c7{}*",
               "family=r{}", "gpu=1", "region=us-east-1", "disk=50", "exact", '"vcpu>={}"', '"mem<{}"']
TOKENS = list("ab-=>!&|()<\" \t:\\'") + ["&&", "||", "->", "<->", "vcpu=8", "((", "))", "ec2 && ", "spot",
                                         "mem=1e400", "vcpu=nan", "(" * 40, ")" * 40, "a" * 300, "x"]


def issue_label() -> str:
    pad = "y" * 150
    return "ec2 && " + " && ".join(f"(a{i}{pad} || vcpu=100000)" for i in range(10))


def pairs_label() -> str:
    return "ec2 && " + " && ".join(f"(a{i} || vcpu={64 + i}) && (!a{i} || mem={1000 + i})" for i in range(12))


def deep_label() -> str:
    inner = "a0 || vcpu=4"
    for i in range(62):           # each wrap one level deeper: 62 + the outer + `(a || mem)` = 64
        inner = f"({inner} && (a{i % 12} || mem={i + 1}))" if i % 2 else f"!({inner})"
    return f"ec2 && ({inner})"


def chain_label() -> str:
    parts, i = ["ec2"], 0
    while len("&&".join(parts)) < 3990:
        parts.append(["linux", f"vcpu={i % 8 + 1}", "!spot", f"mem={i % 16 + 1}"][i % 4])
        i += 1
    return "&&".join(parts[:-1])


def random_label(rng: random.Random, size: int = 4000) -> str:
    """A random expression up to `size` bytes over 12 free atoms and varied comparisons."""
    def atom() -> str:
        if rng.random() < 0.35:
            return f"f{rng.randrange(12)}"
        return rng.choice(COMPARISONS).format(rng.choice([1, 2, 3, 4, 6, 8, 16, 32, 64, 96, 128, 192]))

    def expr(budget: int, depth: int) -> str:
        if budget < 30 or depth > 60 or rng.random() < 0.15:
            return ("!" if rng.random() < 0.2 else "") + atom()
        left = rng.randint(10, budget - 10)
        op = rng.choice(["&&", "||", "||", "&&", "->", "<->"])
        text = f"{expr(left, depth + 1)} {op} {expr(budget - left, depth + 1)}"
        return f"({text})" if op in ("->", "<->") or rng.random() < 0.5 else text

    while True:
        text = f"ec2 && ({expr(size - 10, 0)})"
        if len(text.encode()) <= labels.MAX_BYTES:
            return text


def old_requirements(commit: str):
    """The requirements module as of `commit` (its matcher tried assignments per offer), or None."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:provisioner/requirements.py"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "old_requirements.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_requirements", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_requirements"] = module
    spec.loader.exec_module(module)
    return module


def plan_time(catalog, config, label: str) -> tuple[float, str]:
    t = time.perf_counter()
    req = Requirements.parse(label, lax=True)
    try:
        chosen = plan_for(catalog, req, [], settings_from(config, req)).chosen.offer.instance_type
    except NoOfferError as exc:
        chosen = f"no offer ({exc.constraint[:30]})"
    return time.perf_counter() - t, chosen


def match_time(module, offers, label: str) -> float | None:
    t = time.perf_counter()
    try:
        match = module.Requirements.parse(label, lax=True).matcher()
        sum(1 for o in offers if match(o))
    except RecursionError:
        return None
    return time.perf_counter() - t


def fuzz(rng: random.Random, n: int, catalog, config) -> tuple[int, int, int, float]:
    """(cases, tracebacks, accepted demand planned, worst plan seconds)."""
    tracebacks, planned, worst = 0, 0, 0.0
    for _ in range(n):
        if rng.random() < 0.5:
            text = "".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 80)))
            if rng.random() < 0.3:
                text = "ec2 && " + text
        else:                               # a valid expression, perhaps damaged by one edit
            text = random_label(rng, rng.choice([40, 200, 1000, 4000]))
            if rng.random() < 0.5:
                at = rng.randrange(len(text))
                text = text[:at] + rng.choice(TOKENS + [""]) + text[at + 1:]
        for fn in (labels.parse, labels.parse_jenkins, is_demand, Requirements.parse,
                   lambda t: Requirements.parse(t, lax=True)):
            try:
                fn(text)
            except InputError:
                pass
            except Exception:               # noqa: BLE001 - counting what escapes
                tracebacks += 1
                print(f"traceback for {text!r}:\n{traceback.format_exc()}", file=sys.stderr)
        if planned < 200 and is_demand(text):
            try:
                seconds, _ = plan_time(catalog, config, text)
            except InputError:
                continue
            except Exception:               # noqa: BLE001
                tracebacks += 1
                print(f"traceback planning {text!r}:\n{traceback.format_exc()}", file=sys.stderr)
                continue
            planned += 1
            worst = max(worst, seconds)
    return n, tracebacks, planned, worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--fuzz", type=int, default=10_000, help="fuzz cases (default 10000)")
    ap.add_argument("--random", type=int, default=20, help="random 4 KB expressions to plan")
    ap.add_argument("--old-commit", default="1bbf6b9", help="the code to compare the matcher with")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print(f"seed {args.seed}")
    catalog = load_catalog()
    config = Config(json.loads(json.dumps(DEFAULTS)), None)
    offers = catalog.offers
    print(f"catalog: {len(offers)} offers")

    plan_time(catalog, config, "ec2 && vcpu=2")       # warm up imports and caches
    plain = min(plan_time(catalog, config, "ec2 && vcpu=2")[0] for _ in range(5))
    cases = [("issue", issue_label()), ("pairs", pairs_label()), ("deep", deep_label()), ("chain", chain_label())]
    cases += [(f"random{i}", random_label(rng)) for i in range(args.random)]
    old = old_requirements(args.old_commit)
    worst, worst_name = 0.0, ""
    print(f"{'label':<9} {'bytes':>5} {'plan s':>7} {'match s':>8} {'old match s':>11}  chosen")
    for name, label in cases:
        seconds, chosen = plan_time(catalog, config, label)
        new_match = match_time(sys.modules["provisioner.requirements"], offers, label)
        old_match = match_time(old, offers, label) if old and not name.startswith("random") or \
            (old and name == "random0") else None
        shown_old = "crash" if old and old_match is None and (not name.startswith("random") or name == "random0") \
            else (f"{old_match:.3f}" if old_match is not None else "-")
        print(f"{name:<9} {len(label.encode()):>5} {seconds:>7.3f} {new_match:>8.3f} {shown_old:>11}  {chosen}")
        if seconds > worst:
            worst, worst_name = seconds, name
    print(f"\nworst plan time of an accepted label: {worst * 1000:.0f} ms ({worst_name}); plain label "
          f"'ec2 && vcpu=2' {plain * 1000:.0f} ms; ratio {worst / plain:.1f}x (target: every label < 500 ms)")

    n, tracebacks, planned, fuzz_worst = fuzz(rng, args.fuzz, catalog, config)
    print(f"fuzz: {n} cases x 5 entry points, {tracebacks} tracebacks; {planned} accepted demands planned, "
          f"worst {fuzz_worst * 1000:.0f} ms")
    return 1 if tracebacks or worst >= 0.5 else 0


if __name__ == "__main__":
    raise SystemExit(main())
