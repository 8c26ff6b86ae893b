"""Mixed-model formulas in lme4's syntax, parsed once when the parameters load.

A researcher states a model as lme4 would take it::

    phq9_total ~ I(session - 1) + C(Setting) + (1 + I(session - 1) | client_id) + (1 | therapist_id)

:func:`parse_formula` splits it into the outcome, the fixed part and the random-effect bars,
and checks the syntax of each without any data: the fixed part and every bar's terms are
parsed by formulaic (the well-kept formula library, with patsy's and R's operators: ``+``,
``:``, ``*``, ``-``, ``0 +``, ``C()``, ``I()``); only the bars ``(terms | group)`` and
``(terms || group)`` are parsed here, because formulaic has no random effects. The parsed
:class:`MixedFormula` is what the fitter, the report, the methods text and ``verify`` read,
so what was fitted and what is described cannot drift apart.

What the data must hold (the columns, the nesting of clients in therapists) is checked when
the model meets the data (:mod:`alliance_analysis.multilevel.specified`).

References
----------
.. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48 (section 2.1: the formula
   module, including ``||``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from formulaic import Formula
from formulaic.errors import FormulaicError

_ANSI = re.compile(r"\x1b\[[0-9;]*m|⧛|⧚")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class FormulaError(ValueError):
    """A formula that does not parse: the message shows where."""


@dataclass(frozen=True)
class RandomBar:
    """One random-effect term of an lme4 formula, ``(terms | group)`` or ``(terms || group)``.

    Attributes
    ----------
    terms
        The right-hand side before the bar, as written (e.g. ``"1 + I(session - 1)"``).
    group
        The grouping column after the bar (``client_id`` or ``therapist_id``).
    correlated
        ``|``: an unstructured covariance of the group's effects; ``||``: independent
        effects (lme4 expands ``(1 + x || g)`` into ``(1 | g) + (0 + x | g)``).
    intercept
        Whether the group has a random intercept (``0 +`` or ``- 1`` removes it).
    slopes
        The non-intercept terms as formulaic reads them (e.g. ``("I(session - 1)",)``).
    """

    terms: str
    group: str
    correlated: bool
    intercept: bool
    slopes: tuple[str, ...]

    @property
    def text(self) -> str:
        """The bar as lme4 would print it."""
        return f"({self.terms} {'|' if self.correlated else '||'} {self.group})"


@dataclass(frozen=True)
class MixedFormula:
    """A parsed lme4 formula: outcome, fixed part and random bars.

    Attributes
    ----------
    text
        The formula as given.
    outcome
        The outcome column.
    fixed
        The fixed part's right-hand side, for formulaic (``"1"`` when only the intercept).
    random
        The random-effect bars in the order written.
    """

    text: str
    outcome: str
    fixed: str
    random: tuple[RandomBar, ...]

    def variables(self) -> set[str]:
        """Every column the formula reads (outcome, fixed terms, slopes, groups)."""
        names = {self.outcome} | _required_variables(self.fixed)
        for bar in self.random:
            names.add(bar.group)
            for slope in bar.slopes:
                names |= _required_variables(slope)
        return {n for n in names if n not in _FUNCTIONS}

    def groups(self) -> tuple[str, ...]:
        """The grouping columns, each once, in the order first written."""
        return tuple(dict.fromkeys(bar.group for bar in self.random))


#: Names formulaic reports as variables that are functions of the formula language.
_FUNCTIONS = {"C", "I", "np", "log", "exp", "center", "scale", "poly", "bs", "Q"}


@lru_cache(maxsize=1024)
def _required(terms: str) -> frozenset[str]:
    """formulaic's required variables of ``terms``, cached by text."""
    return frozenset(Formula(terms).required_variables)


def _required_variables(terms: str) -> set[str]:
    """The names formulaic reads in ``terms`` (parsed once per distinct text)."""
    return set(_required(terms))


