"""Ec2Cloud's batched launch (`launch_many`): launches that differ only in their per-instance tags
(`ec2_params.batch_groups`) go out as one CreateFleet per batch and round; the fleet's instances,
sorted by id, go to the batch's specs in node order, and one CreateTags per instance then writes its
node, queue id, job and Name; separate batches go out side by side (`workers`). A spec alone takes
`launch`'s path. `describe` (ec2.py) finishes the assignment for instances a crash left without it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from provisioner import killpoints
from provisioner.catalog.model import Offer
from provisioner.clouds import ec2_params as P
from provisioner.clouds import ec2_responses as R
from provisioner.clouds.base import CloudError, Instance, LaunchSpec

log = logging.getLogger("provisioner.clouds.ec2")     # the adapter's one logger, as before the split


class BatchLaunchMixin:
    """Ec2Cloud's `launch_many` (it provides `settings`, `calls`, `workers`, `_launch`, `_rounds`,
    `_blocked_by`, `_round_inputs`, `_create_fleet`, `_log_launch`, `_log_launched`, `_describe_ids`,
    `_write_tags` and `_terminate_in`)."""

    def launch_many(self: Any, specs: Sequence[LaunchSpec]) -> list[Instance | CloudError]:
        """One instance per spec, or the CloudError that kept it from starting, in the specs' order.

        Specs of one batch (`ec2_params.batch_groups`) share each round's CreateFleet; a spec alone
        takes `launch`'s path. `last_launch_calls` counts the calls of the whole call."""
        before = Counter(self.calls)
        groups = P.batch_groups(specs, self.settings)

        def launch(group: list[int]) -> list[Instance | CloudError]:
            batch = [specs[i] for i in group]
            return self._launch_batch(batch) if batch[1:] else [self._launch_or_error(batch[0])]
        results: dict[int, Instance | CloudError] = {}
        try:
            if len(groups) > 1 and self.workers > 1:
                with ThreadPoolExecutor(min(self.workers, len(groups)), thread_name_prefix="ec2-launch") as pool:
                    outcomes = list(pool.map(launch, groups))
            else:
                outcomes = [launch(g) for g in groups]
            for group, outcome in zip(groups, outcomes):
                results.update(zip(group, outcome))
        finally:
            self.last_launch_calls = dict(self.calls - before)
        return [results[i] for i in range(len(specs))]

    def _launch_or_error(self: Any, spec: LaunchSpec) -> Instance | CloudError:
        try:
            return self._launch(spec)
        except CloudError as exc:
            return exc

    def _launch_batch(self: Any, specs: Sequence[LaunchSpec]) -> list[Instance | CloudError]:
        """A batch (ordered by node) through `_launch`'s rounds, each one CreateFleet for the specs
        still without an instance. Capacity and quota errors block offers and move on to the next
        round; any other error fails every spec still waiting, and the specs left after the last
        round get the combined error."""
        try:
            rounds = self._rounds(specs[0])
        except CloudError as exc:
            return [exc] * len(specs)
        done: dict[int, Instance] = {}
        failures: list[CloudError] = []
        for offers in rounds:
            todo = [i for i in range(len(specs)) if i not in done]
            try:
                launched, short = self._batch_round([specs[i] for i in todo], offers)
            except CloudError as exc:
                launched, short = [], exc
            done.update(zip(todo, launched))
            if short is None:
                break
            if short.kind not in ("capacity", "quota"):
                return [done.get(i, short) for i in range(len(specs))]
            failures.append(self._blocked_by(short))
        if len(done) == len(specs):
            return [done[i] for i in range(len(specs))]
        rest = R.combined(failures)                     # a round fell short: failures is not empty
        return [done.get(i, rest) for i in range(len(specs))]

    def _batch_round(self: Any, specs: Sequence[LaunchSpec], offers: Sequence[Offer]
                     ) -> tuple[list[Instance], CloudError | None]:
        """One CreateFleet for these specs: their instances, in spec order (fewer when the fleet fell
        short), and then the error for the specs left over."""
        region, market = offers[0].region, offers[0].market
        token = P.batch_token([s.client_token for s in specs], region, market)
        params = P.batch_params(specs, self.settings, offers=offers, token=token,
                                **self._round_inputs(region, specs[0], offers))
        self._log_launch(params, offers, specs[0].user_data, count=len(specs))
        ids, errors, response = self._create_fleet(region, params, offers)
        killpoints.reached("ec2.fleet-created")
        ids = sorted(ids)                              # the assignment rule `describe` repeats
        instances = self._tag_batch(region, specs, ids[:len(specs)], response)
        if ids[len(specs):]:
            self._terminate_extras(region, ids[len(specs):])
        return instances, None if len(ids) >= len(specs) else R.fleet_failure(errors, offers)

    def _terminate_extras(self: Any, region: str, ids: list[str]) -> None:
        """Instances a fleet started beyond its target; a failure is logged: they carry no node, so
        the daemon's orphan cleanup ends them later, and the assigned ones must not be lost."""
        log.warning("%s", R.event("fleet-extras", ids=ids, region=region))
        try:
            self._terminate_in(region, ids)
        except CloudError as exc:
            log.warning("%s", R.event("terminate-failed", ids=ids, code=exc.code, kind=exc.kind))

    def _tag_batch(self: Any, region: str, specs: Sequence[LaunchSpec], ids: list[str],
                   fleet: dict) -> list[Instance]:
        """Describe a round's instances once, write each its own tags (on it and its volumes) and
        return them with those tags. A failed describe or CreateTags is logged, not raised: the
        instances run, and `describe` writes the same assignment later."""
        try:
            items = self._describe_ids(region, ids)
        except CloudError as exc:
            log.warning("%s", R.event("describe-failed", ids=ids, code=exc.code))
            items = {}
        out = []
        for spec, iid in zip(specs, ids):
            tags = P.instance_tags(spec, self.settings)
            self._write_tags(region, iid, items.get(iid), tags)
            killpoints.reached("ec2.tagged")
            found = R.instance_of(items[iid], region) if iid in items else R.from_fleet(iid, region, fleet)
            out.append(replace(found, tags={**found.tags, **tags}))
            self._log_launched(out[-1])
        return out
