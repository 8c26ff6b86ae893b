"""lme4 formulas parsed into outcome, fixed part and random bars (alliance_analysis.formulas)."""

from __future__ import annotations

import pytest

from alliance_analysis.formulas import FormulaError, parse_formula


def test_the_issue_example_parses() -> None:
    parsed = parse_formula("phq9_total ~ I(session - 1) + C(Setting) + "
                           "(1 + I(session - 1) | client_id) + (1 | therapist_id)")
    assert parsed.outcome == "phq9_total"
    assert parsed.fixed == "I(session - 1) + C(Setting)"
    client, therapist = parsed.random
    assert (client.group, client.correlated, client.intercept, client.slopes) == (
        "client_id", True, True, ("I(session - 1)",))
    assert (therapist.group, therapist.intercept, therapist.slopes) == ("therapist_id", True, ())
    assert parsed.variables() == {"phq9_total", "session", "Setting", "client_id",
                                  "therapist_id"}
    assert parsed.groups() == ("client_id", "therapist_id")


@pytest.mark.parametrize("formula, fixed, bars", [
    ("y ~ x + (1 + x || client_id)", "x", [("(1 + x || client_id)", False, True, ("x",))]),
    ("y ~ 0 + x + (0 + x | client_id)", "0 + x", [("(0 + x | client_id)", True, False, ("x",))]),
    ("y ~ a*b + (1 | client_id) - 1", "a*b - 1", [("(1 | client_id)", True, True, ())]),
    ("y ~ (1 | client_id)", "1", [("(1 | client_id)", True, True, ())]),
    ("y ~ a + (b)", "a + (b)", []),
])
def test_bars_are_cut_from_the_fixed_part(formula: str, fixed: str, bars: list) -> None:
    parsed = parse_formula(formula)
    assert parsed.fixed == fixed
    assert [(b.text, b.correlated, b.intercept, b.slopes) for b in parsed.random] == bars


@pytest.mark.parametrize("formula, message", [
    ("y x", r"needs '~'"),
    ("log(y) ~ x", r"outcome .* one column name:\n    log\(y\) ~ x\n    \^\^\^\^\^\^"),
    ("y ~ x + (1 | client_id", r"'\(' without its '\)':\n.*\n {12}\^"),
    ("y ~ x + 1 | client_id)", r"'\)' without its '\('"),
    ("y ~ x + (| client_id)", r"needs terms before the bar"),
    ("y ~ x + (1 | client id)", r"grouping factor after the bar must be one column name"),
    ("y ~ x | g", r"bar '\|' outside a random-effect term"),
    ("y ~ x +* z", r"fixed part 'x \+\* z' does not parse"),
])
def test_errors_show_where(formula: str, message: str) -> None:
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)
