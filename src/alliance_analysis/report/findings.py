"""The key findings of a run: the questions it can answer, in plain language with numbers.

The report page opens with them (``id="key-findings"``): the within- and between-client
alliance effects, symptom change per session, the therapist share of alliance variance, the
alliance measurement model's fit, the RI-CLPM's cross-lagged paths, and what changes how to
read them (excluded rows, models that did not converge or are singular). Every number comes
from the run's ``results.json`` or its tables, never from a second computation, and each
finding names the table it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.instruments import Instrument, get_instrument
from alliance_analysis.report.runrecord import RunRecord
from alliance_analysis.report.tables import decimals_for, format_number, format_p


@dataclass(frozen=True)
class Finding:
    """One answered question.

    Attributes
    ----------
    question
        The question, as a researcher asks it.
    answer
        The answer in plain language, with the estimate, its CI (at ``multilevel.ci_level``
        for the multilevel models, 95% for the SEMs) and p.
    table
        The table the numbers come from (``tables/<table>.csv``; the page links to it).
    """

    question: str
    answer: str
    table: str


def _instrument(parameters: dict[str, Any], role: str) -> Instrument | None:
    key = parameters.get(role)
    if not key:
        return None
    try:
        return get_instrument(key, parameters.get("custom_instruments") or {})
    except AllianceParamsError:
        return None


def _level(parameters: dict[str, Any]) -> str:
    """The level of the multilevel stage's intervals (``multilevel.ci_level``), as "95%"."""
    return f"{100 * (parameters.get('multilevel') or {}).get('ci_level', 0.95):g}%"


def _estimate(values: dict[str, Any], prefix: str, level: str = "95%", places: int = 2) -> str:
    """``b = -1.58, 95% CI [-1.85, -1.32], p < .001`` from ``<prefix>.estimate`` etc."""
    b = format_number(values[f"{prefix}.estimate"], decimals=places)
    low = format_number(values.get(f"{prefix}.ci_low"), decimals=places)
    high = format_number(values.get(f"{prefix}.ci_high"), decimals=places)
    text = f"b = {b}, {level} CI [{low}, {high}]"
    p = values.get(f"{prefix}.p")
    return text + (f", p {_p(p)}" if p is not None else "")


def _p(p: float) -> str:
    shown = format_p(p)
    return shown if shown.startswith("<") else f"= {shown}"


def _clear(values: dict[str, Any], prefix: str) -> bool | None:
    """Whether the CI excludes 0 (None when there is no CI)."""
    low, high = values.get(f"{prefix}.ci_low"), values.get(f"{prefix}.ci_high")
    if low is None or high is None:
        return None
    return low > 0 or high < 0


def _model_term(values: dict[str, Any], parameters: dict[str, Any], term: str,
                builtin: str) -> tuple[str, str] | None:
    """The ``results.json`` prefix of ``term`` in the first listed model that has it, else
    in the built-in multilevel model ``builtin``; with the table it is shown in."""
    for name in parameters.get("models") or {}:
        if values.get(f"models.{name}.{term}.estimate") is not None:
            return f"models.{name}.{term}", f"model_{name}_fixed"
    if values.get(f"multilevel.{builtin}.{term}.estimate") is not None:
        return f"multilevel.{builtin}.{term}", f"multilevel_{builtin}"
    return None


def _alliance_effects(values: dict[str, Any], parameters: dict[str, Any],
                      alliance: Instrument, symptoms: Instrument) -> list[Finding]:
    found = []
    a, s = alliance.abbreviation(), symptoms.abbreviation()
    within = _model_term(values, parameters, f"{alliance.key}_within_lag1", "within_between")
    if within:
        prefix, table = within
        b = values[f"{prefix}.estimate"]
        direction = "lower" if b < 0 else "higher"
        verdict = ("" if _clear(values, prefix) else
                   " The interval includes 0: no clear within-client effect.")
        found.append(Finding(
            f"Does a better alliance this session predict fewer symptoms next session, within "
            f"a client?",
            f"When a client's {a} was 1 point above their own average, their {s} at the next "
            f"session was {format_number(abs(b))} points {direction} "
            f"({_estimate(values, prefix, _level(parameters))})."
            + verdict, table))
    between = _model_term(values, parameters, f"{alliance.key}_between", "within_between")
    if between:
        prefix, table = between
        b = values[f"{prefix}.estimate"]
        found.append(Finding(
            "Do clients with a better alliance overall have fewer symptoms?",
            f"Clients whose average {a} was 1 point higher had {s} scores "
            f"{format_number(abs(b))} points {'lower' if b < 0 else 'higher'} on average, a "
            f"difference between clients ({_estimate(values, prefix, _level(parameters))}).",
            table))
    return found


def _change(values: dict[str, Any], parameters: dict[str, Any],
            symptoms: Instrument) -> list[Finding]:
    time = (parameters.get("multilevel") or {}).get("time", "session")
    prefix = f"multilevel.growth.{time}"
    if values.get(f"{prefix}.estimate") is None:
        return []
    b = values[f"{prefix}.estimate"]
    unit = {"session": "session", "log_session": "unit of log session", "day": "day"}.get(
        time, time)
    return [Finding(
        "How fast do symptoms change?",
        f"{symptoms.abbreviation()} scores changed by {format_number(b)} points per {unit} on "
        f"average ({_estimate(values, prefix, _level(parameters))}).", "multilevel_growth")]


