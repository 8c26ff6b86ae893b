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
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from alliance_analysis.data.clients import CLIENT
from alliance_analysis.errors import AllianceDataError, AllianceParamsError
from alliance_analysis.options import SemModelSpec
from alliance_analysis.results import ModelResult
from alliance_analysis.sem.models import fit_sem, fit_sem_ordinal
from alliance_analysis.sem.panel import wide_panel
from alliance_analysis.sem.invariance import (
    fit_group_invariance,
    invariance_table,
    longitudinal_syntax,
    scaled_difference,
)
from alliance_analysis.sem.syntax import growth_syntax, riclpm_syntax

#: Columns of :func:`parameter_table` (``tables/sem_<name>_params.csv``), in order.
PARAM_COLUMNS = ("lhs", "op", "rhs", "group", "label", "est", "se", "z", "p", "std_all")


def _short(column: str) -> str:
    return column.removesuffix("_total")


def model_data(sessions: pd.DataFrame, name: str, spec: SemModelSpec,
               label_lagged: bool = False) -> tuple[str, pd.DataFrame, list[str]]:
    """The syntax fitted, its data (one row per client) and notes on how the data were built.

    Syntax models take the rows of ``session`` (with the ``group`` column); generated models
    the scores at each wave (columns ``<score>_s<session>``, missing where a client missed
    the session) and the client-level ``group`` and ``covariates`` (text covariates coded
    0/1 per level, :func:`coded_covariates`); ``label_lagged`` labels a panel model's lagged
    paths (equal over groups, :func:`~alliance_analysis.sem.syntax.riclpm_syntax`).
    """
    if spec.syntax is not None:
        observed = sorted(spec.observed()) + ([spec.group] if spec.group else [])
        rows = sessions[sessions["session"] == spec.session]
        data = rows.drop_duplicates(CLIENT).set_index(CLIENT)[observed]
        return spec.syntax, data, []
    waves = list(spec.waves or ())
    if spec.generate == "growth":
        y = _short(spec.y)
        data = wide_panel(sessions, {y: spec.y}, waves)
        columns = [f"{y}_s{w}" for w in waves]
        data = data.join(client_level(sessions, [spec.group] if spec.group else [], name))
        return growth_syntax(columns, [w - waves[0] for w in waves]), data, []
    x, y = _short(spec.x), _short(spec.y)
    data = wide_panel(sessions, {x: spec.x, y: spec.y}, waves)
    clients = client_level(sessions, sorted(spec.client_columns()), name)
    covariates, notes = coded_covariates(clients, list(spec.covariates or ()), name)
    data = data.join(covariates)
    if spec.group:
        data = data.join(clients[[spec.group]])
    data.attrs["covariates"] = list(covariates.columns)
    syntax = riclpm_syntax([f"{x}_s{w}" for w in waves], [f"{y}_s{w}" for w in waves],
                           x_name=x, y_name=y, random_intercepts=spec.generate == "riclpm",
                           constrain_autoregressive=spec.constrain_autoregressive,
                           constrain_crosslagged=spec.constrain_crosslagged,
                           covariates=list(covariates.columns), label_lagged=label_lagged)
    return syntax, data, notes


def client_level(sessions: pd.DataFrame, columns: list[str], name: str = "") -> pd.DataFrame:
    """Client-level columns, one row per client (index ``client_id``).

    Raises
    ------
    AllianceDataError
        A column takes two values within one client (the clients and values are named).
    """
    out = {}
    for column in columns:
        values = sessions[[CLIENT, column]].dropna().drop_duplicates()
        varying = values[values.duplicated(CLIENT, keep=False)]
        if len(varying):
            examples = varying.groupby(CLIENT)[column].apply(list).head(3).to_dict()
            raise AllianceDataError(
                f"sem_models.{name}: {column!r} must be one value per client (it is used as a "
                f"client-level group or covariate), but {varying[CLIENT].nunique()} client(s) "
                f"have several, e.g. {examples}")
        out[column] = values.set_index(CLIENT)[column]
    clients = pd.Index(sorted(sessions[CLIENT].unique()), name=CLIENT)
    return pd.DataFrame(out, index=clients)


