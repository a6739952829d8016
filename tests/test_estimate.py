"""The runtime model (provisioner/estimate.py) as plans see it: threads against cores, the runs
nearest to a type (its family, its CPU kind), and the bounds planning decides most types on."""

from __future__ import annotations

import random

import pytest

from provisioner.estimate import Estimate, RunWork, cpu_kind, estimate, reduce_run
from provisioner.requirements import Requirements
from provisioner.selection import PlanSettings, select
from tests.factories import offer, run


def test_a_run_that_left_cores_idle_is_credited_with_a_core_per_thread():
    """4 threads for 4000 s on a hyper-threaded 16-vCPU type (8 cores, 1000 single-core, 10560
    all-core): each thread had a core of its own, so the run did 4 x 1000 per second, not 4/16 of
    10560. On 4 vCPUs that are cores (5600 all-core) that work takes 4000 x 4000 / 5600 s; on 2
    such vCPUs 4000 x 4000 / 2000; on 2 vCPUs that are one core, the core's 1300."""
    ht16 = offer("m5.4xlarge", vcpu=16, mem=64, price=0.80, single=1000, multi=10560, cores=8)
    cores4 = offer("c7g.xlarge", vcpu=4, mem=8, price=0.14, single=1400, multi=5600)
    cores2 = offer("c7g.large", vcpu=2, mem=4, price=0.07, single=1000, multi=2000)
    ht2 = offer("m5.large", vcpu=2, mem=8, price=0.10, single=1000, multi=1300, cores=1)
    w = reduce_run(run(instance_type="m5.4xlarge", duration=4000, cpu_avg=400, cpu_max=400, vcpu=16), ht16, None)
    assert w.threads == 4 and w.parallel == pytest.approx(4000 * 4000)
    assert w.runtime_on(cores4) == pytest.approx(4000 * 4000 / 5600)    # not 4000 x 2640 / 5600
    assert w.runtime_on(cores2) == pytest.approx(4000 * 4000 / 2000)
    assert w.runtime_on(ht2) == pytest.approx(4000 * 4000 / 1300)
    # a run that filled its machine did the machine's all-core score
    full = reduce_run(run(instance_type="m5.4xlarge", duration=1000, cpu_avg=1600, cpu_max=1600, vcpu=16), ht16, None)
    assert full.parallel == pytest.approx(1000 * 10560) and full.runtime_on(ht16) == pytest.approx(1000)


def test_the_deadline_drops_a_move_that_fits_only_if_past_threads_are_read_per_vcpu():
    """History: 4 threads for 3000 s on a 16-vCPU type with hyper-threads (8 cores, 1000
    single-core, 9600 all-core). On 4 vCPUs that are cores (1000 each) the run takes 3000 s
    again (3750 s with the 25% margin); read per vCPU (600 each) it would take 1800 s. A target
    of 3200 s keeps the type the job ran on; on 2 such vCPUs (6000 s) a target of 7600 s fits."""
    ht16 = offer("c5.4xlarge", vcpu=16, mem=32, price=0.68, single=1000, multi=9600, cores=8)
    four = offer("c7g.xlarge", vcpu=4, mem=8, price=0.14, single=1000, multi=4000)
    two = offer("c7a.large", vcpu=2, mem=8, price=0.05, single=1000, multi=2000)
    runs = [run(n=i, instance_type="c5.4xlarge", duration=3000, cpu_avg=400, cpu_max=400, vcpu=16) for i in range(3)]
    est = estimate(runs, lambda t, r: ht16 if t == "c5.4xlarge" else None)
    req = Requirements.parse("ec2 && ondemand")
    tight = select([four, ht16], req, est, PlanSettings(timeout_s=4000, policy="deadline"))   # target 3200 s
    assert tight.chosen.offer.instance_type == "c5.4xlarge"
    assert any("1 offers dropped" in r for r in tight.reasons)
    roomy = select([four, ht16], req, est, PlanSettings(timeout_s=5000, policy="deadline"))   # target 4000 s
    assert roomy.chosen.offer.instance_type == "c7g.xlarge" and roomy.chosen.duration_s == pytest.approx(3000)
    fewer = select([two, ht16], req, est, PlanSettings(timeout_s=9500, policy="deadline"))    # target 7600 s
    assert fewer.chosen.offer.instance_type == "c7a.large" and fewer.chosen.duration_s == pytest.approx(6000)
    for timeout in (8000, 6000):                                                              # 6400 s, 4800 s
        assert select([two, ht16], req, est, PlanSettings(timeout_s=timeout, policy="deadline")) \
            .chosen.offer.instance_type == "c5.4xlarge", timeout


