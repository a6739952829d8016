"""Requirements: label expressions and filters read as one predicate over catalog offers.

Semantics are CONTRACTS.md's ('Requirements: filters and labels'): numeric keys with `=` mean at
least; `vcpu`/`mem` are sizing keys that autotune may replace; `gpu accel arch type family region
disk` and the market atoms are hard (what `gpu` and `accel` name: provisioner/catalog/devices.py);
plain atoms (`linux`, the managed atom) carry no sizing meaning and are free booleans the node can
carry or not. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from dataclasses import dataclass
from typing import Any, Callable

from provisioner import labels
from provisioner.catalog import devices
from provisioner.catalog.model import ON_DEMAND, SPOT, Offer
from provisioner.errors import InputError, UsageError
from provisioner.units import parse_duration_s, parse_memory_gib

KEYS = ("vcpu", "mem", "gpu", "accel", "arch", "type", "family", "region", "disk", "timeout", "team")
ALIASES = {"memory": "mem", "cpu": None}  # 'cpu' is a common slip: reported as unknown, hinting vcpu
SIZING = ("vcpu", "mem")
MARKET_ATOMS = {"spot": SPOT, "ondemand": ON_DEMAND, "on-demand": ON_DEMAND}
ARCHES = {"x86_64": "x86_64", "x86-64": "x86_64", "amd64": "x86_64", "arm64": "arm64",
          "aarch64": "arm64", "arm": "arm64"}
_COMPARISON = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*(>=|<=|==|!=|=|>|<)\s*(.*?)\s*$")
MAX_FREE_ATOMS = 10  # plain atoms whose truth we search over; more get set true


@dataclass(frozen=True)
class Term:
    """What one atom means. kind: 'cmp' (a key comparison), 'market', 'exact', 'meta', 'plain'."""

    kind: str
    text: str                   # the atom as written (its name)
    key: str = ""
    op: str = ""
    value: Any = None
    count: int | None = None    # gpu, accel: the count alongside a name (at least, or == exactly)

    def describe(self) -> str:
        return self.text


def interpret(text: str, where: str = "", position: int = 0) -> Term:
    """Read one atom or filter: a key comparison, a market atom, `exact`, or a plain atom."""
    low = text.strip().lower()
    if low in MARKET_ATOMS:
        return Term("market", text, value=MARKET_ATOMS[low])
    if low == "exact":
        return Term("exact", text)
    m = _COMPARISON.match(text)
    if not m:
        if any(c in text for c in "<>="):
            raise InputError(f"cannot read {text!r}: expected KEY=VALUE or KEY>=VALUE",
                             where=where, position=position, token=text)
        return Term("plain", text)
    raw_key, op, raw = m.group(1), m.group(2), m.group(3)
    key = ALIASES.get(raw_key.lower(), raw_key.lower())
    value_pos = position + m.start(3)
    if key not in KEYS:
        hint = " (did you mean vcpu?)" if raw_key.lower() == "cpu" else ""
        raise InputError(f"unknown key {raw_key!r} in {text!r}{hint}; known keys: "
                         f"{', '.join(KEYS)}, memory, and the atoms spot, ondemand, exact",
                         where=where, position=position + m.start(1), token=text)
    if not raw:
        raise InputError(f"{key} has no value in {text!r}", where=where, position=value_pos, token=text)
    try:
        return _comparison(text, key, op, raw)
    except UsageError as exc:
        raise InputError(str(exc), where=where, position=value_pos, token=text) from None


def _comparison(text: str, key: str, op: str, raw: str) -> Term:
    if key in ("vcpu", "disk", "mem"):
        value = parse_memory_gib(raw) if key in ("mem", "disk") else _number(raw, whole=True)
        if value <= 0 and op in ("=", ">=", ">"):
            raise UsageError(f"{key} must be greater than zero in {text!r}")
        if key == "disk" and op not in ("=", ">="):
            raise UsageError(f"disk sets the root volume size: write disk=N (GiB), not {text!r}")
        return Term("cmp", text, key, op, value)
    if key in ("gpu", "accel"):
        name, count = devices.parse_request(key, op, raw, text)
        return Term("cmp", text, key, op, name, count)
    if op not in ("=", "==", "!="):
        raise UsageError(f"{key} takes =, == or !=, not {op!r}")
    if key == "arch":
        if raw.lower() not in ARCHES:
            raise UsageError(f"unknown architecture {raw!r}: use x86_64 or arm64")
        return Term("cmp", text, key, op, ARCHES[raw.lower()])
    if key == "timeout":
        if op == "!=":
            raise UsageError("timeout takes =")
        return Term("meta", text, key, op, parse_duration_s(raw))
    if key == "team":
        return Term("meta", text, key, op, raw)
    return Term("cmp", text, key, op, raw.lower())  # type, family, region


def _number(raw: str, whole: bool = False) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{raw!r} is not a number") from None
    if whole and value != int(value):
        raise UsageError(f"{raw!r} is not a whole number")
    return value


def _compare(actual: float, op: str, wanted: float) -> bool:
    if op in ("=", ">="):
        return actual >= wanted
    return {">": actual > wanted, "<=": actual <= wanted, "<": actual < wanted,
            "==": actual == wanted, "!=": actual != wanted}[op]


@dataclass(frozen=True)
class Sizing:
    """Floors that replace the declared vcpu/mem atoms when autotune applies."""

    vcpu: float | None = None
    mem_gib: float | None = None


def predicate(term: Term, sizing: Sizing | None = None, sizing_positive: bool = True) -> Callable[[Offer], bool]:
    """A non-plain term as a predicate over offers (plain atoms are decided by the caller).

    Built once per plan and called per offer, so each branch returns a small closure (the common
    "at least" comparisons read their attribute directly: getattr and `_compare` would double it).
    """
    if term.kind == "market":
        market = term.value
        return lambda o: o.market == market
    if term.kind in ("exact", "meta") or term.key == "disk":
        return lambda o: True  # flags, metadata, and a root volume any type can have
    key, op, v = term.key, term.op, term.value
    if key in SIZING:
        floor = (sizing.vcpu if key == "vcpu" else sizing.mem_gib) if sizing else None
        if floor is not None and sizing_positive and op in ("=", ">=", ">"):
            if key == "vcpu":
                return lambda o: o.vcpu >= floor
            return lambda o: o.memory_gib >= floor
        if op in ("=", ">="):
            if key == "vcpu":
                return lambda o: o.vcpu >= v
            return lambda o: o.memory_gib >= v
        attr = "vcpu" if key == "vcpu" else "memory_gib"
        return lambda o: _compare(getattr(o, attr), op, v)
    if key in ("gpu", "accel"):
        return devices.predicate(key, op, v, term.count)
    attr = {"arch": "arch", "type": "instance_type", "family": "family", "region": "region"}[key]
    if any(c in v for c in "*?["):
        match = lambda o: fnmatch.fnmatchcase(getattr(o, attr).lower(), v)  # noqa: E731
    else:
        match = lambda o: getattr(o, attr).lower() == v  # noqa: E731
    return match if op != "!=" else (lambda o: not match(o))


Compiled = Callable[[Offer, dict], bool]


def _compile(node: labels.Node, s: "Source", sizing: Sizing | None) -> Compiled:
    """The expression as nested closures over (offer, plain-atom assignment)."""
    if isinstance(node, labels.Atom):
        term = s.terms[node]
        if term.kind == "plain":
            name = node.name
            if name in s.forced:
                return lambda o, a: True
            return lambda o, a: a.get(name, True)
        test = predicate(term, sizing, s.positive[node])
        return lambda o, a: test(o)
    if isinstance(node, labels.Paren):
        return _compile(node.inner, s, sizing)
    if isinstance(node, labels.Not):
        inner = _compile(node.operand, s, sizing)
        return lambda o, a: not inner(o, a)
    left, right = _compile(node.left, s, sizing), _compile(node.right, s, sizing)
    if node.op == "&&":
        return lambda o, a: left(o, a) and right(o, a)
    if node.op == "||":
        return lambda o, a: left(o, a) or right(o, a)
    if node.op == "->":
        return lambda o, a: (not left(o, a)) or right(o, a)
    return lambda o, a: left(o, a) == right(o, a)


def always_true(offer: Offer) -> bool:
    """The predicate of a part no offer can fail (the managed atom, `exact`, `timeout=`...)."""
    return True


def _never(offer: Offer) -> bool:
    return False


def _fold(node: labels.Node, s: "Source", sizing: Sizing | None,
          assign: dict[str, bool]) -> Callable[[Offer], bool] | bool:
    """`_compile` under one fixed assignment of the plain atoms: a predicate over offers, or a
    constant where no offer changes the outcome.

    Its result runs for every offer of the catalog, so a forced atom should cost nothing and a
    lone comparison one call, not four nested ones. The parts are pure booleans, which makes
    folding exact (`x && true` is `x`, `x || true` is true...).
    """
    if isinstance(node, labels.Atom):
        term = s.terms[node]
        if term.kind == "plain":
            return node.name in s.forced or assign.get(node.name, True)
        if term.kind in ("exact", "meta") or term.key == "disk":
            return True     # as `predicate` has it
        return predicate(term, sizing, s.positive[node])
    if isinstance(node, labels.Paren):
        return _fold(node.inner, s, sizing, assign)
    if isinstance(node, labels.Not):
        return _negate(_fold(node.operand, s, sizing, assign))
    left, right = _fold(node.left, s, sizing, assign), _fold(node.right, s, sizing, assign)
    op = node.op
    if op == "->":      # l -> r is !l || r
        op, left = "||", _negate(left)
    if isinstance(left, bool) and isinstance(right, bool):
        return {"&&": left and right, "||": left or right, "<->": left == right}[op]
    if isinstance(left, bool) or isinstance(right, bool):
        const, fn = (left, right) if isinstance(left, bool) else (right, left)
        if op == "&&":
            return fn if const else False
        if op == "||":
            return True if const else fn
        return fn if const else _negate(fn)     # <->
    if op == "&&":
        return lambda o: left(o) and right(o)
    if op == "||":
        return lambda o: left(o) or right(o)
    return lambda o: left(o) == right(o)


def _negate(part: Callable[[Offer], bool] | bool) -> Callable[[Offer], bool] | bool:
    return (not part) if isinstance(part, bool) else (lambda o: not part(o))


@dataclass(frozen=True)
class Source:
    """One label expression or one filter, parsed, with the meaning of each of its atoms."""

    text: str
    kind: str                      # 'label' or 'filter'
    ast: labels.Node
    terms: dict[labels.Atom, Term]
    positive: dict[labels.Atom, bool]   # True unless the atom occurs (also) negated
    forced: frozenset[str]              # plain atoms that are positive top-level conjuncts
    free: tuple[str, ...]               # the other plain atoms (truth chosen per offer)

    def assignments(self) -> list[dict[str, bool]]:
        """Truth values to try for the free plain atoms, fewest true first."""
        free = self.free[:MAX_FREE_ATOMS]
        rest = {a: True for a in self.free[MAX_FREE_ATOMS:]}
        out = []
        for k in range(len(free) + 1):
            for chosen in itertools.combinations(free, k):
                out.append({a: (a in chosen) for a in free} | rest)
        return out


def _source(text: str, kind: str, ast: labels.Node, where: str) -> Source:
    polarity = labels.polarity(ast)
    terms, positive = {}, {}
    for atom in labels.atoms(ast):
        terms[atom] = interpret(atom.name, where, atom.position + (1 if atom.quoted else 0))
        positive[atom] = polarity[id(atom)] == {True}
    forced = frozenset(a.name for a in labels.conjuncts(ast)
                       if isinstance(a, labels.Atom) and terms[a].kind == "plain")
    free = tuple(dict.fromkeys(a.name for a, t in terms.items() if t.kind == "plain" and a.name not in forced))
    return Source(text, kind, ast, terms, positive, forced, free)


@dataclass(frozen=True)
class Requirements:
    """A job's requirements: label and filter sources, all of which must hold (an AND)."""

    sources: tuple[Source, ...] = ()
    no_autotune: bool = False   # --no-autotune (the label atom `exact` does the same)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def parse(cls, label: str | None = None, filters: list[str] | tuple[str, ...] = (),
              *, lax: bool = False, no_autotune: bool = False) -> "Requirements":
        """From a label expression (strict Jenkins grammar, or `lax` = Jenkins' fallback) and filters."""
        sources = []
        if label is not None and label.strip():
            where = f"label {label!r}"
            ast = labels.parse_jenkins(label) if lax else labels.parse(label)
            sources.append(_source(label, "label", ast, where))
        for f in filters:
            if not f.strip():
                raise InputError("empty filter", where="--filter")
            sources.append(_source(f, "filter", labels.Atom(f.strip(), 0, False), f"filter {f!r}"))
        return cls(tuple(sources), no_autotune)

    # -- what was declared -------------------------------------------------------------------
    def _positive_terms(self) -> list[Term]:
        out = []
        for s in self.sources:
            out.extend(t for a, t in s.terms.items() if s.positive[a])
        return out

    def _declared(self, key: str) -> float | None:
        values = [t.value + (1 if t.op == ">" and key == "vcpu" else 0) for t in self._positive_terms()
                  if t.kind == "cmp" and t.key == key and t.op in ("=", ">=", ">")]
        return max(values) if values else None

    @property
    def vcpu(self) -> float | None:
        return self._declared("vcpu")

    @property
    def mem_gib(self) -> float | None:
        return self._declared("mem")

    @property
    def disk_gib(self) -> float | None:
        return self._declared("disk")

    @property
    def exact(self) -> bool:
        return self.no_autotune or any(t.kind == "exact" for t in self._positive_terms())

    @property
    def has_market_atom(self) -> bool:
        return any(t.kind == "market" for s in self.sources for t in s.terms.values())

    def _meta(self, key: str) -> Any:
        values = [t.value for t in self._positive_terms() if t.kind == "meta" and t.key == key]
        return values[-1] if values else None

    @property
    def timeout_s(self) -> float | None:
        return self._meta("timeout")

    @property
    def team(self) -> str | None:
        return self._meta("team")

    @property
    def mentions_region(self) -> bool:
        return any(t.key == "region" for s in self.sources for t in s.terms.values())

    @property
    def mentions_arch(self) -> bool:
        """Does any atom or filter speak of `arch` (`arch=arm64`, `arch!=x86_64`, `!arch=arm64`)?"""
        return any(t.key == "arch" for s in self.sources for t in s.terms.values())

    @property
    def names_type(self) -> bool:
        """Does a positive `type=` or `family=` atom pick instance types by name?"""
        return any(t.kind == "cmp" and t.key in ("type", "family") and t.op != "!="
                   for t in self._positive_terms())

    @property
    def text(self) -> str:
        return " && ".join(s.text if s.kind == "label" else labels.atom_expression(s.text)
                           for s in self.sources)

    def to_dict(self) -> dict:
        """The declared requirements, only the keys that are set (the test-vector format)."""
        out: dict[str, Any] = {}
        positive = self._positive_terms()
        for key, name in (("vcpu", "vcpu"), ("mem", "mem_gib"), ("disk", "disk_gib")):
            v = self._declared(key)
            if v is not None:
                out[name] = int(v) if key == "vcpu" else v
        for t in positive:
            if t.kind == "cmp" and t.key in ("gpu", "accel") and t.op != "!=":
                out[f"{t.key}_count"] = max(out.get(f"{t.key}_count", 0), t.count)
                if t.value:
                    out[f"{t.key}_model"] = t.value
            elif t.kind == "cmp" and t.key in ("arch", "type", "family", "region") and t.op != "!=":
                out[t.key] = t.value
            elif t.kind == "market":
                out["market"] = t.value
        if self.exact:
            out["exact"] = True
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        if self.team is not None:
            out["team"] = self.team
        plain = [a.name for s in self.sources for a, t in s.terms.items()
                 if t.kind == "plain" and s.positive[a]]
        if plain:
            out["atoms"] = list(dict.fromkeys(plain))
        return out

    # -- evaluation --------------------------------------------------------------------------
    @property
    def key(self) -> tuple:
        """What the predicates over offers depend on (the parsed sources), hashable: a memo key."""
        return tuple((s.kind, s.ast) for s in self.sources)

    def sizing_used(self, sizing: Sizing | None) -> tuple[float | None, float | None]:
        """The floors of `sizing` the predicates apply: a floor replaces only a positive at-least
        atom of its key (`predicate`), so a label without `mem=` is matched alike for any memory."""
        if sizing is None:
            return None, None
        keys = {t.key for s in self.sources for a, t in s.terms.items()
                if t.kind == "cmp" and t.key in SIZING and s.positive[a] and t.op in ("=", ">=", ">")}
        return (sizing.vcpu if "vcpu" in keys else None), (sizing.mem_gib if "mem" in keys else None)

    def matcher(self, sizing: Sizing | None = None) -> Callable[[Offer], bool]:
        """A predicate over offers (`sizing` replaces the declared vcpu/mem floors)."""
        tests = [self._source_test(s, sizing) for s in self.sources]
        return lambda offer: all(test(offer) for test in tests)

    @staticmethod
    def _source_test(s: Source, sizing: Sizing | None) -> Callable[[Offer], bool]:
        """Is there a truth assignment of the free plain atoms that makes the source true?

        `always_true` itself where no offer can fail it (narrowing then skips the step)."""
        folded = [_fold(s.ast, s, sizing, a) for a in s.assignments()]
        if any(f is True for f in folded):
            return always_true
        tests = [f for f in folded if f is not False]
        if not tests:
            return _never
        if len(tests) == 1:
            return tests[0]
        return lambda offer: any(test(offer) for test in tests)

    @staticmethod
    def _assignment(s: Source, offer: Offer, sizing: Sizing | None) -> dict | None:
        fn = _compile(s.ast, s, sizing)
        return next((a for a in s.assignments() if fn(offer, a)), None)

    def node_labels(self, offer: Offer, sizing: Sizing | None = None, managed_atom: str = "ec2") -> list[str]:
        """The labels of the node for this plan: the expression's atoms true for it, plus the managed atom."""
        names = [managed_atom]
        for s in self.sources:
            if s.kind != "label":
                continue
            assign = self._assignment(s, offer, sizing) or {}
            for atom, term in s.terms.items():
                if term.kind == "plain":
                    true = atom.name in s.forced or assign.get(atom.name, True)
                elif term.kind == "cmp" and term.key in SIZING and s.positive[atom]:
                    true = True   # sizing atoms count as true: the plan serves the declaration
                else:
                    true = predicate(term, sizing, s.positive[atom])(offer)
                if true:
                    names.append(atom.name)
        return list(dict.fromkeys(names))

    def narrowing_steps(self, sizing: Sizing | None = None) -> list[tuple[str, Callable[[Offer], bool]]]:
        """Top-level conjuncts as (description, predicate), to name the one that empties the set."""
        steps = []
        for s in self.sources:
            for part in labels.conjuncts(s.ast):
                names = {a.name for a in labels.atoms(part)}
                sub = Source(s.text, s.kind, part, s.terms, s.positive, s.forced & names,
                             tuple(n for n in s.free if n in names))
                desc = s.text if s.kind == "filter" else labels.canonical(part)
                steps.append((desc, self._source_test(sub, sizing)))
        return steps

    @property
    def conjunctive(self) -> bool:
        """True when checking each top-level conjunct alone decides the whole (no shared free atoms)."""
        return all(not s.free for s in self.sources)


def is_demand(expression: str | None, managed_atom: str = "ec2") -> bool:
    """Is a queue item's label ours: the managed atom a positive top-level conjunct (lax parse)?"""
    if not expression:
        return False
    ast = labels.parse_jenkins(expression)
    return any(isinstance(c, labels.Atom) and c.name == managed_atom for c in labels.conjuncts(ast))