def coded_covariates(clients: pd.DataFrame, covariates: list[str], name: str = ""
                     ) -> tuple[pd.DataFrame, list[str]]:
    """Numeric covariate columns: numbers as they are, text coded 0/1 per level.

    A text column with levels ``a < b < c`` (sorted) becomes ``<column>_b`` and
    ``<column>_c`` (1 for that level, 0 otherwise, missing where the column is), ``a`` the
    reference, as R's treatment contrasts; each coding is described in the notes.

    Raises
    ------
    AllianceDataError
        A covariate with a single value.
    """
    frames, notes = [], []
    for column in covariates:
        values = clients[column]
        present = values.dropna().unique()
        if len(present) < 2:
            raise AllianceDataError(f"sem_models.{name}: the covariate {column!r} has "
                                    f"{len(present)} value(s); it needs at least two")
        if pd.api.types.is_numeric_dtype(values):
            frames.append(values.astype(float).rename(column))
            continue
        levels = sorted(map(str, present))
        for level in levels[1:]:
            code = f"{column}_{re.sub(r'[^0-9A-Za-z]+', '_', level).strip('_')}"
            frames.append(values.map(lambda v, lv=level: np.nan if pd.isna(v) else
                                     float(str(v) == lv)).rename(code))
        notes.append(f"covariate {column} coded 0/1: {', '.join(levels[1:])} against "
                     f"{levels[0]} (the reference)")
    return (pd.concat(frames, axis=1) if frames else pd.DataFrame(index=clients.index),
            notes)


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
        needed = spec.observed() | {c for c in (spec.x, spec.y) if c} | spec.client_columns()
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
        text = [c for c in sorted(needed - spec.client_columns())
                if not pd.api.types.is_numeric_dtype(sessions[c])]
        if text:
            problems.append(f"sem_models.{name}: {text} are not numeric: a structural "
                            "equation model needs numeric items and scores")
    if problems:
        raise AllianceParamsError(f"{len(problems)} problem(s) in sem_models:\n  - "
                                  + "\n  - ".join(problems))


def fit_sem_model(sessions: pd.DataFrame, name: str, spec: SemModelSpec,
                  level: float = 0.95, label_lagged: bool = False) -> ModelResult:
    """Fit one entry of ``sem_models:`` (without its invariance levels).

    Returns
    -------
    ModelResult
        That of :func:`~alliance_analysis.sem.models.fit_sem` (ML or MLR, FIML with missing
        values; multigroup with ``group``) or :func:`~alliance_analysis.sem.models.
        fit_sem_ordinal` (WLSMV), its ``spec`` the syntax fitted, with ``fit["session"]``
        or ``fit["waves"]`` saying which rows. ``label_lagged`` labels the lagged paths of
        a generated panel model (equal over groups; see
        :func:`~alliance_analysis.sem.syntax.riclpm_syntax`).
    """
    syntax, data, notes = model_data(sessions, name, spec, label_lagged)
    if spec.estimator == "WLSMV":
        result = fit_sem_ordinal(syntax, data.dropna(), name)
    else:
        result = fit_sem(syntax, data, name, missing=spec.missing, meanstructure=(
            True if spec.generate in ("riclpm", "clpm") or spec.missing == "fiml" else None),
            level=level, estimator=spec.estimator, group=spec.group)
    fit = dict(result.fit)
    if spec.covariates:
        fit = conditional_on_covariates(fit, data[data.attrs["covariates"]],
                                        data[spec.group] if spec.group else None)
    where = ({"session": spec.session} if spec.session is not None
             else {"waves": list(spec.waves or ())})
    fit["note"] = " ".join([fit.get("note", ""), *(f"{n[0].upper()}{n[1:]}." for n in notes)])
    return ModelResult(result.name, result.params, {**fit, **where}, result.spec,
                       result.extra)


