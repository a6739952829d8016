"""On a docker-cloud instance, the instance's size bounds the builds it starts."""

from __future__ import annotations

from provisioner.cli.run import _instance_ceiling

GIB = 1024 ** 3


def test_no_instance_means_no_ceiling():
    assert _instance_ceiling(None, None, {}) == {"cpus": None, "memory_bytes": None}
    assert _instance_ceiling(2.0, GIB, {}) == {"cpus": 2.0, "memory_bytes": GIB}


def test_instance_size_is_the_default_and_the_ceiling():
    env = {"PROVISIONER_CPUS": "2", "PROVISIONER_MEMORY": str(4 * GIB)}
    assert _instance_ceiling(None, None, env) == {"cpus": 2.0, "memory_bytes": 4 * GIB}
    assert _instance_ceiling(8.0, 16 * GIB, env) == {"cpus": 2.0, "memory_bytes": 4 * GIB}
    assert _instance_ceiling(1.0, GIB, env) == {"cpus": 1.0, "memory_bytes": GIB}


def test_garbage_values_are_ignored():
    assert _instance_ceiling(None, None, {"PROVISIONER_CPUS": "x", "PROVISIONER_MEMORY": "-1"}) == \
        {"cpus": None, "memory_bytes": None}
