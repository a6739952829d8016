"""Requirements: label expressions and filters read as one predicate over catalog offers.

Semantics are docs/labels.md's ('Requirements: filters and labels'): numeric keys with `=` mean at
least; `vcpu`/`mem` are sizing keys that autotune may replace; `gpu accel arch type family region
disk` and the market atoms are hard (what `gpu` and `accel` name: provisioner/catalog/devices.py);
plain atoms (`linux`, the managed atom) carry no sizing meaning and are free booleans the node can
carry or not. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

from provisioner import decide, labels
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
MAX_FREE_ATOMS = 12  # plain atoms whose truth the node may choose (docs/labels.md, 'Limits')


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
    if not math.isfinite(value):
        raise UsageError(f"{raw!r} is not a finite number")
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


def always_true(offer: Offer) -> bool:
    """The predicate of a part no offer can fail (the managed atom, `exact`, `timeout=`...)."""
    return True


def _never(offer: Offer) -> bool:
    return False


def _names_type(term: Term) -> bool:
    return term.kind == "cmp" and term.key in ("type", "family") and term.op != "!="


@dataclass(frozen=True)
class Source:
    """One label expression or one filter, parsed, with the meaning of each of its atoms."""

    text: str
    kind: str                      # 'label' or 'filter'
    ast: labels.Node = field(repr=False)     # may be 1,000 deep: repr would recurse
    terms: dict[labels.Atom, Term]
    positive: dict[labels.Atom, bool]   # True unless an atom of that name occurs (also) negated
    forced: frozenset[str]              # plain atoms that are positive top-level conjuncts
    free: tuple[str, ...]               # the other plain atoms (truth chosen per offer)

    @cached_property
    def program(self) -> decide.Program:
        """The expression over its comparisons and free atoms (`decide`)."""
        meaning = {name: term for name, (term, _) in self.by_name.items()}

        def classify(atom: labels.Atom) -> tuple[int, object]:
            term = meaning[atom.name]
            if term.kind == "plain":
                return (decide.CONST, True) if atom.name in self.forced else (decide.FREE, None)
            if term.kind in ("exact", "meta") or term.key == "disk":
                return decide.CONST, True       # flags, metadata, a root volume any type can have
            return decide.CMP, None

        return decide.Program.compile(self.ast, classify, lambda name: _names_type(meaning[name]), self.free)

    @cached_property
    def by_name(self) -> dict[str, tuple[Term, bool]]:
        """Each atom name's meaning and whether it is positive."""
        return {a.name: (t, self.positive[a]) for a, t in self.terms.items()}

    @cached_property
    def _deciders(self) -> dict:
        return {}

    def decider(self, sizing: Sizing | None) -> decide.Decider:
        """The source over offers for one sizing (kept: matcher and type_named share its memo)."""
        if sizing not in self._deciders:
            if len(self._deciders) >= 8:        # a long-lived value planned for many sizings
                self._deciders.clear()
            terms = [self.by_name[n] for n in self.program.comparisons]
            self._deciders[sizing] = decide.Decider(
                self.program, [predicate(t, sizing, positive) for t, positive in terms],
                decide.groups([("market",) if t.kind == "market" else _READS.get(t.key) for t, _ in terms]))
        return self._deciders[sizing]


# What a comparison of each key reads, so that offers alike in it share one answer (a GPU
# comparison also reads the type: what the catalog knows of a GPU is the type's). A key not
# listed here, or one added later, is read per offer.
_READS = {"vcpu": ("vcpu",), "mem": ("memory_gib",), "arch": ("arch",), "type": ("instance_type",),
          "family": ("family",), "region": ("region",), "gpu": ("gpu_count", "gpu_model", "instance_type")}


def _source(text: str, kind: str, ast: labels.Node, where: str) -> Source:
    polarity = labels.polarity(ast)
    by_name: dict[str, set[bool]] = {}
    terms = {}
    for atom in labels.atoms(ast):
        terms[atom] = _finite(interpret(atom.name, where, atom.position + (1 if atom.quoted else 0)), where, atom)
        by_name.setdefault(atom.name, set()).update(polarity[id(atom)])
    # Jenkins decides an atom by its name: every occurrence has one truth, so an atom is positive
    # only where each occurrence of its name is (`mem=64 || spot) && !mem=64` has none positive).
    positive = {atom: by_name[atom.name] == {True} for atom in terms}
    forced = frozenset(a.name for a in labels.conjuncts(ast)
                       if isinstance(a, labels.Atom) and terms[a].kind == "plain")
    free = tuple(dict.fromkeys(a.name for a, t in terms.items() if t.kind == "plain" and a.name not in forced))
    if len(free) > MAX_FREE_ATOMS:
        raise labels.LabelTooComplex(f"{len(free)} plain atoms not '&&'-ed at the top level ({', '.join(free[:3])}"
                                     f", ...): at most {MAX_FREE_ATOMS}", where=where, expression=text)
    return Source(text, kind, ast, terms, positive, forced, free)