def test_another_size_of_a_family_the_job_ran_on_is_scaled_from_those_runs_with_the_family_margin():
    """Three single-thread runs of 9000 s on m5.2xlarge (1000 single-core) say 5000 s on a Graviton
    family scoring 1800; one run on r8g.large took 6000 s (the job gains less from the faster core
    than the scores say). r8g.medium is the same CPU: it takes what r8g.large took, 6000 s, and its
    deadline check carries the 10% family margin, not the 25% of a move across CPUs."""
    m5 = offer("m5.2xlarge", vcpu=8, mem=32, price=0.40, single=1000, multi=5400, cores=4)
    large = offer("r8g.large", vcpu=2, mem=16, price=0.10, single=1800, multi=3600)
    medium = offer("r8g.medium", vcpu=1, mem=8, price=0.05, single=1800, multi=1800)
    other = offer("c7g.medium", vcpu=1, mem=2, price=0.04, single=1800, multi=1800)
    runs = [run(n=i, instance_type="m5.2xlarge", duration=9000, cpu_avg=100, cpu_max=100, vcpu=8) for i in range(3)]
    runs.append(run(n=3, instance_type="r8g.large", duration=6000, cpu_avg=100, cpu_max=100, vcpu=2))
    types = {o.instance_type: o for o in (m5, large)}
    est = estimate(runs, lambda t, r: types.get(t))
    assert est.runtime_on(medium) == (pytest.approx(6000), False)
    assert [w.instance_type for w in est.kin(medium)] == ["r8g.large"] and est.kin(large) == ()
    assert est.runtime_on(other) == (pytest.approx(5000), False)    # the median of all four runs
    req = Requirements.parse("ec2 && ondemand")
    # target 6800 s: 6000 x 1.10 fits, 6000 x 1.25 would not
    p = select([m5, large, medium], req, est, PlanSettings(timeout_s=8500, policy="deadline"))
    assert p.chosen.offer.instance_type == "r8g.medium" and p.chosen.duration_s == pytest.approx(6000)
    tight = select([m5, large, medium], req, est, PlanSettings(timeout_s=8000, policy="deadline"))  # 6400 s
    assert tight.chosen.offer.instance_type == "r8g.large"      # measured: 6000 s as it is
    assert any("from runs on another size of the same family, 10%" in r for r in tight.reasons)
    # never more than the site's own margin
    assert select([m5, large, medium], req, est, PlanSettings(timeout_s=8000, scaled_margin=0.05,
                                                              policy="deadline")).chosen.offer == medium


def test_a_type_of_a_cpu_kind_the_job_ran_on_is_scaled_from_the_runs_on_that_kind():
    """Three single-thread runs of 9000 s on Intel m5.2xlarge (1000 single-core) and one of 7500 s
    on Graviton c7g.large (1500: the scores promised 6000 s). Another Graviton family is scaled
    from the Graviton run alone: 7500 x 1500 / 2000 on c8g.medium, not the 4500 s the Intel runs
    say; a kind the job never ran on (AMD with a core per vCPU) still hears every run."""
    m5 = offer("m5.2xlarge", vcpu=8, mem=32, price=0.40, single=1000, multi=5400, cores=4)
    c7g = offer("c7g.large", vcpu=2, mem=4, price=0.07, arch="arm64", single=1500, multi=3000)
    c8g = offer("c8g.medium", vcpu=1, mem=4, price=0.04, arch="arm64", single=2000, multi=2000)
    c7a = offer("c7a.medium", vcpu=1, mem=4, price=0.05, single=2000, multi=2000, cores=1)
    assert [cpu_kind(o) for o in (m5, c7g, c7a, offer(cores=0))] == ["x86_64-smt", "arm64", "x86_64-cores", ""]
    runs = [run(n=i, instance_type="m5.2xlarge", duration=9000, cpu_avg=100, cpu_max=100, vcpu=8) for i in range(3)]
    runs.append(run(n=3, instance_type="c7g.large", duration=7500, cpu_avg=100, cpu_max=100, vcpu=2))
    types = {o.instance_type: o for o in (m5, c7g)}
    est = estimate(runs, lambda t, r: types.get(t))
    assert est.runtime_on(c8g) == (pytest.approx(5625), False)
    assert est.runtime_on(c7a) == (pytest.approx(4500), False)     # the median of all four
    assert est.runtimes([c8g, c7a]) == {"c8g.medium": est.runtime_on(c8g), "c7a.medium": est.runtime_on(c7a)}
    b = est.runtime_bounds({o.instance_type: o for o in (c8g, c7a)})
    assert b.lo["c8g.medium"] <= 5625 <= b.hi["c8g.medium"] and b.hi["c8g.medium"] < 4500 * 1.3
    # target 6800 s: c8g.medium's 5625 s x 1.25 misses it (read from every run, 4500 s, it would
    # fit and be the cheapest); c7a.medium's 4500 s x 1.25 fits
    p = select([m5, c7g, c8g, c7a], Requirements.parse("ec2 && ondemand"), est,
               PlanSettings(timeout_s=8500, policy="deadline"))
    assert p.chosen.offer.instance_type == "c7a.medium" and p.chosen.duration_s == pytest.approx(4500)
    assert any("(arm64, x86_64-smt) are scaled from its runs on that kind" in r for r in p.reasons)


