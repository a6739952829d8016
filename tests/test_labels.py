"""The Jenkins label grammar: the examples of Jenkins' label grammar, plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner import labels
from provisioner.errors import InputError
from provisioner.labels import Atom, Binary, LabelSyntaxError, Not, Paren

VALID = [  # (expression, canonical name) from core's LabelExpressionTest and the spec
    ("foo||bar&&zot", "foo||bar&&zot"),
    ("  ( foo || bar )  && zot", "(foo||bar)&&zot"),
    ("foo -> bar", "foo->bar"),
    ("!foo <-> bar", "!foo<->bar"),
    ("32bit.dot", "32bit.dot"),
    ("a-b", "a-b"),
    ("--a----b-c-", "--a----b-c-"),
    ("-1", "-1"),
    ("-", "-"),
    ("linux && x86", "linux&&x86"),
    ("a:b && c", '"a:b"&&c'),
    ("ec2 && vcpu=8 && mem=16", "ec2&&vcpu=8&&mem=16"),
    ('ec2 && "vcpu>=8"', 'ec2&&"vcpu>=8"'),
    ("ec2 && gpu=a10g:4", 'ec2&&"gpu=a10g:4"'),
    ("a<->b<->c", "a<->b<->c"),
    ("!(a||b)", "!(a||b)"),
    ("a\t&&\tb", "a&&b"),
]

INVALID = [  # (expression, 0-based position of the error)
    ("foo bar", 4),
    ("foo(bar)", 3),
    ("a - b", 2),
    ("a <- b", 2),
    ("->", 0),
    ("a & b", 2),
    ("vcpu>=8", 4),
    ("a->b->c", 4),
    ("!!a", 1),
    ("(a", 2),
    ("a)", 1),
    ("", 0),
    ('"unterminated', 0),
    ("'single'", 0),
    ("a &&", 4),
]


@pytest.mark.parametrize("expr,name", VALID, ids=[v[0] for v in VALID])
def test_valid_expressions_have_jenkins_canonical_names(expr, name):
    assert labels.canonical(labels.parse(expr)) == name


@pytest.mark.parametrize("expr,pos", INVALID, ids=[v[0] or "<empty>" for v in INVALID])
def test_invalid_expressions_fail_with_a_position(expr, pos):
    with pytest.raises(LabelSyntaxError) as info:
        labels.parse(expr)
    assert info.value.position == pos
    assert f"position {pos + 1}" in str(info.value)


def test_dash_arrow_tokenisation_follows_jenkins():
    assert labels.parse("a-->b") == Binary("->", Atom("a-", 0), Atom("b", 4))
    assert labels.parse("a->-b") == Binary("->", Atom("a", 0), Atom("-b", 3))


def test_precedence_and_associativity():
    ast = labels.parse("a || b && c -> d <-> e <-> f")
    # <-> loosest and left-associative; -> binds tighter; || looser than &&
    assert isinstance(ast, Binary) and ast.op == "<->"
    assert isinstance(ast.left, Binary) and ast.left.op == "<->"
    implies = ast.left.left
    assert implies.op == "->"
    assert implies.left == Binary("||", Atom("a", 0), Binary("&&", Atom("b", 5), Atom("c", 10)))


def test_string_literals_unescape():
    ast = labels.parse(r'"a \"quoted\" \\ one"')
    assert ast == Atom('a "quoted" \\ one', 0, True)
    assert labels.canonical(ast) == r'"a \"quoted\" \\ one"'


def test_lax_fallback_reads_unparseable_text_as_one_atom():
    assert labels.parse_jenkins("vcpu>=8 && linux") == Atom("vcpu>=8 && linux", 0)
    assert labels.parse_jenkins('"vcpu>=8"') == Atom("vcpu>=8", 0)
    # a fully quoted string is unquoted first, as Jenkins#getLabel does
    assert labels.parse_jenkins('"linux"') == Atom("linux", 0)
    assert labels.parse_jenkins("a && b") == Binary("&&", Atom("a", 0), Atom("b", 5))


def test_quote_characters_are_not_escaped_by_jenkins():
    assert labels.canonical(labels.parse(r'"it\'s"')) == "it's"


def test_label_name_of_a_lone_atom_is_unquoted():
    assert labels.label_name(labels.parse('"a:b"')) == "a:b"
    assert labels.label_name(labels.parse("a:b&&c")) == '"a:b"&&c'


@pytest.mark.parametrize("name,quoted", [
    ("linux", False), ("vcpu=8", False), ("a.b", False), ("a:b", True), ("x86 64", True),
    ("trailing.", True), (".", True), ("..", True), ("(x)", True), ("vcpu>=8", True), ("", True),
])
def test_atom_quoting_follows_check_good_name(name, quoted):
    assert labels.needs_quotes(name) is quoted


def test_evaluate_all_operators():
    truth = {"a": True, "b": False}
    ev = lambda e: labels.evaluate(labels.parse(e), lambda atom: truth[atom.name])  # noqa: E731
    assert ev("a && !b")
    assert not ev("a && b")
    assert ev("b || a")
    assert ev("b -> a") and ev("b -> b") and not ev("a -> b")
    assert ev("a <-> a") and not ev("a <-> b") and ev("b <-> b")
    assert ev("!(a && b)")


def test_conjuncts_polarity_and_node_label_string():
    ast = labels.parse("ec2 && (linux && !spot) && (a -> b)")
    assert [labels.canonical(c) for c in labels.conjuncts(ast)] == ["ec2", "linux", "!spot", "a->b"]
    pol = labels.polarity(ast)
    by_name = {a.name: pol[id(a)] for a in labels.atoms(ast)}
    assert by_name == {"ec2": {True}, "linux": {True}, "spot": {False}, "a": {False}, "b": {True}}
    assert labels.node_label_string(["ec2", "vcpu>=8", "x y"]) == 'ec2 vcpu>=8 "x y"'


# ---- properties ----------------------------------------------------------------------------

ALPHABET = st.sampled_from(list("ab-=>!&|()<\" \t:") + ["&&", "||", "->", "<->", "vcpu=8", "\\"])


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=20).map("".join))
def test_parser_never_crashes_and_rejections_have_positions(text):
    try:
        ast = labels.parse(text)
    except LabelSyntaxError as exc:
        assert exc.position is not None and 0 <= exc.position <= len(text)
        return
    # what parses, re-parses from its canonical name to the same name
    name = labels.canonical(ast)
    assert labels.canonical(labels.parse(name)) == name


# Jenkins prints atoms containing ' or " unquoted (checkGoodName allows them), so such names do
# not survive a round trip in Jenkins either: see test_quote_characters_are_not_escaped_by_jenkins.
ATOM_NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="'\""),
                     min_size=1, max_size=8)


def _expr():
    leaf = ATOM_NAMES.map(lambda n: Atom(n, 0))
    return st.recursive(leaf, lambda inner: st.one_of(
        inner.map(Paren), st.builds(Not, inner.map(Paren)),
        st.builds(Binary, st.sampled_from(["&&", "||", "<->"]), inner, inner.map(Paren))), max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(_expr())
def test_canonical_names_round_trip_any_atom(ast):
    name = labels.canonical(ast)
    again = labels.parse(name)
    assert labels.canonical(again) == name
    assert [a.name for a in labels.atoms(again)] == [a.name for a in labels.atoms(ast)]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_lax_parse_accepts_anything(text):
    try:
        ast = labels.parse_jenkins(text)
    except LabelSyntaxError:            # Jenkins' unquote throws on a bad \\u escape, nothing else
        assert "\\u" in text
        return
    assert labels.atoms(ast)


def test_lax_parse_reads_unicode_escapes_and_rejects_bad_ones():
    assert labels.parse_jenkins('"\\u0041 && b"') == Binary("&&", Atom("A", 0), Atom("b", 5))
    with pytest.raises(LabelSyntaxError):
        labels.parse_jenkins('"\\u00"')


# ---- limits: never a crash, `label-too-complex` beyond them (CONTRACTS: 4 KB, depth 64) ------

def test_deep_parentheses_are_too_complex_not_a_crash():
    deep = "(" * 165 + "a" + ")" * 165
    with pytest.raises(labels.LabelTooComplex) as info:
        labels.parse(deep)
    assert info.value.reason == "label-too-complex" and isinstance(info.value, InputError)
    assert "depth" in str(info.value)
    ok = "(" * 64 + "a" + ")" * 64
    assert labels.canonical(labels.parse(ok)) == ok


def test_any_depth_is_read_without_recursion_when_limits_are_off():
    deep = "ec2 && " + "(" * 20_000 + "a" + ")" * 20_000
    ast = labels.parse_jenkins(deep, limited=False)
    assert [a.name for a in labels.atoms(ast)] == ["ec2", "a"]
    assert labels.evaluate(ast, lambda atom: True)
    assert len(labels.canonical(ast)) == len(deep) - 2


def test_a_thousand_atom_chain_parses_and_every_helper_walks_it():
    chain = "&&".join(f"a{i % 7}" for i in range(1000))
    assert len(chain) < 4096
    ast = labels.parse(chain)
    assert len(labels.atoms(ast)) == 1000 and len(labels.conjuncts(ast)) == 1000
    assert labels.canonical(ast) == chain
    assert labels.evaluate(ast, lambda atom: True) and not labels.evaluate(ast, lambda atom: atom.name != "a3")
    assert all(p == {True} for p in labels.polarity(ast).values())
    chain_or = "||".join(["!a"] * 1000)
    assert not labels.evaluate(labels.parse(chain_or), lambda atom: True)


def test_more_than_4_kb_is_too_complex():
    with pytest.raises(labels.LabelTooComplex) as info:
        labels.parse("a&&" * 1400 + "a")
    assert "4096" in str(info.value)
    with pytest.raises(labels.LabelTooComplex):
        labels.parse_jenkins('"' + "a" * 5000 + '"')
    with pytest.raises(labels.LabelTooComplex):
        labels.parse("é" * 2049)          # bytes count, not characters


FUZZ_ALPHABET = st.sampled_from(list("ab-=>!&|()<\" \t:\\'") + ["&&", "||", "->", "<->", "vcpu=8", "((", "))",
                                                                "ec2", "spot", "mem=1e400", "vcpu=nan", "((((((((((((((((",
                                                                "))))))))))))))))"])


@settings(max_examples=1000, deadline=None)
@given(st.lists(FUZZ_ALPHABET, max_size=60).map("".join))
def test_fuzz_parse_and_requirements_raise_only_input_errors(text):
    from provisioner.requirements import Requirements, is_demand
    for fn in (labels.parse, labels.parse_jenkins, lambda t: Requirements.parse(t, lax=True),
               lambda t: Requirements.parse(t), is_demand):
        try:
            fn(text)
        except InputError as exc:       # a clear error at a place; a syntax or size one says which
            assert str(exc)
            if isinstance(exc, labels.LabelSyntaxError):
                assert exc.reason == "unparseable"
