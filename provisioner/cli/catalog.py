"""`provisioner catalog show|refresh`: list offers; update the local cache from AWS."""

from __future__ import annotations

import argparse
import json
import sys

from provisioner.cli.context import Context


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("catalog", parents=[common], help="list offers or refresh prices from AWS")
    cs = p.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    show = cs.add_parser("show", parents=[common], help="list offers (type x region x market)")
    show.add_argument("--filter", action="append", default=[], metavar="F",
                      help="a requirement such as vcpu>=8, mem>=16, gpu=t4, spot (repeatable)")
    show.add_argument("--label", metavar="EXPR", help="a label expression, as for plan")
    show.add_argument("--region", action="append", metavar="R",
                      help="region (repeatable; default: the config's regions)")
    show.add_argument("--sort", choices=("price", "vcpu", "memory", "score", "type"), default="price")
    show.add_argument("--limit", type=int, default=50, help="rows to print (0 = all; default 50)")
    show.add_argument("--json", action="store_true", help="print a JSON list of offers")
    show.set_defaults(func=run_show, json_errors=True)
    refresh = cs.add_parser("refresh", parents=[common],
                            help="fetch instance types, spot prices and on-demand prices from AWS")
    refresh.add_argument("--region", action="append", metavar="R", help="region (repeatable)")
    refresh.add_argument("--endpoint-url", metavar="URL",
                         help="AWS endpoint override (tests, VPC endpoints)")
    refresh.set_defaults(func=run_refresh)


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.catalog import load_catalog
    from provisioner.requirements import Requirements

    d = ctx.config.defaults
    catalog = load_catalog(score_source=d.score_source, max_age_days=d.catalog_max_age_days)
    for w in catalog.warnings:
        print(f"warning: {w}", file=sys.stderr)
    req = Requirements.parse(args.label, args.filter, no_autotune=True)
    match = req.matcher()
    regions = set(args.region or ([] if req.mentions_region else ctx.config.regions))
    offers = [o for o in catalog.offers if (not regions or o.region in regions) and match(o)]
    keys = {"price": lambda o: (o.price, o.instance_type), "vcpu": lambda o: (o.vcpu, o.price),
            "memory": lambda o: (o.memory_gib, o.price), "score": lambda o: (-o.score_multi, o.price),
            "type": lambda o: (o.instance_type, o.region, o.market)}
    offers.sort(key=keys[args.sort])
    if args.limit > 0:
        shown = offers[:args.limit]
    else:
        shown = offers
    if args.json:
        print(json.dumps([o._asdict() for o in shown]))
        return 0
    print(f"{'type':<18} {'market':<9} {'region':<14} {'vCPU':>5} {'cores':>5} {'GiB':>8} {'GPU/accel':<12} "
          f"{'arch':<7} {'$/h':>9} {'od $/h':>9} {'int%/mo':>7} {'1-core':>8} {'all-core':>10}")
    for o in shown:
        gpu = o.devices().replace("x ", "x") or "-"
        od = f"{o.ondemand_price:.4f}" if o.ondemand_price else "-"
        ir = f"{o.interruption_rate * 100:.1f}" if o.interruption_rate is not None else "-"
        cores = o.cores or "-"
        print(f"{o.instance_type:<18} {o.market:<9} {o.region:<14} {o.vcpu:>5} {cores:>5} {o.memory_gib:>8g} "
              f"{gpu[:12]:<12} {o.arch:<7} {o.price:>9.4f} {od:>9} {ir:>7} {o.score_single:>8.0f} "
              f"{o.score_multi:>10.0f}")
    print(f"{len(shown)} of {len(offers)} offers; source: {catalog.source}; scores: {catalog.score_source}",
          file=sys.stderr)
    return 0


def run_refresh(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.catalog.refresh import refresh

    regions = args.region or ctx.config.regions
    summary = refresh(regions, endpoint_url=args.endpoint_url)
    for line in summary:
        print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout)
    return 0
