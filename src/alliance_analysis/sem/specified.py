"""Researchers' own structural equation models (``sem_models:`` of the parameters file).

Each entry (:class:`~alliance_analysis.options.SemModelSpec`) is either lavaan syntax on the
canonical item and score columns, fitted to one row per client at ``session``, or a generated
model: the RI-CLPM or CLPM of two scores over ``waves`` (Hamaker, Kuiper & Grasman, 2015;
syntax of Mulder & Hamaker, 2021) or the linear latent growth of one score.
:func:`check_sem_models` checks every model against the data before any is fitted;
:func:`fit_sem_models` fits them in order by ML (FIML with missing values) or WLSMV.

References
----------
.. [1] Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. Journal of
   Statistical Software, 48(2), 1-36.
.. [2] Hamaker, E. L., Kuiper, R. M., & Grasman, R. P. P. P. (2015). A critique of the
   cross-lagged panel model. Psychological Methods, 20(1), 102-116.
.. [3] Mulder, J. D., & Hamaker, E. L. (2021). Three extensions of the random intercept
   cross-lagged panel model. Structural Equation Modeling, 28(4), 638-648.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from alliance_analysis.data.clients import CLIENT
from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.options import SemModelSpec
from alliance_analysis.results import ModelResult
from alliance_analysis.sem.models import fit_sem, fit_sem_ordinal
from alliance_analysis.sem.panel import wide_panel
from alliance_analysis.sem.invariance import invariance_table, longitudinal_syntax
from alliance_analysis.sem.syntax import growth_syntax, riclpm_syntax

#: Columns of :func:`parameter_table` (``tables/sem_<name>_params.csv``), in order.
PARAM_COLUMNS = ("lhs", "op", "rhs", "group", "label", "est", "se", "z", "p", "std_all")


def _short(column: str) -> str:
    return column.removesuffix("_total")


def model_data(sessions: pd.DataFrame, name: str, spec: SemModelSpec
               ) -> tuple[str, pd.DataFrame]:
    """The syntax fitted and its data: one row per client.

    Syntax models take the rows of ``session``; generated models the scores at each wave
    (columns ``<score>_s<session>``, missing where a client missed the session).
    """
    if spec.syntax is not None:
        observed = sorted(spec.observed())
        rows = sessions[sessions["session"] == spec.session]
        data = rows.drop_duplicates(CLIENT).set_index(CLIENT)[observed]
        return spec.syntax, data
    waves = list(spec.waves or ())
    if spec.generate == "growth":
        y = _short(spec.y)
        data = wide_panel(sessions, {y: spec.y}, waves)
        columns = [f"{y}_s{w}" for w in waves]
        return growth_syntax(columns, [w - waves[0] for w in waves]), data
    x, y = _short(spec.x), _short(spec.y)
    data = wide_panel(sessions, {x: spec.x, y: spec.y}, waves)
    syntax = riclpm_syntax([f"{x}_s{w}" for w in waves], [f"{y}_s{w}" for w in waves],
                           x_name=x, y_name=y, random_intercepts=spec.generate == "riclpm",
                           constrain_autoregressive=spec.constrain_autoregressive,
                           constrain_crosslagged=spec.constrain_crosslagged)
    return syntax, data


def check_sem_models(sessions: pd.DataFrame, models: Mapping[str, SemModelSpec]) -> None:
    """Every problem the data reveal in ``sem_models:``, before anything is fitted.

    Raises
    ------
    AllianceParamsError
        Listing, per model: observed variables of the syntax that are not columns of the
        session table (with the columns there are), scores of generated models that are not
        columns, a session with no rows, and items that are not numeric.
    """
    problems = []
    columns = set(map(str, sessions.columns))
    sessions_seen = set(sessions["session"].dropna().astype(int))
    for name, spec in models.items():
        needed = spec.observed() | {c for c in (spec.x, spec.y) if c}
        absent = sorted(needed - columns)
        if absent:
            problems.append(f"sem_models.{name}: {absent} not in the session table. Columns: "
                            f"{', '.join(sorted(columns))}")
            continue
        asked = ([spec.session] if spec.session is not None else
                 list(spec.sessions or spec.waves or ()))
        unseen = [s for s in asked if s not in sessions_seen]
        if unseen:
            problems.append(f"sem_models.{name}: no rows at session(s) {unseen}")
            continue
        text = [c for c in sorted(needed) if not pd.api.types.is_numeric_dtype(sessions[c])]
        if text:
            problems.append(f"sem_models.{name}: {text} are not numeric: a structural "
                            "equation model needs numeric items and scores")
    if problems:
        raise AllianceParamsError(f"{len(problems)} problem(s) in sem_models:\n  - "
                                  + "\n  - ".join(problems))


def fit_sem_model(sessions: pd.DataFrame, name: str, spec: SemModelSpec,
                  level: float = 0.95) -> ModelResult:
    """Fit one entry of ``sem_models:``.

    Returns
    -------
    ModelResult
        That of :func:`~alliance_analysis.sem.models.fit_sem` (ML, FIML with missing values)
        or :func:`~alliance_analysis.sem.models.fit_sem_ordinal` (WLSMV), its ``spec`` the
        syntax fitted, with ``fit["session"]`` or ``fit["waves"]`` saying which rows.
    """
    syntax, data = model_data(sessions, name, spec)
    if spec.estimator == "WLSMV":
        result = fit_sem_ordinal(syntax, data.dropna(), name)
    else:
        result = fit_sem(syntax, data, name, missing=spec.missing, meanstructure=(
            True if spec.generate in ("riclpm", "clpm") or spec.missing == "fiml" else None),
            level=level, estimator=spec.estimator)
    where = ({"session": spec.session} if spec.session is not None
             else {"waves": list(spec.waves or ())})
    return ModelResult(result.name, result.params, {**result.fit, **where}, result.spec,
                       result.extra)


def parameter_table(result: ModelResult) -> pd.DataFrame:
    """The parameters as ``tables/sem_<name>_params.csv`` holds them (:data:`PARAM_COLUMNS`)."""
    params = result.params
    return pd.DataFrame({
        "lhs": params["lhs"], "op": params["op"], "rhs": params["rhs"],
        "group": params["group"] if "group" in params else 1,
        "label": params["label"] if "label" in params else "",
        "est": params["estimate"], "se": params["se"],
        "z": params["estimate"] / params["se"], "p": params["p"],
        "std_all": params["std_estimate"] if "std_estimate" in params else float("nan")})


@dataclass(frozen=True)
class SpecifiedSem:
    """The researcher's SEMs of a run, fitted in the order given.

    ``results`` holds each model's fit (for a longitudinal model, its least constrained
    level); ``invariance`` each longitudinal model's fits by level and their comparison table
    (:func:`alliance_analysis.sem.invariance.invariance_table`).
    """

    results: dict[str, ModelResult]
    specs: dict[str, SemModelSpec]
    invariance: dict[str, tuple[dict[str, ModelResult], pd.DataFrame]]


def fit_longitudinal(sessions: pd.DataFrame, name: str, spec: SemModelSpec
                     ) -> tuple[dict[str, ModelResult], pd.DataFrame]:
    """A one-factor model measured at each of ``spec.sessions``, at each invariance level.

    Items are matched by position over sessions (columns ``<item>_s<session>``, one row per
    client); the levels follow semTools' ``measEq.syntax`` conventions
    (:func:`alliance_analysis.sem.invariance.longitudinal_syntax`).
    """
    factor, items = spec.factor_items()
    waves = list(spec.sessions or ())
    data = wide_panel(sessions, {item: item for item in items}, waves)
    by_occasion = {f"s{w}": [f"{item}_s{w}" for item in items] for w in waves}
    levels = list(spec.invariance or ("configural",))
    fits = {lvl: fit_sem(longitudinal_syntax(by_occasion, lvl, factor), data,
                         f"{name}_{lvl}", missing=spec.missing, meanstructure=True,
                         estimator=spec.estimator if spec.estimator != "WLSMV" else "ML")
            for lvl in levels}
    return fits, invariance_table(fits)


def fit_sem_models(sessions: pd.DataFrame, models: Mapping[str, SemModelSpec],
                   level: float = 0.95) -> SpecifiedSem:
    """Check every model against the data, then fit them in order."""
    check_sem_models(sessions, models)
    results, invariance = {}, {}
    for name, spec in models.items():
        if spec.sessions is not None:
            fits, table = fit_longitudinal(sessions, name, spec)
            invariance[name] = (fits, table)
            results[name] = next(iter(fits.values()))
        else:
            results[name] = fit_sem_model(sessions, name, spec, level)
    return SpecifiedSem(results, dict(models), invariance)
