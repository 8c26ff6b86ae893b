"""Structural equation models of the alliance: measurement, dynamics and growth.

Three questions, three kinds of model (DESIGN.md, ``sem.py``):

* **Does the alliance questionnaire measure what its subscales claim?** Confirmatory factor
  analyses of the items at one session: one factor, three correlated factors (Goal, Task,
  Bond) and a bifactor model, side by side, with standardized loadings and omega
  (:func:`fit_cfa`).
* **Does a better alliance lead to fewer symptoms at the next session, within a client?**
  The random-intercept cross-lagged panel model beside the traditional CLPM
  (:mod:`alliance_analysis.sem.panel`).
* **Does early alliance predict how fast symptoms fall?** A latent growth model
  (:mod:`alliance_analysis.sem.panel`).

Estimation is ML (FIML with missing data) or, for the ordinal items, DWLS on polychoric
correlations, with every fit statistic computed by lavaan's conventions
(:mod:`alliance_analysis.sem.estimation`, :mod:`alliance_analysis.sem.fit`,
:mod:`alliance_analysis.sem.ordinal`). This module also holds :class:`SemOptions`, the
``sem:`` section of the run parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from alliance_analysis.sem import estimation as sem_estimation
from alliance_analysis.sem import multigroup as sem_multigroup
from alliance_analysis.sem import robust as sem_robust
from alliance_analysis.errors import (AllianceDataError, AllianceError, AllianceParamsError,
                                     ConvergenceWarning, NotEstimableError)
from alliance_analysis.instruments import Instrument
from alliance_analysis.results import ModelResult
from alliance_analysis.sem.fit import FIT_NOTE, fit_measures
from alliance_analysis.sem.ordinal import fit_dwls
from alliance_analysis.sem.parameters import parameter_table
from alliance_analysis.sem.syntax import CFA_MODELS, GENERAL_FACTOR, cfa_syntax
from alliance_analysis.stats.threads import one_blas_thread

#: Columns of every SEM fit table, in order.
FIT_COLUMNS = ("model", "estimator", "missing", "n_obs", "n_dropped", "npar", "chi2", "df", "p",
               "cfi", "tli", "rmsea", "rmsea_ci_low", "rmsea_ci_high", "srmr", "loglik", "aic",
               "bic", "converged", "warnings")


@one_blas_thread
def fit_sem(syntax: str, data: pd.DataFrame, name: str,
            missing: Literal["fiml", "listwise"] = "fiml", meanstructure: bool | None = None,
            std_lv: bool = False, level: float = 0.95,
            estimator: Literal["ML", "MLR"] = "ML", group: str | None = None,
            group_equal: Sequence[str] = ()) -> ModelResult:
    """Fit a structural equation model by maximum likelihood (FIML with missing values).

    With ``estimator="MLR"`` the estimates are ML's and the standard errors Huber-White
    (sandwich, on the observed information, as lavaan's MLR), with the Yuan-Bentler scaled
    chi-square and the scaled and robust CFI, TLI and RMSEA in ``fit``
    (:mod:`alliance_analysis.sem.robust`).

    Parameters
    ----------
    syntax
        lavaan-style model syntax (see :mod:`alliance_analysis.sem.syntax`).
    data
        One row per case (client); the model's observed variables are columns.
    name
        Stable name of the result (table and ``results.json`` keys).
    missing
        ``"fiml"``: full-information ML, every case with at least one observed model
        variable is used. ``"listwise"``: only complete cases; the number dropped is in
        ``fit["n_dropped"]``.
    meanstructure
        Fit means and intercepts; default: with FIML, as lavaan. Pass True for syntax with
        intercept statements (``x ~ 1``). FIML always fits them (its likelihood needs the
        means): ``False`` with ``missing="fiml"`` is overridden, as lavaan does, with a note
        in ``fit["warnings"]``.
    std_lv
        Identify each factor by fixing its variance to 1 and freeing all its loadings
        (lavaan's ``std.lv = TRUE``) instead of fixing its first loading to 1.
    level
        Confidence level of the Wald intervals.
    group
        A column of ``data``: fit the model in each of its groups (lavaan's ``group =``;
        see :mod:`alliance_analysis.sem.multigroup`). Rows with the group missing are
        dropped and counted in ``n_dropped``; mean structure always on.
    group_equal
        With ``group``: the kinds of parameters equal over groups (lavaan's
        ``group.equal``, e.g. ``("loadings", "intercepts")``); labels in the syntax make
        single parameters equal.

    Returns
    -------
    ModelResult
        ``params``: ``term, estimate, se, ci_low, ci_high, p, std_estimate, lhs, op, rhs,
        free, label`` (``std_estimate`` is lavaan's ``std.all``), with ``group`` (1, 2, ..
        in order of first appearance; names in ``fit["group_labels"]``) for a multigroup
        model. ``fit``: the statistics of
        :func:`alliance_analysis.sem.fit.fit_measures` plus ``estimator, missing, test,
        information, iterations, converged, warnings, note``. A fit that breaks down
        numerically or does not converge is returned with ``converged`` False and the
        reason in ``warnings`` (estimates NaN if it broke down), not raised.

    Raises
    ------
    AllianceParamsError
        The syntax cannot be parsed (the message quotes the line), or uses an observed
        variable that is not a column of ``data`` (the message lists the columns).
    AllianceDataError
        A model variable is constant or holds text, or too few cases remain. Every message
        names the model.

    References
    ----------
    Bollen, K. A. (1989). *Structural equations with latent variables*. Wiley.
    Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. *Journal of
    Statistical Software*, 48(2), 1-36.
    """
    notes = []
    if group is not None:
        return _fit_groups(syntax, data, name, missing, std_lv, level, estimator, group,
                           tuple(group_equal))
    if meanstructure is None:
        meanstructure = missing == "fiml"
    elif missing == "fiml" and not meanstructure:
        meanstructure = True
        notes.append("missing='fiml' needs the mean structure: meanstructure=False was "
                     "overridden and means and intercepts were estimated (as lavaan does)")
    with _named_errors(name):
        model = _parse(syntax, meanstructure, name)
        if std_lv:
            model = sem_estimation.standardize_latent(model)
        try:
            _check_columns(data, model.observed, name)
            moments = sem_estimation.moments(data, model.observed, missing)
        except NotEstimableError as error:
            return not_estimable_sem(model, syntax, name, str(error), estimator, missing,
                                     level)
    estimates, fit = _estimate((model,), (moments,), estimator, missing, notes)
    _warn(name, tuple(fit["warnings"]))
    return ModelResult(name=name, params=parameter_table(model, estimates, level),
                       fit=fit, spec=syntax)


def _estimate(models: tuple[sem_estimation.Structure, ...],
              groups: tuple[sem_estimation.Moments, ...], estimator: Literal["ML", "MLR"],
              missing: str, notes: list[str]
              ) -> tuple[sem_estimation.Estimates, dict[str, Any]]:
    """Fit one group or several, with MLR's sandwich and scaled statistics when asked; the
    fit dictionary of :func:`fit_sem` (a numerical breakdown comes back flagged)."""
    try:
        estimates = sem_estimation.fit(models, groups, estimator=estimator)
        if estimator == "MLR":
            estimates = sem_robust.with_sandwich(models, groups, estimates)
        measures = fit_measures(models, groups, estimates)
        if estimator == "MLR":
            measures.update(sem_robust.mlr_measures(models, groups, estimates, measures))
    except (np.linalg.LinAlgError, FloatingPointError, ValueError, ZeroDivisionError) as error:
        estimates = _failed_estimates(models[0], missing, error)
        measures = _failed_measures(models[0], groups[0])
        if len(groups) > 1:
            measures["ngroups"] = len(groups)
    notes = [*notes, *estimates.warnings]
    if not measures["saturated_converged"]:
        notes.append("the EM estimates of the saturated model did not converge: chi-square "
                     "and the fit indices are approximate")
    return estimates, {**measures, "estimator": estimator, "missing": missing,
                       "test": "yuan.bentler.mplus" if estimator == "MLR" else "standard",
                       "information": estimates.information,
                       "iterations": estimates.iterations, "converged": estimates.converged,
                       "warnings": notes, "note": FIT_NOTE}


def _fit_groups(syntax: str, data: pd.DataFrame, name: str, missing: Literal["fiml", "listwise"],
                std_lv: bool, level: float, estimator: Literal["ML", "MLR"], group: str,
                group_equal: tuple[str, ...]) -> ModelResult:
    """:func:`fit_sem` with ``group``: one structure per group over shared parameters."""
    with _named_errors(name):
        base = _parse(syntax, True, name)
        if std_lv:
            base = sem_estimation.standardize_latent(base)
        try:
            _check_columns(data, base.observed, name)
            models = sem_multigroup.group_structures(base, 0 if group not in data.columns else
                                                     data[group].nunique(), group_equal)
            groups, labels, no_group = sem_multigroup.group_moments(data, base.observed, group,
                                                                    missing)
        except NotEstimableError as error:
            return not_estimable_sem(base, syntax, name, str(error), estimator, missing,
                                     level)
    notes = ([f"{no_group} row(s) with {group} missing were dropped"] if no_group else [])
    estimates, fit = _estimate(models, groups, estimator, missing, notes)
    fit.update(n_dropped=fit["n_dropped"] + no_group, group=group, group_labels=list(labels),
               group_equal=list(group_equal))
    _warn(name, tuple(fit["warnings"]))
    params = pd.concat([parameter_table(m, estimates, level).assign(group=g + 1)
                        for g, m in enumerate(models)], ignore_index=True)
    return ModelResult(name=name, params=params, fit=fit, spec=syntax)


@one_blas_thread
def fit_sem_ordinal(syntax: str, data: pd.DataFrame, name: str, std_lv: bool = False,
                    level: float = 0.95) -> ModelResult:
    """Fit a measurement model to ordinal items by DWLS on polychoric correlations (WLSMV).

    Incomplete rows are dropped (listwise). Standard errors are robust (sandwich) and
    ``chi2`` is the scaled-shifted statistic, both as lavaan's ``estimator = "WLSMV"``;
    ``chi2_unscaled`` is the plain DWLS statistic, from which ``cfi``, ``tli`` and
    ``rmsea`` are computed (lavaan's unscaled indices). Log-likelihood, AIC and BIC are not
    defined for DWLS (NaN). ``extra["thresholds"]`` holds the item thresholds. ``std_lv``
    as in :func:`fit_sem`. See :func:`alliance_analysis.sem.ordinal.fit_dwls`.

    Empty cells of 2x2 tables are corrected as lavaan does (see
    :func:`alliance_analysis.sem.polychoric.polychoric`): each correction is named in
    ``extra["polychoric_notes"]`` and in ``fit["note"]``; a polychoric correlation on the
    boundary is named in ``fit["warnings"]``. Bad syntax or data raise as in
    :func:`fit_sem`; a fit that breaks down comes back flagged.
    """
    with _named_errors(name):
        parsed = _parse(syntax, False, name)
        try:
            _check_columns(data, parsed.observed, name)
        except NotEstimableError as error:
            return not_estimable_sem(parsed, syntax, name, str(error), "DWLS", "listwise",
                                     level)
    try:
        with _named_errors(name):
            result = fit_dwls(syntax, data, std_lv=std_lv)
    except (np.linalg.LinAlgError, FloatingPointError, ValueError, ZeroDivisionError) as error:
        return _failed_ordinal(syntax, data, name, parsed, error, level)
    pc_notes = result.polychoric_notes
    notes = [*result.estimates.warnings, *result.polychoric_warnings]
    fit = {**result.fit, "estimator": "DWLS", "missing": "listwise", "test": "scaled_shifted",
           "information": result.estimates.information,
           "iterations": result.estimates.iterations,
           "converged": result.estimates.converged,
           "warnings": notes,
           "note": " ".join([FIT_NOTE + " DWLS: polychoric correlations, robust SEs, "
                             "scaled-shifted chi-square (lavaan WLSMV); CFI, TLI and RMSEA "
                             "from the unscaled statistic, as lavaan's cfi/tli/rmsea; no "
                             "log-likelihood.", *(f"Polychoric: {n}." for n in pc_notes)])}
    _warn(name, tuple(notes))
    params = parameter_table(result.model, result.estimates, level)
    return ModelResult(name=name, params=params, fit=fit, spec=syntax,
                       extra={"thresholds": result.thresholds,
                              "polychoric_notes": list(pc_notes)})


#: Robust columns of :func:`fit_table`, after ``p``, when a model has them (MLR, WLSMV).
ROBUST_FIT_COLUMNS = ("chisq_scaled", "df_scaled", "pvalue_scaled", "scaling_factor",
                      "cfi_scaled", "tli_scaled", "rmsea_scaled", "cfi_robust", "tli_robust",
                      "rmsea_robust")


def fit_table(results: Mapping[str, ModelResult]) -> pd.DataFrame:
    """Fit statistics of several models side by side, one row each (:data:`FIT_COLUMNS`).

    When any model has scaled statistics (MLR; WLSMV, whose ``chi2`` is already the
    scaled-shifted one) the :data:`ROBUST_FIT_COLUMNS` follow ``p``, NaN where a model has
    none.
    """
    robust = any(key in r.fit for r in results.values() for key in ROBUST_FIT_COLUMNS)
    columns = list(FIT_COLUMNS)
    if robust:
        at = columns.index("p") + 1
        columns[at:at] = ROBUST_FIT_COLUMNS
    rows = []
    for result in results.values():
        row = {key: result.fit.get(key, np.nan) for key in columns if key != "model"}
        row["warnings"] = "; ".join(result.fit["warnings"])
        rows.append({"model": result.name, **row})
    return pd.DataFrame(rows, columns=columns)


def _warn(name: str, notes: tuple[str, ...]) -> None:
    """Raise each problem of a fit as a ConvergenceWarning naming the model."""
    for note in notes:
        warnings.warn(f"{name}: {note}", ConvergenceWarning, stacklevel=3)


@contextmanager
def _named_errors(name: str) -> Iterator[None]:
    """Re-raise the workbench's own errors with the model's name in front of the message."""
    try:
        yield
    except AllianceError as error:
        if str(error).startswith(f"model {name!r}: "):
            raise
        raise type(error)(f"model {name!r}: {error}") from error


def _parse(syntax: str, meanstructure: bool, name: str) -> sem_estimation.Structure:
    """The model's structure; malformed syntax is an :class:`AllianceParamsError`."""
    try:
        return sem_estimation.structure(syntax, meanstructure)
    except SyntaxError as error:
        text = str(error)
        line = text.split("line:", 1)[1].strip() if "line:" in text else text
        raise AllianceParamsError(
            f"model {name!r}: the model syntax cannot be parsed at the line {line!r}; "
            "correct it (lavaan syntax: 'f =~ x1 + x2', 'y ~ x', 'x1 ~~ x2', 'y ~ 1')"
        ) from error


def _check_columns(data: pd.DataFrame, observed: tuple[str, ...], name: str) -> None:
    """Every observed variable of the model is a numeric, non-constant column of ``data``.

    Raises
    ------
    AllianceParamsError
        A variable of the syntax is not a column (a typo, or a factor with no indicators).
    AllianceDataError
        A column holds text, or a single value in every non-missing row.
    """
    absent = [c for c in observed if c not in data.columns]
    if absent:
        raise AllianceParamsError(
            f"model {name!r}: the syntax uses {absent} as observed variables, but the data "
            f"have no such columns; columns present: {[str(c) for c in data.columns]}")
    for column in observed:
        values = data[column]
        numeric = pd.to_numeric(values.astype(object), errors="coerce")
        text = values[numeric.isna() & values.notna()]
        if len(text):
            raise AllianceDataError(
                f"model {name!r}: column {column!r} holds text values, e.g. "
                f"{text.iloc[0]!r} (row {text.index[0]!r}); recode it as numbers or blank")
        present = numeric.dropna().unique()
        if len(present) == 1:
            raise NotEstimableError(
                f"model {name!r}: column {column!r} is constant (every non-missing value is "
                f"{present[0]:g}); a variable without variance cannot enter the model. Drop "
                "it from the syntax")


def _failed_estimates(model: sem_estimation.Structure, missing: str,
                      error: Exception) -> sem_estimation.Estimates:
    """NaN estimates of a fit that broke down, flagged with the reason."""
    reason = f"the fit broke down ({type(error).__name__}: {error}); no estimates"
    return sem_estimation.Estimates(
        theta=np.full(model.n_free, np.nan), vcov=np.full((model.n_free,) * 2, np.nan),
        loglik=np.nan, converged=False, iterations=0,
        information="observed" if missing == "fiml" else "expected", warnings=(reason,))


def not_estimable_sem(model: sem_estimation.Structure, syntax: str, name: str, reason: str,
                      estimator: str, missing: str, level: float = 0.95) -> ModelResult:
    """A model the data cannot identify (too few cases, a constant item): every parameter
    row with NaN estimates, every fit statistic NaN, flagged ``NOT ESTIMABLE`` with the
    reason (and a :class:`ConvergenceWarning` naming the model); the run goes on."""
    reason = reason.removeprefix(f"model {name!r}: ")
    estimates = _failed_estimates(model, missing, ValueError(reason))
    keys = ("loglik", "loglik_saturated", "chi2", "p", "baseline_chi2", "cfi", "tli", "rmsea",
            "rmsea_ci_low", "rmsea_ci_high", "srmr", "aic", "bic", "n_obs", "n_dropped",
            "df")
    notes = [f"NOT ESTIMABLE: {reason}"]
    fit = {**dict.fromkeys(keys, np.nan), "npar": model.n_free, "estimator": estimator,
           "missing": missing, "test": "none", "information": "none", "iterations": 0,
           "converged": False, "warnings": notes, "note": FIT_NOTE}
    _warn(name, tuple(notes))
    return ModelResult(name=name, params=parameter_table(model, estimates, level), fit=fit,
                       spec=syntax, extra={"thresholds": pd.DataFrame()})


def _failed_measures(model: sem_estimation.Structure,
                     moments: sem_estimation.Moments) -> dict[str, object]:
    """The fit statistics of a fit that broke down: counts, and NaN for the rest."""
    keys = ("loglik", "loglik_saturated", "chi2", "p", "baseline_chi2", "cfi", "tli", "rmsea",
            "rmsea_ci_low", "rmsea_ci_high", "srmr", "aic", "bic")
    p = len(moments.columns)
    df = p * (p + 1) // 2 + (p if model.meanstructure else 0) - model.n_free
    return {**dict.fromkeys(keys, np.nan), "n_obs": moments.n_obs,
            "n_dropped": moments.n_dropped, "npar": model.n_free, "df": df,
            "baseline_df": p * (p - 1) // 2, "saturated_converged": True}


def _failed_ordinal(syntax: str, data: pd.DataFrame, name: str,
                    model: sem_estimation.Structure, error: Exception,
                    level: float) -> ModelResult:
    """A flagged DWLS result with NaN estimates, for a fit that broke down."""
    estimates = _failed_estimates(model, "listwise", error)
    n = len(data.loc[:, list(model.observed)].dropna())
    keys = ("chi2", "chi2_unscaled", "p", "cfi", "tli", "rmsea", "rmsea_ci_low",
            "rmsea_ci_high", "srmr", "loglik", "aic", "bic")
    fit = {**dict.fromkeys(keys, np.nan), "n_obs": n, "n_dropped": int(len(data) - n),
           "npar": model.n_free, "estimator": "DWLS", "missing": "listwise",
           "test": "scaled_shifted", "information": "robust.sem", "iterations": 0,
           "converged": False, "warnings": list(estimates.warnings), "note": FIT_NOTE}
    _warn(name, estimates.warnings)
    return ModelResult(name=name, params=parameter_table(model, estimates, level), fit=fit,
                       spec=syntax, extra={"thresholds": pd.DataFrame()})


@dataclass(frozen=True)
class CfaComparison:
    """The CFAs of one questionnaire at one session, compared.

    Attributes
    ----------
    results
        One :class:`ModelResult` per model of
        :data:`alliance_analysis.sem.syntax.CFA_MODELS`.
    omega
        Model-based reliability: one row per model and scale (see :func:`omega_table`).
    session
        The session whose items were analysed.
    items
        The items, in the questionnaire's order.
    """

    results: Mapping[str, ModelResult]
    omega: pd.DataFrame
    session: int
    items: tuple[str, ...]

    def fit_table(self) -> pd.DataFrame:
        """The models' fit statistics side by side (note: :data:`FIT_NOTE`)."""
        return fit_table(self.results)

    def loadings(self) -> pd.DataFrame:
        """Every loading: ``model, factor, item, estimate, se, p, std_estimate``."""
        frames = []
        for name, result in self.results.items():
            rows = result.params.loc[result.params["op"] == "=~"]
            frames.append(pd.DataFrame({
                "model": name, "factor": rows["lhs"], "item": rows["rhs"],
                "estimate": rows["estimate"], "se": rows["se"], "p": rows["p"],
                "std_estimate": rows["std_estimate"]}))
        return pd.concat(frames, ignore_index=True)

    def loadings_matrix(self) -> pd.DataFrame:
        """Standardized loadings, items by ``model: factor`` (blank where not loading)."""
        table = self.loadings()
        table["column"] = table["model"] + ": " + table["factor"]
        wide = table.pivot(index="item", columns="column", values="std_estimate")
        columns = list(dict.fromkeys(table["column"]))
        return wide.loc[list(self.items), columns].reset_index().rename_axis(columns=None)


def fit_cfa(sessions: pd.DataFrame, instrument: Instrument, session: int,
            estimator: Literal["ML", "DWLS"] = "ML",
            missing: Literal["fiml", "listwise"] = "fiml") -> CfaComparison:
    """One-factor, three-factor and bifactor CFAs of a questionnaire's items at one session.

    Parameters
    ----------
    sessions
        The canonical session table (one row per client and session).
    instrument
        The questionnaire (its items and subscales), e.g. ``get_instrument("wai")``.
    session
        Which session's ratings to analyse (one row per client).
    estimator
        ``"ML"`` treats the Likert items as continuous (FIML or listwise per ``missing``);
        ``"DWLS"`` treats them as ordinal: polychoric correlations, robust SEs and the
        scaled-shifted chi-square (lavaan's WLSMV; listwise). The fit table says which.
    missing
        Missing items under ML: ``"fiml"`` or ``"listwise"``.

    Returns
    -------
    CfaComparison

    Notes
    -----
    Each factor's variance is fixed to 1 and all its loadings are free (lavaan's
    ``std.lv = TRUE``): with a marker loading, a weak specific factor of the bifactor model
    makes the factor's scale, and the fit, unstable. The fit is the same either way for the
    one- and three-factor models.

    Models are compared by their fit indices (Hu & Bentler 1999 suggest CFI >= .95,
    RMSEA <= .06, SRMR <= .08 as rough guides, not tests) and, under ML, by AIC and BIC.
    A bifactor model usually fits at least as well as the correlated-factors model because
    it has more parameters; omega hierarchical says whether a general alliance factor
    dominates (Reise 2012).

    References
    ----------
    Hu, L., & Bentler, P. M. (1999). Cutoff criteria for fit indexes in covariance structure
    analysis. *Structural Equation Modeling*, 6, 1-55.
    Reise, S. P. (2012). The rediscovery of bifactor measurement models. *Multivariate
    Behavioral Research*, 47, 667-696.
    Hatcher, R. L., & Gillaspy, J. A. (2006). Development and validation of a revised short
    version of the Working Alliance Inventory. *Psychotherapy Research*, 16, 12-25.
    """
    data = session_items(sessions, instrument, session)
    results, omegas = {}, []
    for kind in CFA_MODELS:
        syntax = cfa_syntax(instrument, kind)
        result = (fit_sem_ordinal(syntax, data, kind, std_lv=True) if estimator == "DWLS"
                  else fit_sem(syntax, data, kind, missing=missing, std_lv=True))
        results[kind] = result
        omegas.append(omega_table(result, instrument, kind))
    return CfaComparison(results=results, omega=pd.concat(omegas, ignore_index=True),
                         session=session, items=tuple(instrument.items()))


def session_items(sessions: pd.DataFrame, instrument: Instrument, session: int
                  ) -> pd.DataFrame:
    """The instrument's items at one session, one row per client (index ``client_id``).

    Raises
    ------
    AllianceDataError
        When the items are not columns, or nobody rated that session.
    """
    items = instrument.items()
    absent = [c for c in items if c not in sessions.columns]
    if absent:
        raise AllianceDataError(f"the session table lacks the {instrument.key} item columns "
                                f"{absent}; run the clean stage with this instrument")
    rows = sessions.loc[sessions["session"] == session, ["client_id", *items]]
    if rows.empty:
        raise AllianceDataError(
            f"no client has session {session}; sessions present: "
            f"{sorted(int(s) for s in sessions['session'].dropna().unique())[:20]}. Choose "
            "another sem.cfa_session")
    return rows.set_index("client_id").astype(float)


def omega_table(result: ModelResult, instrument: Instrument, kind: str) -> pd.DataFrame:
    """McDonald's omega from a fitted CFA, for the total score and each subscale.

    Returns
    -------
    pandas.DataFrame
        ``model, estimator, scale, n_items, omega_total, omega_h, note``: ``omega_total`` is
        the share of the sum score's variance due to all common factors; ``omega_h``
        (bifactor only) is the share due to the general factor alone (omega hierarchical)
        for the total score, and to the specific factor alone (omega hierarchical subscale)
        for a subscale. Both are NaN, with a ``note``, when the fit did not converge or
        has warnings (e.g. a negative variance): omega of an improper solution means
        nothing.

    Notes
    -----
    With loadings ``L``, factor covariance ``Psi`` and residual covariance ``Theta`` of the
    items ``I`` of a scale, and ``1`` a vector of ones:
    ``omega_total = 1' L Psi L' 1 / 1' (L Psi L' + Theta) 1`` and
    ``omega_h = (sum_I l_g)^2 psi_g / 1' (L Psi L' + Theta) 1`` for factor ``g``
    (McDonald 1999; Reise 2012). Under DWLS these refer to the latent response variables
    of the ordinal items (polychoric metric).

    References
    ----------
    McDonald, R. P. (1999). *Test theory: A unified treatment*. Erlbaum.
    Reise, S. P. (2012). The rediscovery of bifactor measurement models. *Multivariate
    Behavioral Research*, 47, 667-696.
    """
    params = result.params
    scales = {"total": instrument.items()}
    if kind != "one_factor":
        scales.update({name: instrument.subscale_items(name) for name in instrument.subscales})
    if not (bool(result.fit["converged"]) and not result.fit["warnings"]):
        return pd.DataFrame([{"model": kind, "estimator": result.fit["estimator"],
                              "scale": scale, "n_items": len(items), "omega_total": np.nan,
                              "omega_h": np.nan,
                              "note": "not computed: the fit did not converge or has warnings"}
                             for scale, items in scales.items()])
    load = params.loc[params["op"] == "=~"].pivot_table(
        index="rhs", columns="lhs", values="estimate", fill_value=0.0)
    factors = list(load.columns)
    cov = params.loc[(params["op"] == "~~")]
    psi = _symmetric(cov, factors).to_numpy()
    items_all = list(load.index)
    theta = _symmetric(cov, items_all)
    rows = []
    for scale, items in scales.items():
        lam = load.loc[items].to_numpy()
        common = lam @ psi @ lam.T
        total = common.sum() + theta.loc[items, items].to_numpy().sum()
        factor = GENERAL_FACTOR if scale == "total" else scale
        omega_h = np.nan
        if kind == "bifactor":
            g = factors.index(factor)
            omega_h = lam[:, g].sum() ** 2 * psi[g, g] / total
        rows.append({"model": kind, "estimator": result.fit["estimator"], "scale": scale,
                     "n_items": len(items),
                     "omega_total": common.sum() / total, "omega_h": omega_h, "note": ""})
    return pd.DataFrame(rows)


def _symmetric(cov: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """A symmetric matrix over ``names`` from ``~~`` rows (0 where absent)."""
    out = pd.DataFrame(0.0, index=names, columns=names)
    for lhs, rhs, value in cov[["lhs", "rhs", "estimate"]].itertuples(index=False):
        if lhs in out.index and rhs in out.index:
            out.loc[lhs, rhs] = out.loc[rhs, lhs] = value
    return out
