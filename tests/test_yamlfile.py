"""The one YAML loader (provisioner.yamlfile): YAML 1.2 words, duplicate / unknown / wrongly typed
keys named with file and line, and never anything but ConfigError, whatever the text."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.config import parse_config
from provisioner.errors import ConfigError
from provisioner.yamlfile import check_schema, parse_yaml


def test_yaml_1_2_words_are_strings():
    doc = parse_yaml("on: yes\nno: off\nlist: [y, n, On, NO]\nreal: true\n", "f.yaml")
    assert doc.data == {"on": "yes", "no": "off", "list": ["y", "n", "On", "NO"], "real": True}


def test_the_documented_alerts_rule_loads():
    config = parse_config("alerts:\n  sinks:\n    - {name: chat, type: slack, webhook_url_env: HOOK}\n"
                          "  rules:\n    - {on: [oom], teams: [ml]}\n    - {on: failure}\n", "c.yaml")
    assert config.data["alerts"]["rules"] == [{"on": ["oom"], "teams": ["ml"]}, {"on": "failure"}]
    from provisioner.config import parse_alerts
    rules = parse_alerts(config.data["alerts"]).rules
    assert [r.on for r in rules] == [("oom",), ("failure",)]


def test_lines_of_keys_and_list_items():
    doc = parse_yaml("a:\n  b: 1\n  c:\n    - x\n    - {d: 2}\n", "f.yaml")
    assert doc.lines == {"a": 1, "a.b": 2, "a.c": 3, "a.c[0]": 4, "a.c[1]": 5, "a.c[1].d": 5}
    assert doc.line("a.c[1].e") == 5 and doc.line("z") is None


def test_duplicates_and_keys_that_are_not_text():
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: 1\nb:\n  - {x: 1, x: 2}\n1: z\na: 3\n", "f.yaml")
    assert [p[:2] for p in info.value.problems] == [("b[0].x", 3), ("", 4), ("a", 5)]
    assert "f.yaml:5: a: duplicate key (first given at line 1)" in str(info.value)
    assert "key '1' must be text" in str(info.value)


def test_schema_names_unknown_keys_and_wrong_types_with_lines():
    doc = parse_yaml("s:\n  n: x\n  bogus: 1\nt: 3\n", "f.yaml")
    schema = {"s": {"n": lambda v: None if isinstance(v, int) else "must be int"}, "t": {"u": lambda v: None}}
    assert check_schema(doc, schema) == [("s.n", 2, "must be int"), ("s.bogus", 3, "unknown key (known here: n)"),
                                         ("t", 4, "must be a mapping")]


def test_merge_keys_and_anchors_are_plain_data():
    doc = parse_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", "f.yaml")
    assert doc.data["other"] == {"x": 1, "y": 2}


@pytest.mark.parametrize("text, line", [
    ("a: [1\n", 2), ("a: !!python/object:os.system x\n", 1), ("a: b: c\n", 1),
    ("x: " + "[" * 100 + "]" * 100 + "\n", 1), ("d: 2024-13-45\n", None), ("a: *nope\n", 1),
])
def test_bad_yaml_is_a_config_error_with_a_line(text, line):
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    assert info.value.exit_code == 2 and "not valid YAML" in str(info.value) and "f.yaml:" in str(info.value)
    if line is not None:
        assert info.value.problems[0][1] is not None


def test_deep_block_nesting_is_refused():
    text = "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n"
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_yaml(text, "f.yaml")


_WORDS = st.sampled_from(["on", "off", "yes", "no", "y", "~", "null", "1", "0x1f", "1e9", ".nan", "-.inf",
                          "2024-01-01", "2024-13-45", "!!str", "!!binary", "&a", "*a", "<<", "|", ">", "'", '"',
                          "[", "]", "{", "}", ",", ":", "- ", "? ", "#", "%YAML 1.1\n---\n", "\t", "\n", "  ",
                          "cloud", "defaults", "alerts", "rules", "teams", "timeout", "labels", "ec2", "images"])


@settings(max_examples=1500, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(_WORDS, st.text(max_size=4)), max_size=40).map("".join))
def test_fuzz_the_loader_never_raises_anything_but_config_error(text):
    try:
        config = parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("invalid configuration:") and "fuzz.yaml:" in str(exc)
        assert exc.exit_code == 2
    else:
        assert isinstance(config.data, dict)