def test_a_run_that_filled_a_small_machine_has_the_threads_other_runs_saw():
    """16 threads: three runs kept all 16 vCPUs of m5.4xlarge busy, then one ran on Graviton
    c7g.large and kept its 2 vCPUs busy for 4000 s, which shows only that the job has 2 threads
    or more. Read with the 16 the other runs saw (its work is the same: 4000 s x c7g.large's whole
    3000), so the Graviton run, which alone scales to other Graviton types, predicts 8-vCPU
    c8g.2xlarge at its whole 16000, 750 s, not at 2 threads' 4000, 3000 s. A run that left vCPUs
    idle keeps the threads it showed."""
    m5 = offer("m5.4xlarge", vcpu=16, mem=64, price=0.80, single=1000, multi=10560, cores=8)
    c7g = offer("c7g.large", vcpu=2, mem=4, price=0.07, arch="arm64", single=1500, multi=3000)
    c8g = offer("c8g.2xlarge", vcpu=8, mem=16, price=0.30, arch="arm64", single=2000, multi=16000)
    m5x = offer("m5.2xlarge", vcpu=8, mem=32, price=0.40, single=1000, multi=5280, cores=4)
    runs = [run(n=i, instance_type="m5.4xlarge", duration=1200, cpu_avg=1600, cpu_max=1600, vcpu=16)
            for i in range(3)]
    runs.append(run(n=3, instance_type="c7g.large", duration=4000, cpu_avg=200, cpu_max=200, vcpu=2))
    runs.append(run(n=4, instance_type="m5.2xlarge", duration=3000, cpu_avg=400, cpu_max=400, vcpu=8))
    types = {o.instance_type: o for o in (m5, c7g, m5x)}
    est = estimate(runs, lambda t, r: types.get(t))
    assert {w.instance_type: w.threads for w in est.works} == {"m5.4xlarge": 16, "c7g.large": 16, "m5.2xlarge": 4}
    assert est.runtime_on(c8g) == (pytest.approx(4000 * 3000 / 16000), False)
    assert est.runtimes([c8g]) == {"c8g.2xlarge": est.runtime_on(c8g)}
    b = est.runtime_bounds({"c8g.2xlarge": c8g})
    assert b.lo["c8g.2xlarge"] <= 750 <= b.hi["c8g.2xlarge"]


@pytest.mark.parametrize("seed", range(20))
def test_runtime_bounds_hold_the_exact_runtime(seed):
    rng = random.Random(seed)
    works = tuple(RunWork(f"r{i}", "m5.large", 1.0, rng.choice([0.0, rng.uniform(1, 1e7)]),
                          rng.choice([0.0, rng.uniform(1, 1e7)]), rng.choice([1, 2, 4, 8, 64]),
                          family=rng.choice(["m5", "c7g", ""]), kind=rng.choice(["x86_64-smt", "arm64", ""]))
                  for i in range(rng.choice([1, 2, 3, 12])))
    est = Estimate(runs=len(works), works=works, by_type={"m5.large": [100.0, 300.0]})
    offers = {}
    for i in range(30):
        vcpu = rng.choice([1, 2, 8, 32])
        name = rng.choice(["t", "m5", "c7g"]) + f".x{i}"     # other sizes of a family the job ran on, or not
        offers[name] = offer(name, vcpu=vcpu, single=rng.uniform(100, 3000), multi=rng.uniform(100, 90000),
                             cores=rng.choice([0, vcpu, vcpu // 2]), arch=rng.choice(["x86_64", "arm64"]))
    offers["m5.large"] = offer("m5.large")
    offers["none"] = offer("none", single=0.0)
    b = est.runtime_bounds(offers)
    assert b.measured == {"m5.large"} and b.lo["m5.large"] == b.hi["m5.large"] == 200.0
    assert "none" not in b.lo
    assert b.kin == {t for t, o in offers.items() if t not in ("m5.large", "none") and est.kin(o)}
    for t, o in offers.items():
        if t not in ("m5.large", "none"):
            exact, measured = est.runtime_on(o)
            assert b.lo[t] <= exact <= b.hi[t] and not measured
            if t in b.kin:
                assert b.lo[t] == b.hi[t] == exact
            assert est.runtimes([o])[t] == (exact, False)       # the batch figure is the same, bit for bit
