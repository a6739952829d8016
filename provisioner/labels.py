"""Jenkins label expressions: lexer, parser, canonical names and evaluation.

A faithful re-implementation of Jenkins' grammar (core `LabelExpressionLexer/Parser.g4`, see
shared/jenkins-api.md section 2): operators `&& || ! -> <->`, parentheses, unquoted atoms and
double-quoted string atoms. `parse` is strict and raises `LabelSyntaxError` with a position;
`parse_jenkins` mirrors `Jenkins#getLabel`, which unquotes a fully quoted string and falls back to
reading an unparseable expression as one atom. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Union

from provisioner.errors import InputError

# Characters that end an unquoted atom (a '-' also ends it when a '>' follows).
_NOT_ATOM = set("&|!<>()\"' \t")
# Jenkins#checkGoodName rejects these; such atoms are printed quoted in canonical names.
_UNSAFE_NAME = set("?*/\\%!@#$^&|<>[]:;")
_QUOTE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f",
                  "\b": "\\b"}
_UNQUOTE_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "'": "'",
                    "\\": "\\"}


class LabelSyntaxError(InputError):
    """An expression Jenkins' parser rejects; `position` is the 0-based column."""

    def __init__(self, message: str, position: int, expression: str):
        self.expression = expression
        super().__init__(message, where="label expression", position=position)


# ---- AST -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Atom:
    name: str            # the atom's value (unquoted)
    position: int = 0    # column of its first character in the source
    quoted: bool = False  # written as a "string" in the source


@dataclass(frozen=True)
class Not:
    operand: "Node"


@dataclass(frozen=True)
class Paren:
    inner: "Node"


@dataclass(frozen=True)
class Binary:
    op: str              # one of '&&', '||', '->', '<->'
    left: "Node"
    right: "Node"


Node = Union[Atom, Not, Paren, Binary]

# Loosest first, as Jenkins' LabelOperatorPrecedence orders them.
_PRECEDENCE = {"<->": 1, "->": 2, "||": 3, "&&": 4, "!": 5, "atom": 6}


# ---- lexer ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Token:
    kind: str   # 'atom', 'string', an operator, '(' , ')', 'eof'
    text: str   # the token's value (strings already unquoted)
    pos: int


def _tokens(src: str) -> Iterator[_Token]:
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in " \t":
            i += 1
        elif src.startswith("&&", i) or src.startswith("||", i):
            yield _Token(src[i:i + 2], src[i:i + 2], i)
            i += 2
        elif src.startswith("<->", i):
            yield _Token("<->", "<->", i)
            i += 3
        elif src.startswith("->", i):
            yield _Token("->", "->", i)
            i += 2
        elif c in "!()":
            yield _Token(c, c, i)
            i += 1
        elif c == '"':
            start = i
            text, i = _string_literal(src, i)
            yield _Token("string", text, start)
        elif c in _NOT_ATOM:
            hint = {"&": "use && for 'and'", "|": "use || for 'or'", "<": "use <-> for 'if and only if'",
                    ">": "a comparison such as vcpu>=8 must be quoted: \"vcpu>=8\"",
                    "'": "single quotes do not quote; use double quotes"}.get(c, "")
            raise LabelSyntaxError(f"unexpected character {c!r}" + (f" ({hint})" if hint else ""), i, src)
        else:
            start = i
            while i < n and src[i] not in _NOT_ATOM and not (src[i] == "-" and src.startswith("->", i)):
                i += 1
            yield _Token("atom", src[start:i], start)
    yield _Token("eof", "", n)


