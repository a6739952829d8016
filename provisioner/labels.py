"""Jenkins label expressions: lexer, parser, canonical names and evaluation.

A faithful re-implementation of Jenkins' grammar (core `LabelExpressionLexer/Parser.g4`, see
Jenkins core's label grammar): operators `&& || ! -> <->`, parentheses, unquoted atoms and
double-quoted string atoms. `parse` is strict and raises `LabelSyntaxError` with a position;
`parse_jenkins` mirrors `Jenkins#getLabel`, which unquotes a fully quoted string and falls back to
reading an unparseable expression as one atom. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Union

from provisioner.errors import InputError

# Characters that end an unquoted atom (a '-' also ends it when a '>' follows).
_NOT_ATOM = set("&|!<>()\"' \t")
# Jenkins#checkGoodName rejects these; such atoms are printed quoted in canonical names.
_UNSAFE_NAME = set("?*/\\%!@#$^&|<>[]:;")
_QUOTE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f",
                  "\b": "\\b"}
_UNQUOTE_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "'": "'",
                    "\\": "\\"}


MAX_BYTES = 4096      # docs/labels.md, 'Limits': size of an expression in UTF-8
MAX_DEPTH = 64        # parentheses nested at most this deep


class LabelSyntaxError(InputError):
    """An expression Jenkins' parser rejects; `position` is the 0-based column."""

    reason = "unparseable"      # what the daemon counts a rejected queue item under

    def __init__(self, message: str, position: int, expression: str):
        self.expression = expression
        super().__init__(message, where="label expression", position=position)


class LabelTooComplex(InputError):
    """An expression beyond the label limits (size, nesting, free plain atoms)."""

    reason = "label-too-complex"

    def __init__(self, message: str, *, position: int | None = None, expression: str = "",
                 where: str = "label expression"):
        self.expression = expression
        super().__init__(f"too complex: {message}", where=where, position=position)


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
# Iterative operator precedence (no recursion: a 1,000-atom chain or 100,000 parentheses cost
# memory, never the stack). It builds what the recursive grammar builds: left-deep `&& || <->`
# chains, `->` not chainable, `!` on a primary only, user parentheses kept as Paren nodes.

_BINARY = {"<->": 1, "->": 2, "||": 3, "&&": 4}
_OPEN = "("


def _parse(src: str) -> tuple[Node, int]:
    """The expression and its parenthesis nesting depth; raises LabelSyntaxError."""
    operands: list[Node] = []
    ops: list[tuple[str, int]] = []         # ('(' | '!' | binary operator, position)
    depth = max_depth = 0
    tokens = _tokens(src)
    want_operand = True
    for tok in tokens:
        if want_operand:
            if tok.kind == "!":
                if ops and ops[-1][0] == "!":
                    raise LabelSyntaxError("'!!' is not allowed; write !(!x)", tok.pos, src)
                ops.append(("!", tok.pos))
            elif tok.kind == "(":
                ops.append((_OPEN, tok.pos))
                depth += 1
                max_depth = max(max_depth, depth)
            elif tok.kind in ("atom", "string"):
                operands.append(_negated(Atom(tok.text, tok.pos, tok.kind == "string"), ops))
                want_operand = False
            else:
                raise _unexpected(tok, src, "a label, a quoted label, '!' or '('")
        elif tok.kind in _BINARY:
            if tok.kind == "->":                      # binds looser than ||, and only once
                _reduce(operands, ops, _BINARY["||"])
                if ops and ops[-1][0] == "->":
                    raise LabelSyntaxError("'->' cannot be chained; add parentheses", tok.pos, src)
            else:
                _reduce(operands, ops, _BINARY[tok.kind])
            ops.append((tok.kind, tok.pos))
            want_operand = True
        elif tok.kind == ")" and depth:
            _reduce(operands, ops, 0)
            ops.pop()                                   # the '('
            depth -= 1
            operands.append(_negated(Paren(operands.pop()), ops))
        elif tok.kind == "eof" and not depth:
            _reduce(operands, ops, 0)
            return operands[0], max_depth
        else:
            expected = "an operator (&& || -> <->) or ')'" if depth else \
                "an operator (&& || -> <->) or the end of the expression"
            raise _unexpected(tok, src, expected)
    raise AssertionError("the lexer always ends with eof")     # pragma: no cover


