"""Jenkins label expressions, re-implemented for the emulator (tests/jenkins_emulator/README.md).

Deliberately independent of `provisioner.labels`: the emulator is the reference the daemon is tested
against, so sharing the parser would let one bug hide in both. Covers the lexer (ATOM characters,
`-` unless followed by `>`, double-quoted strings with Java escapes), the precedence
`<-> < -> < || < && < !`, canonical names (no spaces, atoms escaped only inside expressions),
`Jenkins#getLabel`'s lax single-atom fallback, and node `labelString` splitting.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

UNSAFE_CHARS = '?*/\\%!@#$^&|<>[]:;'
_NOT_ATOM = set('&|!<>() \t"\'')
_ESCAPES = {'b': '\b', 't': '\t', 'n': '\n', 'f': '\f', 'r': '\r', '"': '"', "'": "'", '\\': '\\'}
_UNQUOTE = {'b': '\b', 't': '\t', 'n': '\n', 'f': '\f', 'r': '\r'}
_QUOTE = {'"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\f': '\\f', '\b': '\\b'}


class LabelSyntaxError(ValueError):
    """The expression does not parse (Jenkins throws IllegalArgumentException here)."""


def bad_name_reason(name: str) -> str | None:
    """`Jenkins.checkGoodName`'s complaint about `name` (English), or None when it is good."""
    if not name:
        return 'No name is specified'
    if name.strip() in ('.', '..'):
        return f'“{name.strip()}” is not an allowed name'
    for ch in name:
        if ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f:
            return f'No control code is allowed: {name!r}'
        if ch in UNSAFE_CHARS:
            return f'‘{ch}’ is an unsafe character'
    if name.strip().endswith('.'):
        return 'A name cannot end with ‘.’'
    return None


def quote(s: str) -> str:
    """`QuotedStringTokenizer.quote`: wrap in double quotes, backslash-escape specials."""
    return '"' + ''.join(_QUOTE.get(c, c) for c in s) + '"'


def escape(name: str) -> str:
    """`LabelAtom.escape`: quote an atom name that fails checkGoodName or has space ( ) tab newline."""
    if bad_name_reason(name) is not None or any(c in ' ()\t\n' for c in name):
        return quote(name)
    return name


def unquote(s: str) -> str:
    """`QuotedStringTokenizer.unquote`: strip one pair of matching ' or " quotes and unescape
    (n r t f b, uXXXX; any other escaped character is itself; a dangling backslash is dropped)."""
    if len(s) < 2 or s[0] != s[-1] or s[0] not in '"\'':
        return s
    out, i, body = [], 0, s[1:-1]
    while i < len(body):
        c = body[i]
        i += 1
        if c != '\\':
            out.append(c)
        elif i < len(body) and body[i] == 'u':
            digits = body[i + 1:i + 5]
            if len(digits) < 4 or any(d not in '0123456789abcdefABCDEF' for d in digits):
                raise ValueError(f'Incomplete or invalid Unicode escape sequence in {s}')
            out.append(chr(int(digits, 16)))
            i += 5
        elif i < len(body):
            out.append(_UNQUOTE.get(body[i], body[i]))
            i += 1
    return ''.join(out)


# ---- AST -------------------------------------------------------------------------------------------
ATOM, PAREN, NOT, AND, OR, IMPLIES, IFF = 'atom', 'paren', 'not', 'and', 'or', 'implies', 'iff'
# LabelOperatorPrecedence: a lower number binds tighter; atoms and user parentheses bind tightest.
_PRECEDENCE = {ATOM: 0, PAREN: 0, NOT: 1, AND: 2, OR: 3, IMPLIES: 4, IFF: 5}
_OPS = {AND: '&&', OR: '||', IMPLIES: '->', IFF: '<->'}