def _string_literal(src: str, start: int) -> tuple[str, int]:
    out, i = [], start + 1
    while i < len(src):
        c = src[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 < len(src) and src[i + 1] in _UNQUOTE_ESCAPES:
                out.append(_UNQUOTE_ESCAPES[src[i + 1]])
                i += 2
                continue
            raise LabelSyntaxError("bad escape in quoted atom (allowed: \\b \\t \\n \\f \\r \\\" \\' \\\\)", i, src)
        out.append(c)
        i += 1
    raise LabelSyntaxError("unterminated quoted atom", start, src)


# ---- parser --------------------------------------------------------------------------------

class _Parser:
    def __init__(self, src: str):
        self.src = src
        self.toks = list(_tokens(src))
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.toks[self.i]

    def take(self) -> _Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def fail(self, expected: str) -> LabelSyntaxError:
        t = self.tok
        what = "end of expression" if t.kind == "eof" else repr(t.text if t.kind != "string" else f'"{t.text}"')
        return LabelSyntaxError(f"unexpected {what}, expected {expected}", t.pos, self.src)

    def expression(self) -> Node:
        node = self.iff()
        if self.tok.kind != "eof":
            raise self.fail("an operator (&& || -> <->) or the end of the expression")
        return node

    def iff(self) -> Node:
        node = self.implies()
        while self.tok.kind == "<->":
            self.take()
            node = Binary("<->", node, self.implies())
        return node

    def implies(self) -> Node:
        node = self.disjunction()
        if self.tok.kind == "->":
            self.take()
            node = Binary("->", node, self.disjunction())
            if self.tok.kind == "->":
                raise LabelSyntaxError("'->' cannot be chained; add parentheses", self.tok.pos, self.src)
        return node

    def disjunction(self) -> Node:
        node = self.conjunction()
        while self.tok.kind == "||":
            self.take()
            node = Binary("||", node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.negation()
        while self.tok.kind == "&&":
            self.take()
            node = Binary("&&", node, self.negation())
        return node

    def negation(self) -> Node:
        if self.tok.kind == "!":
            self.take()
            if self.tok.kind == "!":
                raise LabelSyntaxError("'!!' is not allowed; write !(!x)", self.tok.pos, self.src)
            return Not(self.primary())
        return self.primary()

    def primary(self) -> Node:
        t = self.tok
        if t.kind == "(":
            self.take()
            inner = self.iff()
            if self.tok.kind != ")":
                raise self.fail("')'")
            self.take()
            return Paren(inner)
        if t.kind in ("atom", "string"):
            self.take()
            return Atom(t.text, t.pos, t.kind == "string")
        raise self.fail("a label, a quoted label, '!' or '('")


def parse(expression: str) -> Node:
    """Parse strictly, as Jenkins' `Label.parseExpression`; raises LabelSyntaxError."""
    return _Parser(expression).expression()


def unquote(text: str) -> str:
    """Jenkins' QuotedStringTokenizer.unquote: strip one pair of matching outer quotes."""
    if len(text) < 2 or text[0] != text[-1] or text[0] not in "\"'":
        return text
    out, escape = [], False
    for c in text[1:-1]:
        if escape:
            out.append(_UNQUOTE_ESCAPES.get(c, c))
            escape = False
        elif c == "\\":
            escape = True
        else:
            out.append(c)
    return "".join(out)


def parse_jenkins(expression: str) -> Node:
    """What `Jenkins#getLabel(expr)` schedules on: unquote, parse, else the whole text as one atom."""
    text = unquote(expression)
    try:
        return parse(text)
    except LabelSyntaxError:
        return Atom(text, 0, False)


# ---- printing ------------------------------------------------------------------------------

def needs_quotes(name: str) -> bool:
    """True where Jenkins prints the atom quoted (checkGoodName fails, or blanks/parentheses)."""
    stripped = name.strip()
    if not name or stripped in (".", "..") or name.endswith("."):
        return True
    return any(c in _UNSAFE_NAME or c in " ()\t\n" or ord(c) < 32 or 127 <= ord(c) < 160 for c in name)


def quote(name: str) -> str:
    return '"' + "".join(_QUOTE_ESCAPES.get(c, c) for c in name) + '"'


def atom_expression(name: str) -> str:
    """LabelAtom#getExpression: the atom as it appears inside an expression."""
    return quote(name) if needs_quotes(name) else name


def _precedence(node: Node) -> int:
    if isinstance(node, Binary):
        return _PRECEDENCE[node.op]
    return _PRECEDENCE["!" if isinstance(node, Not) else "atom"]


def canonical(node: Node) -> str:
    """Jenkins' `Label#getName()` / `getExpression()`: no spaces, user parentheses kept."""
    def wrap(op_prec: int, child: Node) -> str:
        text = canonical(child)
        return f"({text})" if _precedence(child) < op_prec else text

    if isinstance(node, Atom):
        return atom_expression(node.name)
    if isinstance(node, Paren):
        return f"({canonical(node.inner)})"
    if isinstance(node, Not):
        return "!" + wrap(_PRECEDENCE["!"], node.operand)
    prec = _PRECEDENCE[node.op]
    return wrap(prec, node.left) + node.op + wrap(prec, node.right)


def label_name(node: Node) -> str:
    """The name Jenkins shows in `why`: a lone atom unquoted, anything else canonical."""
    return node.name if isinstance(node, Atom) else canonical(node)


# ---- evaluation ----------------------------------------------------------------------------

def evaluate(node: Node, truth: Callable[[Atom], bool]) -> bool:
    """Boolean value of the expression, asking `truth` for each atom (short-circuiting)."""
    if isinstance(node, Atom):
        return truth(node)
    if isinstance(node, Paren):
        return evaluate(node.inner, truth)
    if isinstance(node, Not):
        return not evaluate(node.operand, truth)
    if node.op == "&&":
        return evaluate(node.left, truth) and evaluate(node.right, truth)
    if node.op == "||":
        return evaluate(node.left, truth) or evaluate(node.right, truth)
    if node.op == "->":
        return (not evaluate(node.left, truth)) or evaluate(node.right, truth)
    return evaluate(node.left, truth) == evaluate(node.right, truth)


def atoms(node: Node) -> list[Atom]:
    """Every atom, left to right."""
    if isinstance(node, Atom):
        return [node]
    if isinstance(node, Paren):
        return atoms(node.inner)
    if isinstance(node, Not):
        return atoms(node.operand)
    return atoms(node.left) + atoms(node.right)


def conjuncts(node: Node) -> list[Node]:
    """The top-level `&&` operands (through parentheses), left to right."""
    if isinstance(node, Paren):
        return conjuncts(node.inner)
    if isinstance(node, Binary) and node.op == "&&":
        return conjuncts(node.left) + conjuncts(node.right)
    return [node]


def polarity(node: Node) -> dict[int, set[bool]]:
    """For each atom (by id), the polarities it occurs under: True positive, False negated."""
    out: dict[int, set[bool]] = {}

    def walk(n: Node, positive: bool, both: bool) -> None:
        if isinstance(n, Atom):
            out.setdefault(id(n), set()).update({True, False} if both else {positive})
        elif isinstance(n, Paren):
            walk(n.inner, positive, both)
        elif isinstance(n, Not):
            walk(n.operand, not positive, both)
        elif n.op == "->":
            walk(n.left, not positive, both)
            walk(n.right, positive, both)
        elif n.op == "<->":
            walk(n.left, positive, True)
            walk(n.right, positive, True)
        else:
            walk(n.left, positive, both)
            walk(n.right, positive, both)

    walk(node, True, False)
    return out


def node_label_string(names: list[str]) -> str:
    """A node's `labelString`: names split on whitespace, quoted where they contain blanks."""
    return " ".join(quote(n) if (not n or any(c in " \t\n\"" for c in n)) else n for n in names)
