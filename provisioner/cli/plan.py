"""`provisioner plan`: which instance would this job get, and why."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys

from provisioner.cli.context import Context
from provisioner.config import POLICIES
from provisioner.units import format_duration

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("plan", parents=[common], help="explain which instance a job would get",
                       description="Choose the cheapest instance that meets the job's requirements "
                                   "and runtime target, from the catalog and the job's history.")
    p.add_argument("--filter", action="append", default=[], metavar="F",
                   help="a requirement such as vcpu>=8, mem>=16, gpu=a10g, arch=arm64, spot (repeatable)")
    p.add_argument("--label", metavar="EXPR", help="a Jenkins label expression, e.g. 'ec2 && vcpu=8 && mem=16'")
    p.add_argument("--job", metavar="NAME", help="the job whose history informs the plan")
    p.add_argument("--timeout", metavar="DURATION", help="the build's timeout (default: label's "
                   "timeout=, config, 6h); the runtime target is 80%% of it")
    p.add_argument("--policy", choices=POLICIES, help="deadline (default): cheapest that meets the "
                   "runtime target; cheapest; fastest")
    p.add_argument("--region", action="append", metavar="R", help="region to consider (repeatable)")
    p.add_argument("--no-autotune", action="store_true", help="keep the declared vCPU and memory as hard limits")
    p.add_argument("--max-price", type=_price, metavar="USD", help="maximum price per hour")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.set_defaults(func=run, json_errors=True)


def _price(text: str) -> float:
    try:
        value = float(text) if len(text) <= 40 else float("nan")
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):  # nan would pass every comparison below and mean "no cap"
        raise argparse.ArgumentTypeError(f"not a price in USD per hour: {text[:40]!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than zero: {text[:40]!r}")
    return value


def run(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.planner import plan_job  # the catalog and selection: only when planning
    settings_flags = {"timeout": args.timeout, "policy": args.policy, "regions": args.region,
                      "max_price": args.max_price, "no_autotune": args.no_autotune}
    result = plan_job(ctx, label=args.label, filters=args.filter, job=args.job, **settings_flags)
    from provisioner.catalog.notice import due
    for w in due(result.warnings):
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        out = result.plan.to_dict()
        out["budget"] = result.budget
        print(json.dumps(out))
    else:
        print(render(result))
    return 0


def render(result) -> str:
    from provisioner.planner import reason_lines  # the request, settings and reasons (run --remote prints them too)
    plan = result.plan
    c = plan.chosen
    o = c.offer
    lines = reason_lines(result)
    lines.append("")
    lines.append(f"Plan: {o.instance_type} ({o.market}, {o.region}) {o.vcpu} vCPU, {o.memory_gib:g} GiB"
                 + (f", {o.devices()}" if o.gpu_count or o.accel_count else ""))
    lines.append(f"  price ${o.price:.4f}/h" + (f" (on-demand ${o.ondemand_price:.4f}/h)" if o.ondemand_price else "")
                 + f", perf/price {c.perf_per_price:,.0f}, predicted {format_duration(c.duration_s)}"
                 f" ({c.duration_s:.0f}s), cost ${c.cost_usd:.4f}")
    lines.append(f"  node labels: {' '.join(plan.node_labels)}")
    if len(plan.candidates) > 1:
        lines.append("")
        lines.append("Runners-up:")
        lines.append(f"  {'type':<16} {'market':<9} {'region':<12} {'vCPU':>4} {'GiB':>7} {'$/h':>9} "
                     f"{'predicted':>10} {'cost $':>9}")
        for cand in plan.candidates[1:]:
            x = cand.offer
            lines.append(f"  {x.instance_type:<16} {x.market:<9} {x.region:<12} {x.vcpu:>4} "
                         f"{x.memory_gib:>7g} {x.price:>9.4f} {cand.duration_s:>9.0f}s {cand.cost_usd:>9.4f}")
    return "\n".join(lines)