@dataclass(frozen=True)
class Label:
    """One node of a parsed expression; `kind` is one of ATOM PAREN NOT AND OR IMPLIES IFF."""
    kind: str
    name: str = ''                          # atom name (raw, unescaped)
    args: tuple['Label', ...] = ()

    @property
    def precedence(self) -> int:
        return _PRECEDENCE[self.kind]

    @functools.cached_property
    def expression(self) -> str:
        """`Label#getExpression()`: re-parseable, atoms escaped."""
        if self.kind == ATOM:
            return escape(self.name)
        if self.kind == PAREN:
            return '(' + self.args[0].expression + ')'
        if self.kind == NOT:
            return '!' + _paren(NOT, self.args[0])
        return _paren(self.kind, self.args[0]) + _OPS[self.kind] + _paren(self.kind, self.args[1])

    @functools.cached_property
    def display_name(self) -> str:
        """`Label#getName()`, the string in `why`: a lone atom raw, an expression canonical."""
        return self.name if self.kind == ATOM else self.expression

    def __str__(self) -> str:            # Label#toString, used when a message is formatted
        return self.display_name

    def matches(self, labels: set[str] | frozenset[str]) -> bool:
        """Evaluate against a node's label set (its labelString atoms plus its own name)."""
        k, a = self.kind, self.args
        if k == ATOM:
            return self.name in labels
        if k == PAREN:
            return a[0].matches(labels)
        if k == NOT:
            return not a[0].matches(labels)
        left, right = a[0].matches(labels), a[1].matches(labels)
        if k == AND:
            return left and right
        if k == OR:
            return left or right
        if k == IMPLIES:
            return (not left) or right
        return left == right


def _paren(op: str, sub: Label) -> str:
    # Parentheses only where the child binds looser than its parent (user parens are PAREN nodes).
    return '(' + sub.expression + ')' if sub.precedence > _PRECEDENCE[op] else sub.expression


def atom(name: str) -> Label:
    return Label(ATOM, name)


# ---- lexer & parser -------------------------------------------------------------------------------
def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, value, position) tokens; kinds: atom str && || ! -> <-> ( ) eof."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in ' \t':
            i += 1
            continue
        for op in ('<->', '&&', '||', '->', '!', '(', ')'):
            if text.startswith(op, i):
                out.append((op, op, i))
                i += len(op)
                break
        else:
            if c == '"':
                i = _string(text, i, out)
                continue
            j = i
            while j < n and text[j] not in _NOT_ATOM and not (text[j] == '-' and text[j + 1:j + 2] == '>'):
                j += 1
            if j == i:
                raise LabelSyntaxError(f"line 1:{i}: token recognition error at: '{text[i:i + 3]}'")
            out.append(('atom', text[i:j], i))
            i = j
    out.append(('eof', '', n))
    return out


