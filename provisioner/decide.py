"""A label expression decided once per truth vector of its comparisons, not once per offer.

An expression's atoms are of three sorts: constants (a plain atom that is a positive top-level
conjunct, `exact`, `timeout=`...), comparisons that an offer decides (`vcpu=8`, `spot`, `type=m5.*`)
and free plain atoms (`linux` under an `||`), whose truth the node's labels may choose. Offers that
agree on every comparison (the same *truth vector*) get the same answer, so the expression is
evaluated once per vector, for all 2^k assignments of the k free atoms at once: each value is a
bit set over the assignments (bit j: the assignment in which free atom i is true iff bit i of j is
set). A catalog of ~15k offers has a few hundred vectors at most; k is at most 12 (4096 bits).

Alongside its truth, each value carries the assignments under which it holds through a branch that
names an instance type or family (`type=c7i.*`): selection allows burstable and previous-generation
types only there. Pure, iterative (no recursion at any depth).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Callable, Hashable, Sequence

from provisioner import labels

CONST, CMP, FREE, NOT, AND, OR, IMPLIES, IFF = range(8)
_OPS = {"&&": AND, "||": OR, "->": IMPLIES, "<->": IFF}


@dataclass(frozen=True, eq=False)
class Program:
    """The expression in postfix form over numbered comparisons and free atoms."""

    code: tuple[tuple[int, int], ...]
    comparisons: tuple[str, ...]     # atom names, in order of first occurrence
    naming: frozenset[int]           # comparisons that name a type or family (positively)
    free: int                        # number of free plain atoms

    @classmethod
    def compile(cls, ast: labels.Node, classify: Callable[[labels.Atom], tuple[int, object]],
                naming: Callable[[str], bool], free: Sequence[str]) -> "Program":
        """`classify(atom)` is (CONST, bool), (CMP, None) or (FREE, None)."""
        code: list[tuple[int, int]] = []
        cmp_index: dict[str, int] = {}
        free_index = {name: i for i, name in enumerate(free)}
        for n in labels.postorder(ast):
            if isinstance(n, labels.Atom):
                sort, value = classify(n)
                if sort == CONST:
                    code.append((CONST, int(bool(value))))
                elif sort == FREE:
                    code.append((FREE, free_index[n.name]))
                else:
                    code.append((CMP, cmp_index.setdefault(n.name, len(cmp_index))))
            elif isinstance(n, labels.Not):
                code.append((NOT, 0))
            elif isinstance(n, labels.Binary):
                code.append((_OPS[n.op], 0))
        names = tuple(cmp_index)
        return cls(tuple(code), names, frozenset(i for i, name in enumerate(names) if naming(name)),
                   len(free))

    def run(self, vector: Sequence[bool]) -> tuple[int, int]:
        """(truth, named) bit sets over the free-atom assignments, for one comparison vector."""
        full = (1 << (1 << self.free)) - 1
        return self._function(vector, full, _patterns(self.free))

    @cached_property
    def _function(self) -> Callable:
        """The program as one straight-line Python function (a large expression is evaluated
        once per vector, and an interpreter loop costs ~10x the bytecode of one line per node).
        The generated text holds only register names and integer indices, never label text."""
        lines = ["def run(v, F, P):"]
        naming = bool(self.naming)
        stack: list[int] = []
        for r, (op, arg) in enumerate(self.code):
            if op == CMP:
                t, n = f"F if v[{arg}] else 0", (f"t{r}" if arg in self.naming else "0")
            elif op == FREE:
                t, n = f"P[{arg}]", "0"
            elif op == CONST:
                t, n = ("F" if arg else "0"), "0"
            elif op == NOT:
                a = stack.pop()
                t, n = f"t{a} ^ F", "0"
            else:
                b, a = stack.pop(), stack.pop()
                t = {AND: f"t{a} & t{b}", OR: f"t{a} | t{b}", IMPLIES: f"(t{a} ^ F) | t{b}",
                     IFF: f"t{a} ^ t{b} ^ F"}[op]
                n = {AND: f"t{r} & (n{a} | n{b})", OR: f"n{a} | n{b}", IMPLIES: f"n{b}",
                     IFF: f"t{r} & (n{a} | n{b})"}[op]
            lines.append(f"    t{r} = {t}")
            if naming:
                lines.append(f"    n{r} = {n}")
            stack.append(r)
        last = len(self.code) - 1
        lines.append(f"    return t{last}, {f'n{last}' if naming else '0'}")
        namespace: dict = {}
        exec(compile("\n".join(lines), "<label expression>", "exec"), namespace)  # noqa: S102
        return namespace["run"]


@lru_cache(maxsize=16)
def _patterns(k: int) -> tuple[int, ...]:
    """For each free atom i, the bit set of the assignments in which it is true."""
    width = 1 << k
    return tuple(sum(1 << j for j in range(width) if j >> i & 1) for i in range(k))


@lru_cache(maxsize=16)
def fewest_true_first(k: int) -> tuple[int, ...]:
    """Assignments ordered by how many free atoms they set true (a node gets few derived labels)."""
    return tuple(sorted(range(1 << k), key=lambda j: (bin(j).count("1"), j)))


def groups(reads: Sequence[tuple[str, ...] | None]) -> list[tuple[Callable[[object], Hashable], list[int]]]:
    """`Decider`'s groups from the offer attributes each comparison reads (None: unknown, the
    whole offer): the market, the region, and one group for the rest (what the type decides)."""
    by_reads: dict[tuple[str, ...] | None, list[int]] = {}
    for i, r in enumerate(reads):
        by_reads.setdefault(r if r in (None, ("market",), ("region",)) else ("hardware",), []).append(i)
    out = []
    for r, indices in by_reads.items():
        if r is None:
            out.append((_whole, indices))
        else:
            attrs = sorted({a for i in indices for a in reads[i]})
            out.append((operator.attrgetter(*attrs), indices))
    return out


def _whole(offer: object) -> object:
    return offer


class Decider:
    """A program with its comparison predicates (for one sizing): answers per offer, memoized.

    `groups` splits the comparisons by what they read: (key, indices), where `key(offer)`
    captures everything those comparisons read (the market; the region; vCPUs and memory...).
    Each group's truths are memoized by its key, and the answer by the group truths together, so
    a catalog of 15k offers costs a few dictionary look-ups per offer and one evaluation per vector.
    """

    def __init__(self, program: Program, predicates: Sequence[Callable],
                 groups: Sequence[tuple[Callable[[object], Hashable], Sequence[int]]]):
        self.program = program
        self.predicates = tuple(predicates)
        self.groups = [(key, tuple(indices), {}) for key, indices in groups]
        self._answers: dict[tuple, tuple[int, int]] = {}

    def vector(self, offer) -> tuple[bool, ...]:
        return tuple(p(offer) for p in self.predicates)

    def masks(self, offer) -> tuple[int, int]:
        parts = []
        for key, indices, memo in self.groups:
            k = key(offer)
            part = memo.get(k)
            if part is None:
                part = memo[k] = tuple(self.predicates[i](offer) for i in indices)
            parts.append(part)
        whole = tuple(parts)
        got = self._answers.get(whole)
        if got is None:
            vector = [False] * len(self.predicates)
            for (_, indices, _), part in zip(self.groups, parts):
                for i, truth in zip(indices, part):
                    vector[i] = truth
            got = self._answers[whole] = self.program.run(vector)
        return got

    def satisfied(self, offer) -> bool:
        return self.masks(offer)[0] != 0

    def named(self, offer) -> bool:
        """Does a branch the offer satisfies name its instance type or family?"""
        return self.masks(offer)[1] != 0

    def assignment(self, offer) -> int | None:
        """The free-atom assignment (bit i: atom i true) with fewest true that satisfies, or None."""
        truth = self.masks(offer)[0]
        if not truth:
            return None
        return next(j for j in fewest_true_first(self.program.free) if truth >> j & 1)