def _negated(node: Node, ops: list[tuple[str, int]]) -> Node:
    """A finished primary: the pending `!` before it (at most one) applies to it alone."""
    if ops and ops[-1][0] == "!":
        ops.pop()
        return Not(node)
    return node


def _reduce(operands: list[Node], ops: list[tuple[str, int]], floor: int) -> None:
    """Apply pending binary operators binding at least as tight as `floor` (left-associative)."""
    while ops and ops[-1][0] in _BINARY and _BINARY[ops[-1][0]] >= floor:
        op = ops.pop()[0]
        right = operands.pop()
        operands.append(Binary(op, operands.pop(), right))


def _unexpected(tok: _Token, src: str, expected: str) -> LabelSyntaxError:
    what = "end of expression" if tok.kind == "eof" else repr(tok.text if tok.kind != "string" else f'"{tok.text}"')
    return LabelSyntaxError(f"unexpected {what}, expected {expected}", tok.pos, src)


def _check_size(expression: str) -> None:
    size = len(expression.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise LabelTooComplex(f"{size} bytes: a label expression may have at most {MAX_BYTES}",
                              position=min(len(expression), MAX_BYTES), expression=expression)


def parse(expression: str, *, limited: bool = True) -> Node:
    """Parse strictly, as Jenkins' `Label.parseExpression`; raises LabelSyntaxError, and
    LabelTooComplex beyond MAX_BYTES or MAX_DEPTH unless `limited` is False."""
    if limited:
        _check_size(expression)
    node, depth = _parse(expression)
    if limited and depth > MAX_DEPTH:
        raise LabelTooComplex(f"parentheses nested to depth {depth}; at most {MAX_DEPTH} are allowed",
                              position=_deepest(expression), expression=expression)
    return node


def _deepest(expression: str) -> int:
    depth = 0
    for i, c in enumerate(expression):
        depth += c == "("
        if depth > MAX_DEPTH:
            return i
    return 0


def unquote(text: str) -> str:
    """Jenkins' QuotedStringTokenizer.unquote: strip one pair of matching outer quotes, reading
    \\n \\r \\t \\f \\b and \\uXXXX; any other escaped character stands for itself."""
    if len(text) < 2 or text[0] != text[-1] or text[0] not in "\"'":
        return text
    out, escape, i, end = [], False, 1, len(text) - 1
    while i < end:
        c = text[i]
        if escape:
            escape = False
            if c == "u":
                digits = text[i + 1:i + 5]
                if i + 4 >= end or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    raise LabelSyntaxError("bad \\u escape in a quoted label", i - 1, text)
                out.append(chr(int(digits, 16)))
                i += 4
            else:
                out.append(_UNQUOTE_ESCAPES.get(c, c))
        elif c == "\\":
            escape = True
        else:
            out.append(c)
        i += 1
    return "".join(out)


def parse_jenkins(expression: str, *, limited: bool = True) -> Node:
    """What `Jenkins#getLabel(expr)` schedules on: unquote, parse, else the whole text as one atom.

    `limited` applies MAX_BYTES and MAX_DEPTH as `parse` does (Jenkins has no such limits)."""
    if limited:
        _check_size(expression)
    text = unquote(expression)
    try:
        node, depth = _parse(text)
    except LabelSyntaxError:
        return Atom(text, 0, False)
    if limited and depth > MAX_DEPTH:
        raise LabelTooComplex(f"parentheses nested to depth {depth}; at most {MAX_DEPTH} are allowed",
                              position=_deepest(text), expression=expression)
    return node


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


def postorder(node: Node) -> Iterator[Node]:
    """Every node, children (left to right) before their parent; no recursion, any depth."""
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        n, expanded = stack.pop()
        if expanded or isinstance(n, Atom):
            yield n
            continue
        stack.append((n, True))
        if isinstance(n, Binary):
            stack.append((n.right, False))
            stack.append((n.left, False))
        else:
            stack.append((n.inner if isinstance(n, Paren) else n.operand, False))


def fold(node: Node, leaf: Callable[[Atom], Any], combine: Callable[[Node, list], Any]) -> Any:
    """Bottom-up value of the tree: `leaf(atom)`, then `combine(node, child values)`."""
    values: list = []
    for n in postorder(node):
        if isinstance(n, Atom):
            values.append(leaf(n))
        else:
            k = 2 if isinstance(n, Binary) else 1
            args = values[-k:]
            del values[-k:]
            values.append(combine(n, args))
    return values[0]


def canonical(node: Node) -> str:
    """Jenkins' `Label#getName()` / `getExpression()`: no spaces, user parentheses kept."""
    def combine(n: Node, args: list[tuple[str, int]]) -> tuple[str, int]:
        if isinstance(n, Paren):
            return f"({args[0][0]})", _PRECEDENCE["atom"]
        prec = _precedence(n)
        texts = [f"({t})" if p < prec else t for t, p in args]
        return ("!" + texts[0] if isinstance(n, Not) else n.op.join(texts)), prec

    return fold(node, lambda a: (atom_expression(a.name), _PRECEDENCE["atom"]), combine)[0]


def canonical_expression(expression: str) -> str:
    """A label expression as Jenkins names it (`ec2&&gpu=1` for `ec2 && gpu=1`): the key by which a
    queue item's label finds its entry in the config's `labels:` map."""
    return canonical(parse_jenkins(expression))


def label_name(node: Node) -> str:
    """The name Jenkins shows in `why`: a lone atom unquoted, anything else canonical."""
    return node.name if isinstance(node, Atom) else canonical(node)


# ---- evaluation ----------------------------------------------------------------------------

_APPLY = {"&&": lambda a, b: a and b, "||": lambda a, b: a or b, "->": lambda a, b: (not a) or b,
          "<->": lambda a, b: a == b}


def evaluate(node: Node, truth: Callable[[Atom], bool]) -> bool:
    """Boolean value of the expression, asking `truth` for each atom (each once)."""
    def combine(n: Node, args: list[bool]) -> bool:
        if isinstance(n, Paren):
            return args[0]
        if isinstance(n, Not):
            return not args[0]
        return _APPLY[n.op](args[0], args[1])

    return bool(fold(node, truth, combine))


def atoms(node: Node) -> list[Atom]:
    """Every atom, left to right."""
    return [n for n in postorder(node) if isinstance(n, Atom)]


def conjuncts(node: Node) -> list[Node]:
    """The top-level `&&` operands (through parentheses), left to right."""
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Paren):
            stack.append(n.inner)
        elif isinstance(n, Binary) and n.op == "&&":
            stack.append(n.right)
            stack.append(n.left)
        else:
            out.append(n)
    return out


