#!/usr/bin/env python3
"""The import graph of provisioner/ (ast, every import statement, at module level or inside a
function): prints its cycles, imports from a non-CLI module into provisioner.cli, and imports of a
cloud's adapter from outside that cloud's own modules (clouds/registry.py alone builds clouds).

    python scripts/import_graph.py        # exit 1 when there is a cycle or a CLI import
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for path in sorted((root / "provisioner").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the provisioner modules it imports (a package import counts as its __init__)."""
    mods = modules(root)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges[name].add(t)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def cli_imports(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) where a module outside provisioner.cli imports provisioner.cli."""
    def is_cli(m: str) -> bool:
        return m == "provisioner.cli" or m.startswith("provisioner.cli.")
    return sorted((a, b) for a, bs in edges.items() for b in bs if is_cli(b) and not is_cli(a)
                  and a != "provisioner.__main__")


REGISTRY = "provisioner.clouds.registry"


def registered_adapters() -> dict[str, str]:
    """cloud name -> its adapter module, for the product's registered clouds."""
    sys.path.insert(0, str(ROOT))
    from provisioner.clouds import registry
    out = {}
    for name in registry.names():
        target = registry.entry(name).adapter
        if isinstance(target, str) and target.startswith("provisioner."):
            out[name] = target.partition(":")[0]
    return out


def adapter_imports(edges: dict[str, set[str]], adapters: dict[str, str]) -> list[tuple[str, str]]:
    """(importer, adapter) where a module imports a cloud's adapter though it is neither the registry
    nor one of that cloud's own modules (provisioner.clouds.NAME, provisioner.clouds.NAME_*)."""
    def own(importer: str, name: str) -> bool:
        base = f"provisioner.clouds.{name}"
        return importer == base or importer.startswith((base + "_", base + "."))
    return sorted((a, m) for a, targets in edges.items() for name, m in adapters.items()
                  if m in targets and a != REGISTRY and not own(a, name))


def main() -> int:
    edges = graph()
    found, up = cycles(edges), cli_imports(edges)
    outside = adapter_imports(edges, registered_adapters())
    for comp in found:
        print("cycle:", " <-> ".join(comp))
    for a, b in up:
        print(f"CLI import: {a} -> {b}")
    for a, b in outside:
        print(f"adapter import: {a} -> {b}")
    print(f"{len(found)} import cycles, {len(up)} imports into provisioner.cli from below, "
          f"{len(outside)} imports of a cloud's adapter from outside it")
    return 1 if found or up or outside else 0


if __name__ == "__main__":
    sys.exit(main())
