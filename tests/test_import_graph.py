"""The import graph of provisioner/ (scripts/import_graph.py, ast over every import statement):
no new import cycle, and no module below the CLI importing provisioner.cli."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("import_graph", Path(__file__).parent.parent / "scripts" / "import_graph.py")
import_graph = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(import_graph)

# Cycles still to break (issue 12): none is left, and none may come back.
KNOWN_CYCLES: list[list[str]] = []
KNOWN_CLI_IMPORTS: list[tuple[str, str]] = []


def test_the_graph_sees_imports_inside_functions():
    edges = import_graph.graph()
    assert "provisioner.runner.engine_sdk" in edges["provisioner.runner.engine"]     # a lazy import
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_new_import_cycle():
    found = import_graph.cycles(import_graph.graph())
    assert [c for c in found if c not in KNOWN_CYCLES] == []
    assert [c for c in KNOWN_CYCLES if c not in found] == [], "a cycle was broken: drop it from KNOWN_CYCLES"


def test_nothing_below_the_cli_imports_it():
    assert import_graph.cli_imports(import_graph.graph()) == KNOWN_CLI_IMPORTS


def test_only_a_clouds_own_modules_and_the_registry_import_its_adapter():
    """clouds/registry.py builds every cloud: outside a cloud's own modules (provisioner.clouds.NAME,
    provisioner.clouds.NAME_*), nothing imports its adapter, so adding a cloud touches no caller."""
    adapters = import_graph.registered_adapters()
    assert adapters["docker"] == "provisioner.clouds.docker" and adapters["ec2"] == "provisioner.clouds.ec2"
    assert import_graph.adapter_imports(import_graph.graph(), adapters) == []


def test_the_adapter_check_names_an_import_from_outside_and_allows_the_clouds_own_modules():
    edges = {"provisioner.daemon.wiring": {"provisioner.clouds.ec2", "provisioner.clouds.base"},
             "provisioner.clouds.ec2_seam": {"provisioner.clouds.ec2"},
             "provisioner.clouds.registry": {"provisioner.clouds.ec2", "provisioner.clouds.docker"},
             "provisioner.clouds.docker": {"provisioner.clouds.ec2"}}
    adapters = {"ec2": "provisioner.clouds.ec2", "docker": "provisioner.clouds.docker"}
    assert import_graph.adapter_imports(edges, adapters) == [
        ("provisioner.clouds.docker", "provisioner.clouds.ec2"), ("provisioner.daemon.wiring", "provisioner.clouds.ec2")]


def test_code_is_placed_by_where_it_runs():
    """provisioner/agent/ runs on the instance, provisioner/remote/ on the user's machine (the launcher),
    provisioner/daemon/ on the daemon's host: the instance package imports neither of the others, and
    from outside it only the marker lines (the instance -> launcher protocol) and the IMDS client (for
    `provisioner run` on an instance, runner/instance_price.py) are imported. The secret bundle's
    format both sides share is provisioner/secret_bundle.py."""
    edges = import_graph.graph()
    instance = {m for m in edges if m == "provisioner.agent" or m.startswith("provisioner.agent.")}
    assert "provisioner.agent.watcher" in instance and "provisioner.remote.run" in edges
    reached = sorted({t for m in instance for t in edges[m]
                      if t.startswith(("provisioner.remote", "provisioner.daemon.", "provisioner.cli"))})
    assert reached == []
    shared = {"provisioner.agent", "provisioner.agent.markers", "provisioner.agent.imds"}
    assert sorted({t for m, targets in edges.items() if m not in instance for t in targets
                   if t in instance and t not in shared}) == []
