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

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

from provisioner import labels

CONST, CMP, FREE, NOT, AND, OR, IMPLIES, IFF = range(8)
_OPS = {"&&": AND, "||": OR, "->": IMPLIES, "<->": IFF}


@dataclass(frozen=True)
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
        patterns = _patterns(self.free)
        naming = self.naming
        stack: list[tuple[int, int]] = []
        push, pop = stack.append, stack.pop
        for op, arg in self.code:
            if op == CMP:
                t = full if vector[arg] else 0
                push((t, t if arg in naming else 0))
            elif op == FREE:
                push((patterns[arg], 0))
            elif op == CONST:
                push((full if arg else 0, 0))
            elif op == NOT:
                push((pop()[0] ^ full, 0))          # a negated branch names nothing
            else:
                bt, bn = pop()
                at, an = pop()
                if op == AND:
                    t = at & bt
                    push((t, t & (an | bn)))
                elif op == OR:
                    push((at | bt, an | bn))
                elif op == IMPLIES:
                    push(((at ^ full) | bt, bn))
                else:
                    t = (at ^ bt) ^ full
                    push((t, t & (an | bn)))
        return stack[0]


@lru_cache(maxsize=16)
def _patterns(k: int) -> tuple[int, ...]:
    """For each free atom i, the bit set of the assignments in which it is true."""
    width = 1 << k
    return tuple(sum(1 << j for j in range(width) if j >> i & 1) for i in range(k))


@lru_cache(maxsize=16)
def fewest_true_first(k: int) -> tuple[int, ...]:
    """Assignments ordered by how many free atoms they set true (a node gets few derived labels)."""
    return tuple(sorted(range(1 << k), key=lambda j: (bin(j).count("1"), j)))


class Decider:
    """A program with its comparison predicates (for one sizing): answers per offer, memoized
    per truth vector. The memo holds at most one entry per distinct vector of the offers asked."""

    def __init__(self, program: Program, predicates: Sequence[Callable]):
        self.program = program
        self.predicates = tuple(predicates)
        self._memo: dict[tuple[bool, ...], tuple[int, int]] = {}

    def vector(self, offer) -> tuple[bool, ...]:
        return tuple(p(offer) for p in self.predicates)

    def masks(self, offer) -> tuple[int, int]:
        v = self.vector(offer)
        got = self._memo.get(v)
        if got is None:
            got = self._memo[v] = self.program.run(v)
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
