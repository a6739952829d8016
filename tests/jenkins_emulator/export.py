"""Stapler's JSON export, reduced to what the emulator needs (tests/jenkins_emulator/README.md).

Renderers build a tree of `Bean`s whose properties carry Stapler's `@Exported` visibility; this
module writes that tree either `?depth=N` style (`ByDepth`: a property is written when its
visibility >= n, n = 1 - depth at the top and +1 per nesting level except through inline
properties) or `?tree=` style (`NamedPathPruner`: only the names listed, `*`, ranges `{M,N}`,
visibility ignored, unknown names skipped). `_class` is written in both modes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

VISIBLE = 999      # Queue.Item's defaultVisibility: shown at any depth


@dataclass
class Bean:
    """An @ExportedBean instance. `cls` is None when Stapler would not write `_class`."""
    cls: str | None
    props: list['Prop'] = field(default_factory=list)

    def add(self, name: str, value: Any, visibility: int = 1, inline: bool = False) -> 'Bean':
        self.props.append(Prop(name, value, visibility, inline))
        return self


@dataclass
class Prop:
    name: str
    value: Any
    visibility: int = 1
    inline: bool = False


class Opaque:
    """A value whose type is not an @ExportedBean: Stapler writes it as `{}`."""


OPAQUE = Opaque()


def _write(value: Any, child: Callable[[Bean], dict[str, Any]], rng: tuple[int, int | None] | None) -> Any:
    if isinstance(value, Bean):
        return child(value)
    if isinstance(value, Opaque):
        return {}
    if isinstance(value, (list, tuple)):
        items = list(value)
        if rng is not None:
            items = items[rng[0]:rng[1]]
        return [_write(v, child, None) for v in items]
    return value        # str, int, bool, None, and plain dicts (maps are written whole)


def by_depth(bean: Bean, depth: int = 0) -> dict[str, Any]:
    """`?depth=N` (default 0)."""
    return _depth(bean, 1 - depth)


def _depth(bean: Bean, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {} if bean.cls is None else {'_class': bean.cls}
    for p in bean.props:
        if p.visibility < n:
            continue
        child_n = n if p.inline else n + 1
        out[p.name] = _write(p.value, functools.partial(_depth, n=child_n), None)
    return out


# ---- tree= -----------------------------------------------------------------------------------------
@dataclass
class Tree:
    children: dict[str, 'Tree'] = field(default_factory=dict)
    range: tuple[int, int | None] | None = None


def parse_tree(spec: str) -> Tree:
    """Parse `a,b[c,d{0,2}]{0,10},*`; raises ValueError on unbalanced brackets."""
    root = Tree()
    pos = _parse_list(spec, 0, root)
    if pos != len(spec):
        raise ValueError(f'unexpected {spec[pos]!r} at {pos} in tree={spec}')
    return root


def _parse_list(spec: str, pos: int, into: Tree) -> int:
    while True:
        start = pos
        while pos < len(spec) and spec[pos] not in '[]{},':
            pos += 1
        name = spec[start:pos].strip()
        node = Tree()
        if pos < len(spec) and spec[pos] == '[':
            pos = _parse_list(spec, pos + 1, node)
            if pos >= len(spec) or spec[pos] != ']':
                raise ValueError(f'missing ] in tree={spec}')
            pos += 1
        if pos < len(spec) and spec[pos] == '{':
            end = spec.find('}', pos)
            if end < 0:
                raise ValueError(f'missing }} in tree={spec}')
            node.range = _parse_range(spec[pos + 1:end])
            pos = end + 1
        if name:
            into.children[name] = node
        if pos < len(spec) and spec[pos] == ',':
            pos += 1
            continue
        return pos


def _parse_range(text: str) -> tuple[int, int | None]:
    # Stapler's Range: {N} is element N only, {M,N} is [M, N), {M,} open-ended, {,N} the first N.
    if ',' not in text:
        n = int(text)
        return n, n + 1
    lo, hi = text.split(',', 1)
    return int(lo or 0), (int(hi) if hi.strip() else None)


def by_tree(bean: Bean, tree: Tree) -> dict[str, Any]:
    """`?tree=SPEC`."""
    out: dict[str, Any] = {} if bean.cls is None else {'_class': bean.cls}
    for p in bean.props:
        sub = tree.children.get(p.name) or tree.children.get('*')
        if sub is None:
            continue
        out[p.name] = _write(p.value, functools.partial(by_tree, tree=sub), sub.range)
    return out


def render(bean: Bean, query: dict[str, str]) -> dict[str, Any]:
    """Apply `tree=` if given, else `depth=` (Api#doJson's choice)."""
    if 'tree' in query:
        return by_tree(bean, parse_tree(query['tree']))
    return by_depth(bean, int(query.get('depth') or 0))