def conditional_on_covariates(fit: dict, covariates: pd.DataFrame,
                              groups: pd.Series | None = None) -> dict:
    """Log-likelihood, npar, AIC and BIC conditional on complete covariates, as lavaan's
    ``fixed.x = TRUE`` reports them.

    The covariates enter as single-indicator latent variables, so their means and
    (co)variances are estimated (at their sample values when complete) and their marginal
    likelihood is part of ``loglik``; lavaan fixes them and leaves both out. Chi-square,
    df and the fit indices are the same either way. With missing covariate values (which
    FIML uses and lavaan's ``fixed.x`` would drop) the joint values are kept, with a
    warning. ``groups``: the group of each row of a multigroup model.
    """
    values = covariates
    if values.isna().any().any():
        return {**fit, "warnings": [*fit["warnings"], "a covariate has missing values: FIML "
                                    "uses those clients; loglik, npar, AIC and BIC include the "
                                    "covariates' own means and (co)variances"]}
    names = list(values.columns)
    k = len(names)
    groups = ([values] if groups is None else
              [part for _, part in values[groups.notna()].groupby(groups, sort=False)])
    marginal = 0.0
    for part in groups:
        x = part.to_numpy(dtype=float)
        cov = np.atleast_2d(np.cov(x, rowvar=False, bias=True))
        marginal += -0.5 * len(x) * (k * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1] + k)
    npar = fit["npar"] - len(groups) * (k + k * (k + 1) // 2)
    loglik = fit["loglik"] - marginal
    n = fit["n_obs"]
    return {**fit, "loglik": loglik, "loglik_saturated": fit["loglik_saturated"] - marginal,
            "npar": npar, "aic": -2 * loglik + 2 * npar, "bic": -2 * loglik + np.log(n) * npar,
            "note": fit.get("note", "") + " Covariates: loglik, npar, AIC and BIC are "
            "conditional on them (lavaan's fixed.x = TRUE)."}


def lagged_test(free: ModelResult, equal: ModelResult, group: str) -> pd.DataFrame:
    """Are the lagged paths equal over groups? The two fits compared (Mulder & Hamaker 2021).

    Returns
    -------
    pandas.DataFrame
        Two rows (``lagged_paths`` ``free`` and ``equal over groups``) with ``npar, chisq,
        df, pvalue, cfi, tli, rmsea, srmr, aic, bic`` and, on the second, ``chisq_diff,
        df_diff, p_diff`` (the likelihood-ratio test; Satorra-Bentler scaled under MLR),
        ``delta_cfi, delta_rmsea`` and a plain-language ``verdict``.
    """
    rows = []
    for label, result in (("free", free), ("equal over groups", equal)):
        f = result.fit
        rows.append({"lagged_paths": label, "npar": f["npar"], "chisq": f["chi2"], "df": f["df"],
                     "pvalue": f["p"], **{k: f[k] for k in ("cfi", "tli", "rmsea", "srmr",
                                                            "aic", "bic")}})
    f0, f1 = equal.fit, free.fit
    converged = bool(f0["converged"] and f1["converged"])
    if not converged:
        diff, ddf, p = np.nan, np.nan, np.nan
    elif f0.get("estimator") == "MLR":
        diff, ddf, p = scaled_difference(f0["chi2"], f0["df"], f0["scaling_factor"],
                                         f1["chi2"], f1["df"], f1["scaling_factor"])
    else:
        diff, ddf = f0["chi2"] - f1["chi2"], int(f0["df"] - f1["df"])
        p = float(stats.chi2.sf(diff, ddf)) if ddf > 0 else np.nan
    verdict = (f"lagged paths equal over the groups of {group}: not assessed (a model did "
               "not converge)" if not converged else
               f"lagged paths differ between the groups of {group} (chi-square difference "
               f"{diff:.2f} on {ddf} df, p {_p_text(p)})" if p < 0.05 else
               f"no evidence that the lagged paths differ between the groups of {group} "
               f"(chi-square difference {diff:.2f} on {ddf} df, p {_p_text(p)})")
    nan = dict.fromkeys(("chisq_diff", "df_diff", "p_diff", "delta_cfi", "delta_rmsea"),
                        np.nan)
    rows[0].update(nan, verdict="baseline: every lagged path free in each group")
    rows[1].update(chisq_diff=diff, df_diff=ddf, p_diff=p,
                   delta_cfi=f0["cfi"] - f1["cfi"], delta_rmsea=f0["rmsea"] - f1["rmsea"],
                   verdict=verdict)
    return pd.DataFrame(rows)


def _p_text(p: float) -> str:
    return "< .001" if p < 0.001 else f"= {p:.3f}".replace("0.", ".", 1)


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

    ``results`` holds each model's fit (for an invariance model, its least constrained
    level); ``invariance`` each invariance model's fits by level and their comparison table
    (:func:`alliance_analysis.sem.invariance.invariance_table`); ``comparisons`` each
    multigroup panel model's fits with the lagged paths free and equal over groups and
    their comparison (:func:`lagged_test`).
    """

    results: dict[str, ModelResult]
    specs: dict[str, SemModelSpec]
    invariance: dict[str, tuple[dict[str, ModelResult], pd.DataFrame]]
    comparisons: dict[str, tuple[dict[str, ModelResult], pd.DataFrame]] = field(
        default_factory=dict)


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
                         estimator=spec.estimator)
            for lvl in levels}
    return fits, invariance_table(fits)


def fit_sem_models(sessions: pd.DataFrame, models: Mapping[str, SemModelSpec],
                   level: float = 0.95) -> SpecifiedSem:
    """Check every model against the data, then fit them in order."""
    check_sem_models(sessions, models)
    results, invariance, comparisons = {}, {}, {}
    for name, spec in models.items():
        if spec.sessions is not None:
            fits, table = fit_longitudinal(sessions, name, spec)
            invariance[name] = (fits, table)
            results[name] = next(iter(fits.values()))
        elif spec.invariance is not None:
            syntax, data, _ = model_data(sessions, name, spec)
            fits = fit_group_invariance(syntax, data, spec.group, spec.invariance,
                                        estimator=spec.estimator, missing=spec.missing,
                                        name=name)
            invariance[name] = (fits, invariance_table(fits, over=f"the groups of "
                                                       f"{spec.group}"))
            results[name] = next(iter(fits.values()))
        else:
            results[name] = fit_sem_model(sessions, name, spec, level)
            if spec.group and spec.generate in ("riclpm", "clpm"):
                equal = fit_sem_model(sessions, f"{name}_lagged_equal", spec, level,
                                      label_lagged=True)
                comparisons[name] = ({"free": results[name], "lagged_equal": equal},
                                     lagged_test(results[name], equal, spec.group))
    return SpecifiedSem(results, dict(models), invariance, comparisons)