def _caret(text: str, start: int, end: int) -> str:
    return f"\n    {text}\n    {' ' * start}{'^' * max(1, end - start)}"


def _bars(rhs: str, offset: int, whole: str) -> tuple[list[tuple[int, int, str]], str]:
    """Find the top-level parenthesised groups of ``rhs`` that hold a top-level bar.

    Returns ``(start, end, inner)`` for each, and ``rhs`` with them removed.
    """
    found = []
    depth, start = 0, -1
    for i, char in enumerate(rhs):
        if char == "(":
            if depth == 0:
                start = i
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError("a ')' without its '(':" + _caret(whole, offset + i,
                                                                       offset + i + 1))
            if depth == 0:
                inner = rhs[start + 1:i]
                if _top_level_bar(inner) is not None and (start == 0 or
                                                          not re.search(r"[\w.]$", rhs[:start])):
                    found.append((start, i + 1, inner))
    if depth:
        raise FormulaError("a '(' without its ')':" + _caret(whole, offset + start,
                                                             offset + start + 1))
    kept, last = [], 0
    for start, end, _ in found:
        kept.append(rhs[last:start])
        last = end
    kept.append(rhs[last:])
    return found, "".join(kept)


def _top_level_bar(inner: str) -> int | None:
    depth = 0
    for i, char in enumerate(inner):
        depth += char == "("
        depth -= char == ")"
        if char == "|" and depth == 0:
            return i
    return None


def _tidy_fixed(text: str) -> str:
    """The fixed part once the bars are cut out: stray ``+`` removed, empty means ``1``."""
    tidy = " ".join(text.split())
    while True:
        cleaned = re.sub(r"\+\s*(?=\+|-|$)", "", tidy).strip()
        cleaned = re.sub(r"^\+\s*", "", cleaned)
        if cleaned == tidy:
            break
        tidy = cleaned
    return tidy or "1"


def _parse_bar(inner: str, whole: str, where: int) -> RandomBar:
    bar = _top_level_bar(inner)
    assert bar is not None
    double = inner[bar + 1:bar + 2] == "|"
    terms = inner[:bar].strip()
    group = inner[bar + (2 if double else 1):].strip()
    if not _NAME.match(group):
        raise FormulaError(f"the grouping factor after the bar must be one column name "
                           f"(client_id or therapist_id), got {group!r}:"
                           + _caret(whole, where, where + len(inner) + 2))
    if not terms:
        raise FormulaError("a random-effect term needs terms before the bar, e.g. "
                           "(1 | client_id):" + _caret(whole, where, where + len(inner) + 2))
    try:
        parsed = Formula(terms)
    except FormulaicError as exc:
        raise FormulaError(f"the random-effect term ({inner}) does not parse: "
                           f"{_ANSI.sub('', str(exc)).strip()}") from None
    slopes = tuple(str(term) for term in parsed if str(term) != "1")
    intercept = any(str(term) == "1" for term in parsed)
    return RandomBar(terms, group, not double, intercept, slopes)


def parse_formula(text: str) -> MixedFormula:
    """Parse an lme4 formula into outcome, fixed part and random-effect bars.

    Parameters
    ----------
    text
        E.g. ``"phq9_total ~ I(session - 1) + wai_total_within_lag1 + (1 | client_id)"``.

    Returns
    -------
    MixedFormula

    Raises
    ------
    FormulaError
        With the formula printed and a caret under the part that does not parse: no ``~``,
        unbalanced parentheses, a bar without terms or group, a fixed part formulaic
        cannot read.

    Notes
    -----
    As lme4: ``(1 + x | g)`` is a correlated intercept and slope, ``(1 + x || g)`` the same
    effects independent, ``(0 + x | g)`` a slope without an intercept; the fixed part has an
    intercept unless it says ``0 +`` or ``- 1``. Checked against lme4's own expansion of
    ``||`` in ``tests/test_formulas.py``.

    A formula is parsed once per distinct text (the result is immutable and shared): the
    parameters' validation, the checks and each fit ask for it again.
    """
    if not isinstance(text, str) or "~" not in text:
        raise FormulaError(f"a model formula needs '~' between the outcome and the terms, "
                           f"e.g. 'phq9_total ~ I(session - 1) + (1 | client_id)'; got {text!r}")
    return _parse(text)


