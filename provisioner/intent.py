"""A job's intent, resolved once: one frozen value that `plan`, `run --remote` and the daemon plan
from, and that launch, the bootstrap and the remote `provisioner run` read from the Plan.

What it settles, each with a reason the plan prints:
* the requirements: the label and filters as declared, plus what the rules below add as filters;
* the timeout (`--timeout` > the label's `timeout=` > the config's `defaults.timeout` > 6 h) and the
  runtime target (its share of the timeout);
* the market: a market atom restricts only as a top-level conjunct of the expression (`ec2 && spot`
  is spot only, and then fails over only to other spot offers; `!ondemand` reads as `spot`);
  nested ones (`ec2 && (spot || ondemand)`) restrict nothing. A job interrupted repeatedly is
  planned on demand (the daemon's rule), unless the label itself restricts the market;
* the architecture: only those the cloud has an image for and, unless the request names `arch`
  or a type or family, the config's `defaults.arch` (`run --remote` brings its own rule: the job
  image's platforms);
* the root volume and the team.

Pure: no I/O. The host's architecture and the config come in as values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from provisioner import labels
from provisioner.catalog.model import ON_DEMAND, SPOT
from provisioner.config_tree import DefaultsSection
from provisioner.requirements import Requirements
from provisioner.units import format_duration, parse_duration_s

BUILTIN_TIMEOUT_S = 6 * 3600.0
ARCH_CHOICES = ("x86_64", "arm64", "any")
ALL_ARCHES = ("arm64", "x86_64")
RECENT_RUNS = 10            # the daemon counts interruptions among a job's newest runs
_OTHER_MARKET = {SPOT: ON_DEMAND, ON_DEMAND: SPOT}


@dataclass(frozen=True)
class ArchRule:
    """An architecture decided before planning (`run --remote`'s image-platform rule): `arch` is
    pinned as a requirement (None: any), `reason` says why."""

    arch: str | None
    reason: str


@dataclass(frozen=True)
class Intent:
    declared: Requirements            # the label and filters as given
    requirements: Requirements        # what the plan matches: the declaration plus the rules' filters
    timeout_s: float
    timeout_from: str                 # which rule gave the timeout
    runtime_target: float             # the share of the timeout a plan must fit in
    market: str | None                # the only market planned (spot | on-demand); None: both
    market_forced: bool               # on demand because of interruptions, not the request
    arch: str | None                  # the architecture the arch rule pinned (None: not pinned)
    disk_gib: float
    team: str | None
    no_autotune: bool
    reasons: tuple[str, ...]

    @property
    def target_s(self) -> float:
        return self.timeout_s * self.runtime_target

    @property
    def spot_only(self) -> bool:
        """A launch fails over only to other spot offers (never to an on-demand twin)."""
        return self.market == SPOT

    @property
    def text(self) -> str:
        """The request as the user wrote it (label and filters)."""
        return self.declared.text


# ---- the rules (pure functions of the parsed requirements) -------------------------------------

def _top_level_atoms(req: Requirements):
    """(source, atom, negated) for every atom that is, alone or negated, a top-level conjunct."""
    for s in req.sources:
        for part in labels.conjuncts(s.ast):
            node, negated = part, False
            while isinstance(node, (labels.Paren, labels.Not)):
                if isinstance(node, labels.Not):
                    negated = not negated
                    node = node.operand
                else:
                    node = node.inner
            if isinstance(node, labels.Atom) and node in s.terms:
                yield s, node, negated


def market_of(req: Requirements) -> str | None:
    """The one market the request allows: a market atom as a top-level conjunct (`spot`, or
    `!ondemand`, which reads the same). Nested ones restrict nothing here (the matcher still
    evaluates them offer by offer); contradictory ones leave it to the matcher (no offer)."""
    found = set()
    for s, atom, negated in _top_level_atoms(req):
        term = s.terms[atom]
        if term.kind == "market":
            found.add(_OTHER_MARKET[term.value] if negated else term.value)
    return found.pop() if len(found) == 1 else None


def names_type(req: Requirements) -> bool:
    """Does a positive top-level conjunct pick instance types by name (`type=`, `family=`)?"""
    return any(not negated and s.terms[a].kind == "cmp" and s.terms[a].key in ("type", "family")
               and s.terms[a].op != "!=" for s, a, negated in _top_level_atoms(req))


def ec2_image_arches(ec2: Any) -> frozenset[str]:
    """The architectures with an AMI in `config.ec2.images` (plain or GPU slot, any region)."""
    slots = {slot for images in (ec2.images or {}).values() for slot in (images or {})}
    return frozenset(a for a in ALL_ARCHES if a in slots or f"gpu_{a}" in slots)


def image_arches(config: Any, host_arch: str) -> tuple[frozenset[str] | None, str]:
    """The architectures the configured cloud has an image for, and where that comes from.

    EC2: those with an AMI in `ec2.images` (a plain or GPU slot, in any region); none configured
    is unknown (None): the launch names the missing image. The docker cloud: its instances are
    containers on this host, so the host's architecture, unless `defaults.arch` is set (a host
    that emulates others says so there; `any` is both)."""
    from provisioner.clouds import registry
    own = registry.adapter(config.cloud).image_arches(config)
    if own is not None:
        return own
    chosen = config.defaults.arch
    if chosen:
        arches = frozenset(ALL_ARCHES if chosen == "any" else (chosen,))
        return arches, f"the {config.cloud} cloud runs {', '.join(sorted(arches))} (defaults.arch)"
    return frozenset((host_arch,)), f"the {config.cloud} cloud runs the host's architecture, {host_arch}"


def config_arch_rule(req: Requirements, default_arch: str | None, images: frozenset[str] | None,
                     where: str) -> ArchRule:
    """The architecture `plan` and the daemon pin: only those with an image (`images`, None:
    unknown, and `where` says so), and among them `defaults.arch` unless the request names `arch`
    or a type or family."""
    have = sorted(images) if images else list(ALL_ARCHES)
    if req.mentions_arch or names_type(req):
        what = "the request names arch" if req.mentions_arch else "the request names a type or family"
        pin = have[0] if len(have) == 1 else None
        return ArchRule(pin, f"Architecture: {what}; {where}.")
    wanted = [a for a in have if (default_arch or "x86_64") in ("any", a)]
    default = default_arch or "x86_64"
    if not wanted:
        pin = have[0] if len(have) == 1 else None
        return ArchRule(pin, f"Architecture: {' or '.join(have)}, as there is no image for defaults.arch "
                             f"{default} ({where}).")
    pin = wanted[0] if len(wanted) == 1 else None
    return ArchRule(pin, f"Architecture: {pin or 'any'} (defaults.arch {default}; {where}).")


def timeout_rule(flag: float | str | None, req: Requirements, defaults: DefaultsSection | None) -> tuple[float, str]:
    """`--timeout` > the label's `timeout=` > the config's `defaults.timeout` > 6 h (`defaults`:
    `config.defaults`; None: no config)."""
    if flag is not None and flag != "":
        return (parse_duration_s(flag) if isinstance(flag, str) else float(flag)), "--timeout"
    if req.timeout_s is not None:
        return float(req.timeout_s), "the label's timeout="
    if defaults is not None and defaults.timeout and defaults.timeout_s is not None:
        return defaults.timeout_s, "the config's defaults.timeout"
    return BUILTIN_TIMEOUT_S, "the default"


def default_timeout_s(defaults: DefaultsSection | None) -> float:
    """The job timeout when neither a flag nor the label gives one (timeout_rule's own fallback)."""
    return timeout_rule(None, Requirements(), defaults)[0]


def recent_interruptions(runs: list[dict]) -> int:
    """Interrupted runs among the job's newest RECENT_RUNS."""
    return sum(1 for r in runs[-RECENT_RUNS:] if r.get("interrupted"))


# ---- the resolver -------------------------------------------------------------------------------

def resolve(label: str | None, filters: list[str] | tuple[str, ...] = (), *, defaults: DefaultsSection | None,
            timeout: float | str | None = None, no_autotune: bool = False, lax: bool = False,
            arch: ArchRule | Callable[[Requirements], ArchRule] | None = None, interruptions: int = 0,
            ondemand_after: int = 0, team: str | None = None) -> Intent:
    """The job's intent from its request (label, filters, flags), the config's `defaults`, the
    architecture rule (the caller's own, or a function of the declared requirements such as
    `config_arch_rule`) and its recent interruptions (on demand from `ondemand_after` on; 0: never).

    `lax`: the label is read as Jenkins does (its fallback for what it cannot parse), for queue items.
    """
    declared = Requirements.parse(label, list(filters), lax=lax, no_autotune=no_autotune)
    reasons: list[str] = []
    timeout_s, timeout_from = timeout_rule(timeout, declared, defaults)
    runtime_target = float(defaults.runtime_target if defaults is not None else 0.8)
    reasons.append(f"Timeout {format_duration(timeout_s)} from {timeout_from} (--timeout > the label's "
                   f"timeout= > defaults.timeout > 6h); runtime target {runtime_target:.0%} of it, "
                   f"{timeout_s * runtime_target:.0f}s.")
    extra: list[str] = []
    market, forced = market_of(declared), False
    recent = f"interrupted at least {interruptions} times in its last {RECENT_RUNS} runs"
    if market is not None:
        fail_over = "fails over only to other spot offers" if market == SPOT else "on-demand offers only"
        reasons.append(f"Market: {market} only (a top-level market atom; {fail_over}).")
        if ondemand_after and interruptions >= ondemand_after and market == SPOT:
            reasons.append(f"The job was {recent}, but the request asks for spot: kept.")
    elif ondemand_after and interruptions >= ondemand_after:
        market, forced = ON_DEMAND, True
        extra.append("ondemand")
        reasons.append(f"Market: on-demand only: the job was {recent} "
                       f"(daemon.ondemand_after_interruptions {ondemand_after}).")
    pinned = None
    if callable(arch):
        arch = arch(declared)
    if arch is not None:
        pinned = arch.arch
        if pinned:
            extra.append(f"arch={pinned}")
        reasons.append(arch.reason)
    requirements = declared
    if extra:
        added = Requirements.parse(None, extra)
        requirements = Requirements(declared.sources + added.sources, declared.no_autotune)
    disk = declared.disk_gib or float(defaults.disk_gib if defaults is not None else 30)
    return Intent(declared=declared, requirements=requirements, timeout_s=timeout_s,
                  timeout_from=timeout_from, runtime_target=runtime_target, market=market,
                  market_forced=forced, arch=pinned, disk_gib=disk, team=declared.team or team,
                  no_autotune=declared.exact, reasons=tuple(reasons))
