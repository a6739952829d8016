"""Fuzz the command line in-process through `main(argv)` (issue 13): the numeric options, the
configuration loader and the history importer, about 1,000 cases each (a few seconds each here;
bench/fuzz_cli.py runs 10,000 and more). Every case must end in an allowed exit code with one
error line, never a traceback; tests/fuzz_cases.py says what each case checks."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests import fuzz_cases

CASES = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))


def test_numeric_options(tmp_path_factory):
    history = tmp_path_factory.mktemp("fuzz") / "h.sqlite3"

    @CASES
    @given(fuzz_cases.numeric_argv())
    def case(argv):
        problem = fuzz_cases.check_numeric(argv, history)
        assert problem is None, f"{argv!r}: {problem}"
    with fuzz_cases.nothing_starts():
        case()


def test_config_loader(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")

    @CASES
    @given(fuzz_cases.config_text())
    def case(data):
        problem = fuzz_cases.check_config(data, folder)
        assert problem is None, f"{data!r}: {problem}"
    case()


def test_history_importer(tmp_path_factory):
    fuzz = fuzz_cases.HistoryFuzz(tmp_path_factory.mktemp("fuzz"), full_every=20)

    @CASES
    @given(fuzz_cases.HISTORY_LINES)
    def case(lines):
        problem = fuzz.check(lines)
        assert problem is None, f"{lines!r}: {problem}"
    case()
