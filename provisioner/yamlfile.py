"""The one loader of the YAML files the product reads, and the schema check of what it loaded.

Every YAML document (the configuration, with its alerts rules, teams and labels sections) goes through
`parse_yaml`: YAML 1.2 (ruamel.yaml), so `on`, `yes`, `no`, `off` and `y` are the strings users mean,
only plain data (no Python tags), keys that are text, no key given twice in a mapping, and nesting
bounded. `check_schema` then walks a schema of nested dicts whose leaves are checkers
(value -> message or None) and names every unknown key and wrong value. Problems are
(key path, line, message) triples that `errors.ConfigError` prints as `FILE:LINE: key: message`
(exit 2); nothing here raises anything else, whatever the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from provisioner.errors import ConfigError

MAX_YAML_DEPTH = 64  # a configuration is a few levels deep; the scanner slows quadratically with depth

Problem = tuple[str, "int | None", str]
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Document:
    """A loaded YAML document: plain data (dict/list/str/int/float/bool/None/date) and the line of
    every key and list item by its path (`alerts.sinks[0].type`)."""

    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line(self, path: str) -> int | None:
        """The line of `path`, else of its nearest parent given in the file."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None


def parse_yaml(text: str, where: str) -> Document:
    """The document in `text` (from `where`); ConfigError naming file and line for anything wrong."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    depth, line = _flow_depth(text)
    if depth > MAX_YAML_DEPTH:  # the scanner would spend seconds on it before any other check
        raise ConfigError(where, [("", line, f"not valid YAML: brackets nested deeper than {MAX_YAML_DEPTH} levels")])
    yaml = YAML(typ="safe", pure=True)
    yaml.max_depth = MAX_YAML_DEPTH
    try:
        node = yaml.compose(text)
        problems, lines = _walk(node)
        if problems:
            raise ConfigError(where, problems)
        yaml.allow_duplicate_keys = True  # checked above on the nodes, with both lines
        data = yaml.load(text) if node is not None else None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(where, [("", mark.line + 1 if mark else None, f"not valid YAML: {problem}")]) from None
    except RecursionError:
        raise ConfigError(where, [("", None, "not valid YAML: nested too deeply")]) from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a timestamp with month 13
        raise ConfigError(where, [("", None, f"not valid YAML: {exc}")]) from None
    return Document(data, lines)


def read_text(path: str) -> str:
    """The file's text; ConfigError (exit 2) when it cannot be read or is not UTF-8."""
    from pathlib import Path
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [("", None, f"cannot read: {exc.strerror}")]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(str(path), [("", line, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                                                 f"at offset {exc.start})")]) from None


def load_yaml_file(path: str) -> Document:
    """Read and parse one YAML file (the only way the product reads one)."""
    return parse_yaml(read_text(path), str(path))


def _walk(root: Any) -> tuple[list[Problem], dict[str, int]]:
    """Keys given twice and keys that are not text, anywhere (YAML would keep the last one silently),
    and the line of every path. Iterative: a deep file cannot exhaust the recursion limit."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
    problems: list[Problem] = []
    lines: dict[str, int] = {}
    stack, seen = [(root, "")], set()
    while stack:
        node, prefix = stack.pop()
        if node is None or id(node) in seen:  # an alias: the anchored node was walked once
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[str, int] = {}
            for knode, vnode in node.value:
                line = knode.start_mark.line + 1
                if isinstance(knode, ScalarNode) and knode.tag == _MERGE_TAG:
                    stack.append((vnode, prefix))
                    continue
                if not isinstance(knode, ScalarNode) or knode.tag != _STR_TAG:
                    shown = knode.value if isinstance(knode, ScalarNode) else "a " + type(knode).__name__[:-4].lower()
                    problems.append((prefix.rstrip("."), line, f"key {shown!r} must be text (quote it)"))
                    continue
                name = knode.value
                path = f"{prefix}{name}"
                if name in first:
                    problems.append((path, line, f"duplicate key (first given at line {first[name]})"))
                    continue
                first[name] = line
                lines.setdefault(path, line)
                stack.append((vnode, path + "."))
        elif isinstance(node, SequenceNode):
            base = prefix.rstrip(".")
            for i, item in enumerate(node.value):
                lines.setdefault(f"{base}[{i}]", item.start_mark.line + 1)
                stack.append((item, f"{base}[{i}]."))
    return sorted(problems, key=lambda p: p[1] or 0), lines


def _flow_depth(text: str) -> tuple[int, int]:
    """The deepest nesting of [ and { outside quotes and comments, and the line where it is."""
    depth = deepest = 0
    deepest_line = line = 1
    quote = ""
    comment = False
    for i, ch in enumerate(text):
        if ch == "\n":
            line, comment = line + 1, False
        elif comment:
            continue
        elif quote:
            if ch == quote and not (quote == '"' and text[i - 1] == "\\"):
                quote = ""
        elif ch in "\"'" and (i == 0 or text[i - 1] in " \t\n[{,:-"):
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t\n"):
            comment = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest, deepest_line = depth, line
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest, deepest_line


# ---- the schema check ----------------------------------------------------------------------------

Checker = Callable[[Any], "str | None"]


def check_schema(doc: Document, schema: dict[str, Any]) -> list[Problem]:
    """Every unknown key and every value its checker refuses, by path and line. A schema is a dict
    of key -> checker or nested schema (a mapping section whose keys are all known)."""
    problems: list[Problem] = []
    if doc.data is None:
        return problems
    if not isinstance(doc.data, dict):
        return [("", 1, "the file must be a mapping of sections")]
    stack: list[tuple[dict, dict, str]] = [(doc.data, schema, "")]
    while stack:
        value, rules, prefix = stack.pop()
        for name, v in value.items():
            path = f"{prefix}{name}"
            if name not in rules:
                problems.append((path, doc.line(path), f"unknown key (known here: {', '.join(sorted(rules))})"))
                continue
            rule = rules[name]
            if isinstance(rule, dict):
                if v is None:
                    continue
                if not isinstance(v, dict):
                    problems.append((path, doc.line(path), "must be a mapping"))
                    continue
                stack.append((v, rule, path + "."))
                continue
            msg = rule(v)
            if msg:
                problems.append((path, doc.line(path), msg))
    return sorted(problems, key=lambda p: (p[1] or 0, p[0]))