def polarity(node: Node) -> dict[int, set[bool]]:
    """For each atom (by id), the polarities it occurs under: True positive, False negated."""
    out: dict[int, set[bool]] = {}
    stack = [(node, True, False)]
    while stack:
        n, positive, both = stack.pop()
        if isinstance(n, Atom):
            out.setdefault(id(n), set()).update({True, False} if both else {positive})
        elif isinstance(n, Paren):
            stack.append((n.inner, positive, both))
        elif isinstance(n, Not):
            stack.append((n.operand, not positive, both))
        elif n.op == "->":
            stack.append((n.right, positive, both))
            stack.append((n.left, not positive, both))
        else:
            stack.append((n.right, positive, both or n.op == "<->"))
            stack.append((n.left, positive, both or n.op == "<->"))
    return out


# Jenkins splits a node's labelString with QuotedStringTokenizer: blank, tab, newline and CR
# separate; ' and " quote (also mid-token); a backslash escapes only a backslash, a quote or a
# blank, and is literal at the start of a token. A name is written bare only where none of that
# can touch it, else in double quotes with just \\ and \" escaped (a tab or newline stays raw:
# the tokenizer would keep `\t` as two characters).
_LABEL_STRING_SPECIAL = set(" \t\n\r'\"\\")


def label_string_atom(name: str) -> str:
    """One name as written in a node's labelString so that Jenkins reads it back unchanged."""
    if name and not any(c in _LABEL_STRING_SPECIAL for c in name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def node_label_string(names: list[str]) -> str:
    """A node's `labelString` that Jenkins' `Label.parse` splits back into exactly `names`."""
    return " ".join(label_string_atom(n) for n in names)
