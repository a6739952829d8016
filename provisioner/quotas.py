"""EC2 vCPU quota classes (pure): which quota an instance type counts against, and how many vCPUs are free.

AWS counts running on-demand instances and open spot requests in vCPUs, per region, per *class* of
instance families, and separately per market:

| class     | families                              | on-demand quota | spot quota  |
|-----------|---------------------------------------|-----------------|-------------|
| standard  | A, C, D, H, I, M, R, T, Z (and im, is, cr) | L-1216C47A | L-34B43A08 |
| f         | F (FPGA)                              | L-74FC7D96      | L-88CF9481  |
| g         | G and VT (gr6 too)                    | L-DB2E81BA      | L-3819A6DF  |
| inf       | Inf (Inferentia)                      | L-1945791B      | L-B5D1601B  |
| dl        | DL (Gaudi, dl2q)                      | L-6E869C2A      | L-85EED4F7  |
| p         | P                                     | L-417A185B      | L-7212CCBC  |
| trn       | Trn (Trainium)                        | L-2C3B7624      | L-6B0D517C  |
| x         | X                                     | L-7295265B      | L-E3A00192  |
| high-memory | u-*, u7i* (on demand only)          | L-43DA4232      | none        |
| hpc       | hpc* (on demand only)                 | L-F7808C92      | none        |

`quota_class` reads only the instance type's name (the family's leading letters), so it needs no
catalog; `headroom` and `fits` are the arithmetic the daemon's caps use. No I/O here: the reader of
the account's Service Quotas is provisioner/clouds/service_quotas.py.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

SPOT, ON_DEMAND = "spot", "on-demand"
MARKETS = (ON_DEMAND, SPOT)
CLASSES = ("standard", "f", "g", "inf", "dl", "p", "trn", "x", "high-memory", "hpc")

# (class, market) -> the Service Quotas code (service code "ec2")
QUOTA_CODES: dict[tuple[str, str], str] = {
    ("standard", ON_DEMAND): "L-1216C47A", ("standard", SPOT): "L-34B43A08",
    ("f", ON_DEMAND): "L-74FC7D96", ("f", SPOT): "L-88CF9481",
    ("g", ON_DEMAND): "L-DB2E81BA", ("g", SPOT): "L-3819A6DF",
    ("inf", ON_DEMAND): "L-1945791B", ("inf", SPOT): "L-B5D1601B",
    ("dl", ON_DEMAND): "L-6E869C2A", ("dl", SPOT): "L-85EED4F7",
    ("p", ON_DEMAND): "L-417A185B", ("p", SPOT): "L-7212CCBC",
    ("trn", ON_DEMAND): "L-2C3B7624", ("trn", SPOT): "L-6B0D517C",
    ("x", ON_DEMAND): "L-7295265B", ("x", SPOT): "L-E3A00192",
    ("high-memory", ON_DEMAND): "L-43DA4232",
    ("hpc", ON_DEMAND): "L-F7808C92",
}

# the family's leading letters -> class
_FAMILY_LETTERS: dict[str, str] = {
    **{k: "standard" for k in ("a", "c", "d", "h", "i", "m", "r", "t", "z", "im", "is", "cr")},
    "f": "f", "g": "g", "gr": "g", "vt": "g", "inf": "inf", "dl": "dl", "p": "p", "trn": "trn",
    "x": "x", "u": "high-memory", "hpc": "hpc",
}
_LETTERS = re.compile(r"([a-z]+)")


def quota_class(instance_type: str) -> str | None:
    """The vCPU quota class of an instance type ('m5.large' -> 'standard', 'inf2.xlarge' -> 'inf',
    'u-6tb1.metal' -> 'high-memory'); None for a name that is not an EC2 type we know a class of
    (mac*, or a malformed name)."""
    name = (instance_type or "").strip().lower()
    family = name.split(".", 1)[0]
    if not family or "." not in name:
        return None
    if family.startswith("mac"):
        return None                   # Mac instances run on Dedicated Hosts: counted in hosts, not vCPUs
    m = _LETTERS.match(family)
    if m is None:
        return None
    return _FAMILY_LETTERS.get(m.group(1))


def quota_key(instance_type: str, market: str | None) -> tuple[str, str] | None:
    """(class, market) as the quotas count it; None when the type has no class."""
    cls = quota_class(instance_type)
    if cls is None:
        return None
    return cls, (SPOT if market == SPOT else ON_DEMAND)


def class_label(key: tuple[str, str]) -> str:
    """'standard/on-demand': how logs, metrics and config errors name a (class, market)."""
    return f"{key[0]}/{key[1]}"


def usage_by_class(instances: Iterable[tuple[str, str | None, str | None, float]]) -> dict[tuple[str, str, str], float]:
    """vCPUs in use per (region, class, market), from (instance type, market, region, vCPUs) rows."""
    used: dict[tuple[str, str, str], float] = {}
    for itype, market, region, vcpu in instances:
        key = quota_key(itype, market)
        if key is None:
            continue
        k = (region or "", *key)
        used[k] = used.get(k, 0.0) + float(vcpu or 0)
    return used


def class_limits(configured: Mapping[str, Mapping[str, float]] | None,
                 account: Mapping[tuple[str, str, str], float] | None, regions: Iterable[str],
                 share: float = 1.0) -> dict[tuple[str, str, str], float]:
    """The vCPU limit per (region, class, market): the smaller of the configured cap (the config's
    `{market: {class: vCPUs}}`, the same in every region) and the account's quota times `share`."""
    limits: dict[tuple[str, str, str], float] = {}
    for region in regions:
        for market, by_class in (configured or {}).items():
            for cls, n in (by_class or {}).items():
                limits[(region, cls, market)] = float(n)
    for key, n in (account or {}).items():
        value = float(n) * share
        limits[key] = min(limits[key], value) if key in limits else value
    return limits


def config_problem(v: object) -> str | None:
    """Validator of `daemon.max_vcpus_per_class` ({on-demand|spot: {class: vCPUs}})."""
    if v is None:
        return None
    if not isinstance(v, dict):
        return f"must map a market ({', '.join(MARKETS)}) to {{class: vCPUs}}"
    for market, by_class in v.items():
        if market not in MARKETS:
            return f"{market!r}: the market must be one of {', '.join(MARKETS)}"
        if not isinstance(by_class, dict):
            return f"{market}: must map a quota class ({', '.join(CLASSES)}) to a number of vCPUs"
        for cls, n in by_class.items():
            if cls not in CLASSES:
                return f"{market}.{cls}: unknown quota class (known: {', '.join(CLASSES)})"
            if not isinstance(n, (int, float)) or isinstance(n, bool) or n < 0:
                return f"{market}.{cls}: must be a number of vCPUs >= 0, got {n!r}"
    return None