def _therapist_share(run_dir: Path, alliance: Instrument, level: str) -> list[Finding]:
    path = run_dir / "tables" / "multilevel_alliance_growth_icc.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    rows = table[(table["level"] == "therapist")
                 & (table["measure"] == alliance.score_column())]
    if not len(rows) or pd.isna(rows["icc"].iloc[0]):
        return []
    row = rows.iloc[0]
    share = format_number(100 * row["icc"], decimals=1)
    icc = format_number(row["icc"], bounded=True)
    low = format_number(row["ci_low"], bounded=True)
    high = format_number(row["ci_high"], bounded=True)
    return [Finding(
        "How much of the alliance is the therapist's?",
        f"Therapists accounted for {share}% of the variance in {alliance.abbreviation()} "
        f"scores (ICC = {icc}, {level} CI [{low}, {high}]).",
        "multilevel_alliance_growth_icc")]


def _measurement(values: dict[str, Any], alliance: Instrument) -> list[Finding]:
    prefix = "sem.cfa.three_factor"
    if values.get(f"{prefix}.cfi") is None:
        return []
    chi2 = format_number(values.get(f"{prefix}.chi2"))
    df = values.get(f"{prefix}.df")
    df_text = format_number(int(df)) if df is not None else ""
    fit = ", ".join(f"{name} = {format_number(values.get(f'{prefix}.{key}'), bounded=True)}"
                    for name, key in (("CFI", "cfi"), ("RMSEA", "rmsea"), ("SRMR", "srmr")))
    good = (values[f"{prefix}.cfi"] >= 0.95 and (values.get(f"{prefix}.rmsea") or 0) <= 0.06
            and (values.get(f"{prefix}.srmr") or 0) <= 0.08)
    reading = ("within Hu and Bentler's (1999) guides" if good else
               "outside Hu and Bentler's (1999) guides: read subscale scores with care")
    session = values.get("sem.cfa.session")
    return [Finding(
        "Does the alliance questionnaire measure its three facets?",
        f"The three-factor model (Goal, Task, Bond) of the {alliance.abbreviation()} items"
        f"{f' at session {session}' if session is not None else ''} fitted "
        f"χ²({df_text}) = {chi2}, p {_p(values.get(f'{prefix}.p'))}, {fit}: {reading}.",
        "sem_cfa_fit")]


def _cross_lagged(run_dir: Path, alliance: Instrument, symptoms: Instrument) -> list[Finding]:
    path = run_dir / "tables" / "sem_panel_lagged.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    rows = table[(table["model"] == "riclpm") & (table["kind"] == "cross-lagged")]
    if not len(rows):
        return []
    parts = []
    for source, target in ((alliance, symptoms), (symptoms, alliance)):
        path_rows = rows[rows["path"] == f"{source.key} -> {target.key}"]
        if not len(path_rows):
            continue
        clear = int(((path_rows["ci_low"] > 0) | (path_rows["ci_high"] < 0)).sum())
        places = decimals_for(pd.concat([path_rows["estimate"], path_rows["ci_low"],
                                         path_rows["ci_high"]]))
        lags = "; ".join(
            f"sessions {r.from_session}→{r.to_session}: b = "
            f"{format_number(r.estimate, decimals=places)}, 95% CI "
            f"[{format_number(r.ci_low, decimals=places)}, "
            f"{format_number(r.ci_high, decimals=places)}]"
            for r in path_rows.itertuples(index=False))
        parts.append(f"{source.abbreviation()} → {target.abbreviation()} in {clear} of "
                     f"{len(path_rows)} lags ({lags})")
    return [Finding(
        "Within clients over sessions, which comes first (RI-CLPM)?",
        "Cross-lagged paths between the within-person deviations whose 95% CI excludes 0: "
        + "; and ".join(parts) + ".", "sem_panel_lagged")]


def key_findings(run_dir: Path, parameters: dict[str, Any]) -> list[Finding]:
    """The key findings of a run folder, in the order the report shows them.

    Parameters
    ----------
    run_dir
        The run folder (its ``results.json`` and ``tables/``).
    parameters
        The run's parameters as recorded in the manifest (``alliance``, ``symptoms``,
        ``models``, ``multilevel.time``).

    Returns
    -------
    list of Finding
        Only the questions the run answered: a finding whose model was not fitted, or not
        estimable, is left out.
    """
    values = RunRecord.read(run_dir).results
    alliance = _instrument(parameters, "alliance")
    symptoms = _instrument(parameters, "symptoms")
    if alliance is None or symptoms is None:
        return []
    return [*_alliance_effects(values, parameters, alliance, symptoms),
            *_change(values, parameters, symptoms),
            *_therapist_share(run_dir, alliance, _level(parameters)),
            *_measurement(values, alliance),
            *_cross_lagged(run_dir, alliance, symptoms)]


def reading_flags(run_dir: Path) -> list[str]:
    """What changes how to read the findings, one short phrase each: rows excluded by
    cleaning, models that did not converge, singular fits (from ``results.json`` and the
    flags of ``outputs.json``; the page lists the details among its warnings)."""
    record = RunRecord.read(run_dir)
    values, flags = record.results, record.flags()
    phrases = []
    excluded = values.get("clean.rows_excluded")
    if excluded:
        phrases.append(f"{excluded:,} of {values.get('clean.rows_input', 0):,} input rows "
                       "excluded by cleaning")
    unconverged = sorted(m for m, f in flags.items() if not f.get("converged", True))
    singular = sorted(m for m, f in flags.items() if f.get("singular"))
    for models, what in ((unconverged, "did not converge"), (singular, "singular fit")):
        if models:
            shown = ", ".join(models[:4]) + (f" and {len(models) - 4} more"
                                             if len(models) > 4 else "")
            phrases.append(f"{len(models)} model{'s' if len(models) != 1 else ''} "
                           f"{what} ({shown})")
    return phrases