@lru_cache(maxsize=1024)
def _parse(text: str) -> MixedFormula:
    """:func:`parse_formula` of a text with a ``~``."""
    lhs, _, rhs = text.partition("~")
    outcome = lhs.strip()
    if not _NAME.match(outcome):
        raise FormulaError("the outcome (left of '~') must be one column name:"
                           + _caret(text, 0, len(lhs.rstrip()) or 1))
    offset = len(lhs) + 1
    found, fixed_text = _bars(rhs, offset, text)
    random = tuple(_parse_bar(inner, text, offset + start) for start, _, inner in found)
    fixed = _tidy_fixed(fixed_text)
    if "|" in fixed:
        where = text.index("|", offset)
        raise FormulaError("a bar '|' outside a random-effect term '( ... | group)':"
                           + _caret(text, where, where + 1))
    try:
        Formula(fixed)
    except FormulaicError as exc:
        raise FormulaError(f"the fixed part '{fixed}' does not parse: "
                           f"{_ANSI.sub('', str(exc)).strip()}") from None
    return MixedFormula(text.strip(), outcome, fixed, random)


#: lavaan's operators, longest first (so that "=~" is not read as "~").
LAVAAN_OPERATORS = ("=~", "~~", "~1", "~", "|", ":=", "==", "<", ">")


@dataclass(frozen=True)
class LavaanStatement:
    """One line of lavaan model syntax: ``lhs op rhs`` (rhs as written)."""

    line: int
    lhs: str
    op: str
    rhs: str


def parse_lavaan(text: str) -> tuple[LavaanStatement, ...]:
    """Split lavaan model syntax into statements and check each has an operator.

    Only the shape is checked here (the parameters load without the data and without semopy):
    every non-empty, non-comment line (or ``;``-separated part) must be ``lhs <op> rhs`` with
    one of lavaan's operators and names on both sides. The full parse is semopy's, when the
    model is fitted.

    Raises
    ------
    FormulaError
        Naming the line and showing it.
    """
    statements = []
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("the model syntax is empty; write lavaan syntax such as "
                           "'Bond =~ wai_3 + wai_5 + wai_7 + wai_9'")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        for part in (p.strip() for p in line.split(";")):
            if not part:
                continue
            op = next((o for o in LAVAAN_OPERATORS if o in part), None)
            lhs, _, rhs = part.partition(op) if op else (part, "", "")
            if op is None or not lhs.strip() or not (rhs.strip() or op == "~1"):
                raise FormulaError(f"line {number} of the model syntax is not 'left operator "
                                   f"right' with a lavaan operator ({', '.join(LAVAAN_OPERATORS)})"
                                   f":\n    {raw}")
            statements.append(LavaanStatement(number, lhs.strip(), op, rhs.strip()))
    return tuple(statements)


def lavaan_observed(statements: tuple[LavaanStatement, ...]) -> set[str]:
    """The observed variables of lavaan syntax: names that are not latent (``=~`` left sides),
    labels, modifiers or numbers."""
    latent = {s.lhs for s in statements if s.op == "=~"}
    names: set[str] = set()
    for s in statements:
        if s.op in (":=", "==", "<", ">"):
            continue
        sides = [s.rhs] if s.op == "~1" else [s.lhs, s.rhs]
        for side in sides:
            for term in side.split("+"):
                term = term.strip()
                if "*" in term:  # a modifier: label*x, 0.5*x, NA*x, c(a, b)*x
                    term = term.rsplit("*", 1)[1].strip()
                if s.op == "|" and side is s.rhs:
                    continue  # thresholds: t1 + t2
                if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", term) and term not in latent:
                    names.add(term)
    return names