def _finite(term: Term, where: str, atom: labels.Atom) -> Term:
    if isinstance(term.value, float) and not math.isfinite(term.value):
        raise InputError(f"{term.text!r} is not a finite number", where=where, position=atom.position,
                         token=term.text)
    return term


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
        return any(_names_type(t) for t in self._positive_terms())

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
        """What the predicates over offers depend on (the parsed sources), hashable: a memo key
        (canonical text, not the tree: a tree 1,000 atoms deep is not hashed without recursion)."""
        return tuple((s.kind, labels.canonical(s.ast)) for s in self.sources)

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

        Decided once per truth vector of the comparisons (`decide`); `always_true` itself where
        no offer can fail it (narrowing then skips the step), a lone comparison's own predicate."""
        d = s.decider(sizing)
        if len(d.predicates) <= 1:
            outcomes = [s.program.run(v)[0] != 0 for v in ([(False,), (True,)] if d.predicates else [()])]
            if all(outcomes):
                return always_true
            if not any(outcomes):
                return _never
            test = d.predicates[0]
            return test if outcomes[1] else (lambda offer: not test(offer))
        return d.satisfied

    def type_named(self, sizing: Sizing | None = None) -> Callable[[Offer], bool]:
        """Does the branch an offer satisfies name its instance type or family (`type=`, `family=`)?
        Per offer: in `ec2 && (arch=arm64 || type=c7i.*)` a t4g offer is there by `arch=arm64`."""
        deciders = [s.decider(sizing) for s in self.sources
                    if any(_names_type(t) for t in s.terms.values())]
        if not deciders:
            return _never
        return lambda offer: any(d.named(offer) for d in deciders)

    def node_labels(self, offer: Offer, sizing: Sizing | None = None, managed_atom: str = "ec2") -> list[str]:
        """The labels of the node for this plan: the expression's atoms true for it, plus the managed atom.

        Jenkins decides atoms by name, so each name gets one truth: its comparison's for the
        offer, the assignment of free atoms that satisfies with fewest true, and a sizing atom that
        only occurs positively counts as true (the plan serves the declaration; the expression
        cannot turn false by it)."""
        names = [managed_atom]
        for s in self.sources:
            if s.kind != "label":
                continue
            d = s.decider(sizing)
            vector = dict(zip(s.program.comparisons, d.vector(offer)))
            chosen = d.assignment(offer)
            free = {name: chosen is None or bool(chosen >> i & 1) for i, name in enumerate(s.free)}
            for atom, term in s.terms.items():
                if term.kind == "plain":
                    true = atom.name in s.forced or free[atom.name]
                elif term.kind == "cmp" and term.key in SIZING and s.positive[atom]:
                    true = True
                else:
                    true = vector.get(atom.name, True)     # flags and metadata: true
                if true:
                    names.append(atom.name)
        return list(dict.fromkeys(names))

    def narrowing_steps(self, sizing: Sizing | None = None) -> list[tuple[str, Callable[[Offer], bool]]]:
        """Top-level conjuncts as (description, predicate), to name the one that empties the set
        (a conjunct written again, `linux && ... && linux`, is one step)."""
        steps, seen = [], set()
        for s in self.sources:
            for part in labels.conjuncts(s.ast):
                desc = s.text if s.kind == "filter" else labels.canonical(part)
                if desc in seen:
                    continue
                seen.add(desc)
                atoms = labels.atoms(part)
                names = {a.name for a in atoms}
                sub = Source(s.text, s.kind, part, {a: s.terms[a] for a in atoms},
                             {a: s.positive[a] for a in atoms}, s.forced & names,
                             tuple(n for n in s.free if n in names))
                steps.append((desc, self._source_test(sub, sizing)))
        return steps

    @property
    def conjunctive(self) -> bool:
        """True when checking each top-level conjunct alone decides the whole (no shared free atoms)."""
        return all(not s.free for s in self.sources)


def is_demand(expression: str | None, managed_atom: str = "ec2") -> bool:
    """Is a queue item's label ours: the managed atom a positive top-level conjunct (lax parse)?

    Read without the label limits: an item of ours beyond them is still ours, and is rejected as
    `label-too-complex` when its requirements are parsed."""
    if not expression:
        return False
    ast = labels.parse_jenkins(expression, limited=False)
    return any(isinstance(c, labels.Atom) and c.name == managed_atom for c in labels.conjuncts(ast))
