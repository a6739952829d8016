"""vCPU caps for one tick (pure): global, per label, and per EC2 quota class and market, per region.

`VcpuLedger` starts from the vCPUs of every live, booting and in-flight instance (the same ones the
count caps see) and adds each launch reconcile decides on, so a burst stops exactly where the next
build would not fit. A plan whose chosen offer's class is full may still launch on one of its
runners-up in a class with room (another class or the other market): the plan is narrowed to the
candidates that fit, so the cloud cannot fall back into the full class either. Only when none fits
is the item held:

* `cap:vcpu`  - daemon.max_vcpus (all agents together);
* `cap:label` - daemon.max_vcpus_per_label (detail `vcpu`; the count cap of the same name says `count`);
* `cap:class` - daemon.max_vcpus_per_class for the class and market;
* `quota`     - the account's Service Quota for the class and market (times daemon.quota_share).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Iterable, Mapping

from provisioner.catalog.model import Offer
from provisioner.clouds.base import Instance
from provisioner.quotas import class_label, quota_key
from provisioner.selection import Plan

ClassKey = tuple[str, str, str]     # (region, class, market)


def caps_active(settings) -> bool:
    return bool(settings.max_vcpus is not None or settings.max_vcpus_per_label is not None
                or settings.class_caps or settings.class_quotas)


def class_key(instance_type: str, market: str | None, region: str | None) -> ClassKey | None:
    key = quota_key(instance_type, market)
    return (region or "", *key) if key is not None else None


class VcpuLedger:
    """vCPUs in use now and decided this tick; `settings` is the daemon's Settings."""

    def __init__(self, settings, vcpus: Mapping[str, float]):
        self.s, self.vcpus = settings, vcpus
        self.total = 0.0
        self.per_label: Counter[str] = Counter()
        self.per_class: Counter[ClassKey] = Counter()
        self.limits: dict[ClassKey, tuple[float, str]] = {}
        for key, n in settings.class_caps.items():
            self.limits[key] = (float(n), "cap:class")
        for key, n in settings.class_quotas.items():
            if key not in self.limits or n < self.limits[key][0]:
                self.limits[key] = (float(n), "quota")

    def add_instance(self, inst: Instance, label: str | None) -> None:
        self._add(self.vcpus.get(inst.instance_type, 0.0), label, class_key(inst.instance_type, inst.market, inst.region))

    def add_plan(self, plan: Plan, label: str) -> None:
        self.add_offer(plan.chosen.offer, label)

    def add_offer(self, o: Offer, label: str | None) -> None:
        self._add(float(o.vcpu), label, class_key(o.instance_type, o.market, o.region))

    def refusal(self, offer: Offer, label: str) -> tuple[str, str] | None:
        """(reason, detail) when one more `offer` would break a vCPU cap; None when it fits."""
        return self._refusal(offer, label)

    def _add(self, v: float, label: str | None, key: ClassKey | None) -> None:
        self.total += v
        if label is not None:
            self.per_label[label] += v
        if key is not None:
            self.per_class[key] += v

    def _refusal(self, offer: Offer, label: str) -> tuple[str, str] | None:
        v = float(offer.vcpu)
        s = self.s
        if s.max_vcpus is not None and self.total + v > s.max_vcpus + 1e-9:
            return "cap:vcpu", f"{self.total:g}+{v:g}>{s.max_vcpus:g} vCPUs"
        if s.max_vcpus_per_label is not None and self.per_label[label] + v > s.max_vcpus_per_label + 1e-9:
            return "cap:label", f"vcpu {self.per_label[label]:g}+{v:g}>{s.max_vcpus_per_label:g}"
        key = class_key(offer.instance_type, offer.market, offer.region)
        if key is not None and key in self.limits:
            limit, reason = self.limits[key]
            if self.per_class[key] + v > limit + 1e-9:
                return reason, f"{offer.region} {class_label(key[1:])} {self.per_class[key]:g}+{v:g}>{limit:g}"
        return None

    def admit(self, plan: Plan, label: str) -> tuple[Plan | None, str, str]:
        """(the plan to launch, narrowed to what fits; or None with the reason and detail of the hold)."""
        refusal = self._refusal(plan.chosen.offer, label)
        if refusal is None:
            fitting = [c for c in plan.candidates if self._refusal(c.offer, label) is None]
            if len(fitting) != len(plan.candidates) and fitting:
                plan = replace(plan, candidates=tuple(fitting))
            return plan, "", ""
        fitting = [c for c in plan.candidates if self._refusal(c.offer, label) is None]
        if not fitting:
            return None, *refusal
        reason = f"vCPU caps: {refusal[1]} ({refusal[0]}); launching the runner-up {fitting[0].offer.instance_type} " \
                 f"{fitting[0].offer.market} instead."
        return replace(plan, chosen=fitting[0], candidates=tuple(fitting), reasons=(*plan.reasons, reason)), "", ""


def ledger_for(settings, vcpus: Mapping[str, float], instances: Iterable[tuple[Instance, str | None]]) -> VcpuLedger:
    ledger = VcpuLedger(settings, vcpus)
    for inst, label in instances:
        ledger.add_instance(inst, label)
    return ledger