def _string(text: str, i: int, out: list[tuple[str, str, int]]) -> int:
    start, i = i, i + 1
    buf: list[str] = []
    while i < len(text):
        c = text[i]
        if c == '"':
            out.append(('str', ''.join(buf), start))
            return i + 1
        if c == '\\':
            if text[i + 1:i + 2] not in _ESCAPES:
                raise LabelSyntaxError(f"line 1:{start}: token recognition error at: '{text[start:i + 2]}'")
            buf.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        buf.append(c)
        i += 1
    raise LabelSyntaxError(f"line 1:{start}: token recognition error at: '{text[start:]}'")


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self) -> str:
        return self.toks[self.pos][0]

    def take(self) -> tuple[str, str, int]:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def fail(self, expecting: str) -> LabelSyntaxError:
        kind, value, at = self.toks[self.pos]
        shown = '<EOF>' if kind == 'eof' else value
        return LabelSyntaxError(f"line 1:{at}: mismatched input '{shown}' expecting {expecting}")

    def parse(self) -> Label:
        expr = self.iff()
        if self.peek() != 'eof':
            kind, value, at = self.toks[self.pos]
            raise LabelSyntaxError(f"line 1:{at}: extraneous input '{value}' expecting <EOF>")
        return expr

    def iff(self) -> Label:
        left = self.implies()
        while self.peek() == '<->':
            self.take()
            left = Label(IFF, args=(left, self.implies()))
        return left

    def implies(self) -> Label:
        left = self.disj()
        if self.peek() == '->':                 # not chainable: a->b->c leaves a stray '->'
            self.take()
            left = Label(IMPLIES, args=(left, self.disj()))
        return left

    def disj(self) -> Label:
        left = self.conj()
        while self.peek() == '||':
            self.take()
            left = Label(OR, args=(left, self.conj()))
        return left

    def conj(self) -> Label:
        left = self.neg()
        while self.peek() == '&&':
            self.take()
            left = Label(AND, args=(left, self.neg()))
        return left

    def neg(self) -> Label:
        if self.peek() == '!':
            self.take()
            return Label(NOT, args=(self.primary(),))   # `!!a` fails here: primary can't start with '!'
        return self.primary()

    def primary(self) -> Label:
        kind, value, _ = self.toks[self.pos]
        if kind in ('atom', 'str'):
            self.take()
            return atom(value)
        if kind == '(':
            self.take()
            inner = self.iff()
            if self.peek() != ')':
                raise self.fail("')'")
            self.take()
            return Label(PAREN, args=(inner,))
        raise self.fail("{'!', '(', ATOM, STRINGLITERAL}")


def parse_expression(text: str) -> Label:
    """`Label.parseExpression`: strict; raises LabelSyntaxError."""
    return _Parser(text).parse()


def get_label(expr: str | None) -> Label | None:
    """`Jenkins#getLabel`: unquote a fully quoted string, parse, else the whole string is one atom."""
    if expr is None:
        return None
    expr = unquote(expr)
    try:
        return parse_expression(expr)
    except LabelSyntaxError:
        return atom(expr)


def assigned_label_string(assigned_node: str | None) -> str | None:
    """`AbstractProject#getAssignedLabelString` (exported as `labelExpression`)."""
    if assigned_node is None or not assigned_node.strip():
        return None
    try:
        parse_expression(assigned_node)
        return assigned_node
    except LabelSyntaxError:
        return escape(assigned_node)


_DELIMITERS = ' \t\n\r'          # QuotedStringTokenizer's default: no form feed
_TOKEN_ESCAPABLE = '\\"\' '       # after a backslash these stand for themselves; others keep it


def split_label_string(label_string: str | None) -> list[str]:
    """`Label.parse`: a node's labelString split by QuotedStringTokenizer.

    A token starts at a non-delimiter; ' or " switch quoting on and off anywhere in it (the quotes
    are dropped, delimiters inside are kept); outside the start of a token a backslash escapes the
    next character, which loses the backslash only when it is a backslash, a quote or a blank; a
    backslash that starts a token is an ordinary character and one at the very end is dropped.
    (Jenkins first looks the whole string up as a label it already knows; not modelled here.)
    """
    out: list[str] = []
    text = label_string or ''
    i, n = 0, len(text)
    while i < n:
        if text[i] in _DELIMITERS:
            i += 1
            continue
        cur: list[str] = []
        quote_ch: str | None = None
        if text[i] in '"\'':
            quote_ch = text[i]
        else:
            cur.append(text[i])         # even a backslash: the tokenizer's start state keeps it
        i += 1
        if quote_ch and i == n:
            break                       # a lone opening quote at the very end makes no token
        while i < n:
            c = text[i]
            i += 1
            if c == '\\':
                if i < n:
                    if text[i] not in _TOKEN_ESCAPABLE:
                        cur.append('\\')
                    cur.append(text[i])
                    i += 1
            elif quote_ch:
                if c == quote_ch:
                    quote_ch = None
                else:
                    cur.append(c)
            elif c in '"\'':
                quote_ch = c
            elif c in _DELIMITERS:
                break
            else:
                cur.append(c)
        out.append(''.join(cur))
    return out
