"""Researchers' own models: lme4 formulas from the parameters file, fitted on the nested engine.

Each entry of ``models:`` (:class:`~alliance_analysis.options.ModelSpec`) is fitted here:

1. :func:`check_models` checks, before any model is fitted, that every column a formula reads
   exists in the session table or can be derived from it, that the grouping factors are
   ``client_id`` and ``therapist_id``, and that each ``where`` keeps rows; every problem is
   listed in one :class:`~alliance_analysis.errors.AllianceParamsError` naming the model.
2. :func:`model_frame` derives the columns the formula asks for (:data:`DERIVED`), applies
   ``where`` and drops rows with a missing model variable (lme4's ``na.omit``), counting them.
3. :func:`fit_model` builds the fixed-effects design with formulaic (treatment coding, ``C()``,
   ``I()``, interactions) and the random-effect columns of each bar, and fits the model with
   :func:`~alliance_analysis.multilevel.engine.fit_nested` (REML or ML, Satterthwaite df), or a
   client-level logistic regression (``family: binomial``,
   :func:`alliance_analysis.stats.regression.fit_logit`).

Derived columns, computed per client after sorting by session, from any numeric column
``<col>`` of the session table (or ``<key>_total`` for a short ``<key>``, so ``wai_within_lag1``
is ``wai_total``'s):

======================================  =====================================================
``<col>_between``                       the client's mean of ``<col>`` over all sessions where it is present
``<col>_within``                        ``<col>`` minus it (person-mean centred)
``<col>_lag1``, ``<col>_lead1``         the value at the client's previous / next attended session
``<col>_within_lag1``                   the previous session's within value (a missing value is never carried back)
``<col>_within_detrended``              ``<col>`` minus the client's own least-squares line over sessions (Falkenström et al., 2017; clients with fewer than 3 scores: missing)
``<col>_within_detrended_lag1``         its value at the previous session
``<col>_first``, ``<col>_last``         the client's first and last observed value (client-level models)
``<col>_early``                         the mean over sessions ``1..early_sessions`` (``multilevel.early_sessions``)
======================================  =====================================================

References
----------
.. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48.
.. [2] Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest package:
   Tests in linear mixed effects models. Journal of Statistical Software, 82(13), 1-26.
.. [3] Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017). Dynamic
   models of individual change in psychotherapy process research. Journal of Consulting and
   Clinical Psychology, 85(6), 537-549.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import model_matrix
from scipy import stats

from alliance_analysis.data.clients import CLIENT, THERAPIST
from alliance_analysis.errors import (AllianceDataError, AllianceParamsError, ConvergenceWarning,
                                     NotEstimableError)
from alliance_analysis.formulas import MixedFormula, RandomBar
from alliance_analysis.multilevel import derive
from alliance_analysis.multilevel.bootstrap import bootstrap_random
from alliance_analysis.multilevel.engine import fit_nested
from alliance_analysis.multilevel.r2 import model_r2
from alliance_analysis.options import ModelSpec
from alliance_analysis.results import ModelResult, is_estimated, not_estimable
from alliance_analysis.stats.regression import fit_logit

#: Suffixes of derived columns, longest first (see the module notes).
DERIVED = ("_within_detrended_lag1", "_within_detrended", "_within_lag1", "_between",
           "_within", "_lag1", "_lead1", "_first", "_last", "_early")
#: The grouping factors the engine nests: sessions in clients in therapists.
GROUPS = (CLIENT, THERAPIST)


def _base(name: str, columns: pd.Index) -> tuple[str, str] | None:
    """``(source column, suffix)`` of a derivable name, or None."""
    for suffix in DERIVED:
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            for source in (stem, f"{stem}_total"):
                if source in columns:
                    return source, suffix
    return None


def derivable(name: str, sessions: pd.DataFrame) -> bool:
    """Whether ``name`` is a column of ``sessions`` or a derived column of a numeric one."""
    if name in sessions.columns:
        return True
    found = _base(name, sessions.columns)
    return found is not None and pd.api.types.is_numeric_dtype(sessions[found[0]])


def derive_columns(sessions: pd.DataFrame, names: set[str], early_sessions: int = 5
                   ) -> pd.DataFrame:
    """The session table in session order with the derived columns among ``names`` added.

    See the module notes for each suffix. The input is not changed.
    """
    order = [CLIENT, "session"] if "session" in sessions.columns else [CLIENT]
    ordered = (sessions if _in_order(sessions, order)
               else sessions.sort_values(order, kind="stable")).reset_index(drop=True)
    added: dict[str, pd.Series] = {}
    by_client = ordered.groupby(CLIENT, sort=False)
    for name in sorted(names):
        if name in ordered.columns:
            continue
        found = _base(name, ordered.columns)
        if found is None:
            continue
        source, suffix = found
        values = ordered[source].astype("float64")
        if suffix in ("_between", "_within", "_within_lag1"):
            between = values.groupby(ordered[CLIENT], sort=False).transform("mean")
        if suffix == "_between":
            added[name] = between
        elif suffix == "_within":
            added[name] = values - between
        elif suffix == "_within_lag1":
            added[name] = (values - between).groupby(ordered[CLIENT], sort=False).shift(1)
        elif suffix == "_lag1":
            added[name] = by_client[source].shift(1).astype("float64")
        elif suffix == "_lead1":
            added[name] = by_client[source].shift(-1).astype("float64")
        elif suffix in ("_within_detrended", "_within_detrended_lag1"):
            detrended = _detrended(ordered, source)
            added[name] = (detrended if suffix == "_within_detrended" else
                           detrended.groupby(ordered[CLIENT], sort=False).shift(1))
        elif suffix in ("_first", "_last"):
            observed = values.groupby(ordered[CLIENT], sort=False)
            added[name] = observed.transform("first" if suffix == "_first" else "last")
        else:  # _early
            early = values.where(ordered["session"] <= early_sessions)
            added[name] = early.groupby(ordered[CLIENT], sort=False).transform("mean")
    return ordered.assign(**added)


def _in_order(sessions: pd.DataFrame, order: list[str]) -> bool:
    """Whether the rows are already in the order a stable sort by ``order`` (the client, then
    the session number) gives, so that the sort can be skipped (the usual case: a processed
    session table is written in that order). False when unsure (missing values, a session
    column that is not numeric): then the table is sorted."""
    codes, clients = pd.factorize(sessions[CLIENT])
    # codes in order of first appearance (-1 a missing ID, sorted last): increasing from 0
    # when each client's rows are one run
    if (codes.size and codes[0] < 0) or not (np.all(np.diff(codes) >= 0)
                                             and pd.Index(clients).is_monotonic_increasing):
        return False
    if len(order) == 1:
        return True
    session = sessions[order[1]]
    if not (isinstance(session.dtype, np.dtype) and session.dtype.kind in "iuf"):
        return False
    values = session.to_numpy()
    return bool(np.all((codes[1:] != codes[:-1]) | (values[1:] >= values[:-1])))


def _detrended(ordered: pd.DataFrame, source: str) -> pd.Series:
    """``source`` minus the client's own least-squares line over sessions."""
    frame = ordered[[CLIENT, "session"]].assign(_score=ordered[source].astype("float64"))
    frame = frame.rename(columns={"_score": "_detrend_total"})
    return derive.detrend(frame, "_detrend")["_detrend_within"]


@dataclass(frozen=True)
class ModelFrame:
    """The rows a model is fitted on, and how many rows were dropped and why.

    Attributes
    ----------
    data
        The rows kept (after ``where`` and the removal of rows with a missing variable).
    n_rows, n_where, n_missing
        Rows of the session table, rows removed by ``where``, rows removed for a missing
        model variable.
    """

    data: pd.DataFrame
    n_rows: int
    n_where: int
    n_missing: int


def model_frame(sessions: pd.DataFrame, name: str, spec: ModelSpec,
                early_sessions: int = 5) -> ModelFrame:
    """Derived columns, ``where``, and complete cases of one model (see the module notes)."""
    parsed = spec.parsed()
    needed = parsed.variables()
    frame = derive_columns(sessions, needed, early_sessions)
    n_rows = len(frame)
    if spec.where:
        try:
            kept = derive.rows_where(frame, spec.where)
        except Exception as exc:  # pandas raises many types for a bad expression
            raise AllianceParamsError(
                f"models.{name}.where: {spec.where!r} cannot be evaluated on the session "
                f"table ({type(exc).__name__}: {exc}). Write a pandas query over its columns, "
                "e.g. 'session <= 20'") from None
        if not isinstance(kept, pd.DataFrame):
            raise AllianceParamsError(f"models.{name}.where: {spec.where!r} is not a row "
                                      "condition, e.g. 'session <= 20'")
    else:
        kept = frame
    n_where = n_rows - len(kept)
    if spec.level == "client":
        kept = _client_rows(kept, name, needed)
    complete = kept.dropna(subset=sorted(needed & set(kept.columns)))
    return ModelFrame(complete.reset_index(drop=True), n_rows, n_where,
                      len(kept) - len(complete))


def _client_rows(frame: pd.DataFrame, name: str, needed: set[str]) -> pd.DataFrame:
    """One row per client, refusing a variable that differs between a client's sessions."""
    columns = sorted(needed - {CLIENT})
    varying = [c for c in columns
               if (frame.groupby(CLIENT, sort=False)[c].nunique(dropna=False) > 1).any()]
    if varying:
        raise AllianceParamsError(
            f"models.{name}: level: client needs one value per client, but {varying} differ "
            "between a client's sessions; use a client-level version such as "
            f"{varying[0]}_first, {varying[0]}_early or {varying[0]}_between")
    return frame.groupby(CLIENT, sort=False, as_index=False).first()


def check_models(sessions: pd.DataFrame, models: Mapping[str, ModelSpec],
                 early_sessions: int = 5) -> None:
    """Every problem of every model that the data reveal, before anything is fitted.

    Raises
    ------
    AllianceParamsError
        One message listing, per model: columns neither in the session table nor derivable
        (with the columns there are), grouping factors other than ``client_id`` and
        ``therapist_id``, a ``where`` that fails or removes every row, and a model left with
        no complete rows.
    """
    problems = []
    for name, spec in models.items():
        parsed = spec.parsed()
        unknown = sorted(v for v in parsed.variables() if not derivable(v, sessions))
        if unknown:
            problems.append(
                f"models.{name}: {unknown} {'is' if len(unknown) == 1 else 'are'} not a column "
                "of the session table and cannot be derived (derived names end in "
                f"{', '.join(DERIVED)}). Columns: {', '.join(map(str, sessions.columns))}")
            continue
        bad_groups = sorted(set(parsed.groups()) - set(GROUPS))
        if bad_groups:
            problems.append(
                f"models.{name}: grouping factor(s) {bad_groups}: the engine fits sessions "
                "nested in clients nested in therapists only, so random effects may be "
                f"grouped by {CLIENT} and {THERAPIST} (crossed or other groupings are not "
                "supported)")
            continue
        try:
            frame = model_frame(sessions, name, spec, early_sessions)
        except AllianceParamsError as exc:
            problems.append(str(exc))
            continue
        if frame.n_where == frame.n_rows:
            problems.append(f"models.{name}.where: {spec.where!r} removes every row")
        elif frame.data.empty:
            problems.append(f"models.{name}: no row has every model variable "
                            f"({', '.join(sorted(parsed.variables()))}) present")
    if problems:
        raise AllianceParamsError(f"{len(problems)} problem(s) in models:\n  - "
                                  + "\n  - ".join(problems))


def _matrix(formula: str, data: pd.DataFrame, name: str) -> pd.DataFrame:
    try:
        return model_matrix(formula, data, na_action="raise")
    except Exception as exc:  # formulaic raises its own errors and the evaluated code's
        raise AllianceParamsError(f"models.{name}: the terms '{formula}' cannot be built "
                                  f"from the data ({type(exc).__name__}: {exc})") from None


def _slope_columns(slopes: tuple[str, ...], data: pd.DataFrame, name: str) -> pd.DataFrame:
    """The random-slope columns of one bar: numeric columns named alone are taken as they are
    (what formulaic builds for them), other terms are built by formulaic."""
    if all(term in data.columns and isinstance(data[term].dtype, np.dtype)
           and data[term].dtype.kind in "iuf" for term in slopes):
        return data[list(slopes)]
    return _matrix("0 + " + " + ".join(slopes), data, name)


@dataclass(frozen=True)
class _Block:
    """One grouping factor's random effects: columns (safe names), labels, correlation."""

    group: str
    intercept: bool
    columns: list[str]
    labels: list[str]
    correlated: bool


def _random_blocks(parsed: MixedFormula, data: pd.DataFrame, name: str
                   ) -> tuple[dict[str, _Block], pd.DataFrame]:
    """Merge the bars of each group into one block and build their slope columns."""
    blocks: dict[str, _Block] = {}
    extra: dict[str, pd.Series] = {}
    by_group: dict[str, list[RandomBar]] = {}
    for bar in parsed.random:
        by_group.setdefault(bar.group, []).append(bar)
    for group, bars in by_group.items():
        if len(bars) > 1 and any(len(b.slopes) + b.intercept > 1 and b.correlated
                                 for b in bars):
            raise AllianceParamsError(
                f"models.{name}: the random part of {group} is split into several terms of "
                f"which one has correlated effects ({', '.join(b.text for b in bars)}): the "
                "engine fits one block per grouping factor, all correlated ('|') or all "
                "independent ('||' or single-term bars)")
        intercept = any(b.intercept for b in bars)
        if sum(b.intercept for b in bars) > 1:
            raise AllianceParamsError(f"models.{name}: two random intercepts for {group}")
        columns, labels = [], []
        for bar in bars:
            if not bar.slopes:
                continue
            slopes = _slope_columns(bar.slopes, data, name)
            for label in slopes.columns:
                safe = f"_r{len(extra)}"
                extra[safe] = slopes[label].astype("float64")
                columns.append(safe)
                labels.append(str(label))
        correlated = len(bars) == 1 and bars[0].correlated
        blocks[group] = _Block(group, intercept, columns, labels, correlated)
    return blocks, pd.DataFrame(extra, index=data.index)


def fit_model(sessions: pd.DataFrame, name: str, spec: ModelSpec, *, early_sessions: int = 5,
              ci_level: float = 0.95, max_iter: int = 1000, seed: int = 1) -> ModelResult:
    """Fit one researcher-stated model (an entry of ``models:``).

    Parameters
    ----------
    sessions
        The processed session table.
    name
        The model's name (tables ``model_<name>_*``, keys ``models.<name>.*``).
    spec
        The model: formula, REML or ML, ``where``, family and level.
    early_sessions
        The window of ``<col>_early`` columns.
    ci_level
        Confidence level of the intervals.
    max_iter
        Largest number of deviance evaluations per optimizer run.
    seed
        Root seed of the parametric bootstrap (``bootstrap_samples`` of the spec).

    Returns
    -------
    ModelResult
        For a linear mixed model, that of :func:`~alliance_analysis.multilevel.engine.fit_nested`
        with the researcher's term names (formulaic's: ``arm[T.PDT]``, ``session:arm[T.PDT]``,
        ``I(session - 1)``), ``df`` and ``t`` from Satterthwaite's approximation, and
        ``fit`` adding ``formula``, ``reml``, ``where`` and the rows removed
        (``n_removed_where``, ``n_removed_missing``). With ``bootstrap_samples``,
        ``extra["random_intervals"]``: percentile intervals of the random part and the ICCs
        (:func:`alliance_analysis.multilevel.bootstrap.bootstrap_random`, its refits where
        ``spec.dask`` says). For ``family: binomial`` that of
        :func:`~alliance_analysis.stats.regression.fit_logit` (log odds, odds ratios).
        ``spec`` is the formula as given. A linear mixed model carries its marginal and
        conditional R2 in ``extra["r2"]`` (:func:`alliance_analysis.multilevel.r2.model_r2`).

    Raises
    ------
    AllianceParamsError
        A problem :func:`check_models` reports, or terms that cannot be built.
    AllianceDataError
        A data problem the engine finds (a client seen by several therapists, collinear
        fixed effects, too few clients).
    """
    prepared = prepare_model(sessions, name, spec, early_sessions)
    table, safe = prepared.table, prepared.fixed
    if spec.family == "binomial":
        result = fit_logit(name, table, prepared.outcome, list(safe.values()), ci_level)
        return _renamed(result, prepared.names, spec, prepared.removed)
    result = fit_nested(table, prepared.outcome, list(safe.values()), **prepared.engine_args(),
                        reml=spec.reml, ci_level=ci_level, max_iter=max_iter, name=name,
                        inference=spec.inference)
    renamed = _renamed(result, prepared.names, spec, prepared.removed, prepared.levels)
    # R2 needs the rows and design columns the model was fitted on: computed here, once
    renamed = ModelResult(renamed.name, renamed.params, renamed.fit, renamed.spec,
                          {**renamed.extra, "r2": model_r2(prepared, renamed)})
    if not spec.bootstrap_samples:
        return renamed
    intervals = bootstrap_random(prepared, renamed, reml=spec.reml,
                                 samples=spec.bootstrap_samples, seed=seed, ci_level=ci_level,
                                 max_iter=max_iter, dask=spec.dask)
    groups = prepared.levels
    intervals = intervals.assign(group=[("Residual" if level == "residual" else groups[level])
                                        for level in intervals["level"]])
    return ModelResult(renamed.name, renamed.params, renamed.fit, renamed.spec,
                       {**renamed.extra, "random_intervals": intervals})


@dataclass(frozen=True)
class PreparedModel:
    """A model's rows and columns as the fitter takes them (safe column names).

    Attributes
    ----------
    table
        Outcome, fixed-effect columns ``_f<i>``, random-slope columns ``_r<i>`` and groups.
    outcome
        The outcome column.
    fixed
        ``{researcher's term: safe column}`` of the fixed effects (no intercept).
    intercept
        Whether the fixed part has an intercept.
    blocks
        The random effects of each grouping factor.
    lower, upper
        The lower grouping factor (clients, or therapists alone) and the upper one or None.
    removed
        Rows removed by ``where`` and for missing values.
    """

    table: pd.DataFrame
    outcome: str
    fixed: dict[str, str]
    intercept: bool
    blocks: dict[str, _Block]
    lower: str | None
    upper: str | None
    removed: dict[str, int]

    @property
    def names(self) -> dict[str, str]:
        """Safe column -> the researcher's term, for the result tables."""
        names = {v: k for k, v in self.fixed.items()}
        for block in self.blocks.values():
            names.update(dict(zip(block.columns, block.labels, strict=True)))
        return names

    @property
    def levels(self) -> dict[str, str]:
        """The engine's level names -> the grouping columns."""
        return {"client": self.lower, **({"therapist": self.upper} if self.upper else {})}

    def engine_args(self) -> dict[str, object]:
        """The random-part and intercept arguments of :func:`fit_nested`."""
        low = self.blocks[self.lower]
        high = self.blocks.get(self.upper) if self.upper else None
        return {"random": (["1"] if low.intercept else []) + low.columns,
                "client": self.lower, "therapist": self.upper,
                "therapist_random": ((["1"] if high.intercept else []) + high.columns)
                if high else ["1"],
                "correlated": low.correlated,
                "therapist_correlated": high.correlated if high else True,
                "intercept": self.intercept}


def prepare_model(sessions: pd.DataFrame, name: str, spec: ModelSpec,
                  early_sessions: int = 5) -> PreparedModel:
    """The rows and design columns of one model (see :class:`PreparedModel`)."""
    parsed = spec.parsed()
    frame = model_frame(sessions, name, spec, early_sessions)
    data = frame.data
    if data.empty:
        raise AllianceParamsError(f"models.{name}: no rows left to fit (where and missing "
                                  "values removed every row)")
    fixed = _matrix(parsed.fixed, data, name)
    intercept = "Intercept" in fixed.columns
    labels = [str(c) for c in fixed.columns if c != "Intercept"]
    safe = {label: f"_f{i}" for i, label in enumerate(labels)}
    table = pd.DataFrame({safe[label]: fixed[label].to_numpy(dtype=float) for label in labels},
                         index=data.index)
    table[parsed.outcome] = pd.to_numeric(data[parsed.outcome], errors="coerce")
    removed = {"n_removed_where": frame.n_where, "n_removed_missing": frame.n_missing}
    if spec.family == "binomial":
        if not intercept:
            raise AllianceParamsError(f"models.{name}: a logistic model keeps its intercept; "
                                      "remove '0 +' or '- 1'")
        table[CLIENT] = data[CLIENT].to_numpy()
        return PreparedModel(table, parsed.outcome, safe, True, {}, None, None, removed)
    blocks, slopes = _random_blocks(parsed, data, name)
    table = pd.concat([table, slopes], axis=1)
    for group in blocks:
        table[group] = _as_text(data[group])
    lower = CLIENT if CLIENT in blocks else THERAPIST
    upper = THERAPIST if lower == CLIENT and THERAPIST in blocks else None
    return PreparedModel(table, parsed.outcome, safe, intercept, blocks, lower, upper, removed)


def _as_text(ids: pd.Series) -> pd.Categorical:
    """Group IDs as text labels (``str`` of each value, as ``astype(str)``), converting each
    distinct ID once rather than every row."""
    codes, uniques = pd.factorize(ids, use_na_sentinel=False)
    labels, text = pd.factorize(pd.Index(uniques).astype(str))
    return pd.Categorical.from_codes(labels[codes], categories=text)


def _renamed(result: ModelResult, names: Mapping[str, str], spec: ModelSpec,
             removed: Mapping[str, int], groups: Mapping[str, str] | None = None
             ) -> ModelResult:
    """The result with the researcher's term names and the formula as its spec."""
    def rename(series: pd.Series) -> pd.Series:
        return series.map(lambda v: names.get(v, v) if isinstance(v, str) else v)

    params = result.params.assign(term=rename(result.params["term"]))
    extra = dict(result.extra)
    if "variance_components" in extra:
        vc = extra["variance_components"]
        extra["variance_components"] = vc.assign(term=rename(vc["term"]),
                                                 term2=rename(vc["term2"]))
    if "random_effects" in extra:
        re = extra["random_effects"]
        extra["random_effects"] = re.assign(term=rename(re["term"]))
    if "variance_parameters_cov" in extra:
        cov = extra["variance_parameters_cov"]
        relabel = {k: ":".join(names.get(p, p) for p in k.split(":")) for k in cov.index}
        extra["variance_parameters_cov"] = cov.rename(index=relabel, columns=relabel)
    fit = {**result.fit, "formula": spec.formula, "reml": spec.reml if spec.family ==
           "gaussian" else False, "where": spec.where or "", "family": spec.family,
           "group_columns": dict(groups or {}), **removed}
    fitter = ("logistic regression" if spec.family == "binomial" else
              f"nested engine, {'REML' if spec.reml else 'ML'}")
    spec_text = f"{spec.formula}  [{fitter}]"
    if spec.where:
        spec_text += f"; where {spec.where}"
    return ModelResult(result.name, params, fit, spec_text, extra)



#: Columns of :func:`fixed_table`, in order.
FIXED_COLUMNS = ("term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high")
#: Columns of :func:`random_table`, in order.
RANDOM_COLUMNS = ("group", "term", "term2", "variance", "sd_or_corr")


def fixed_table(result: ModelResult) -> pd.DataFrame:
    """The fixed effects as ``model_<name>_fixed.csv`` holds them (:data:`FIXED_COLUMNS`).

    A logistic model (no df) reports ``df`` as infinite and ``t`` as its Wald z.
    """
    params = result.params
    t = params["t"] if "t" in params else params["estimate"] / params["se"]
    df = params["df"] if "df" in params else pd.Series(np.inf, index=params.index)
    return pd.DataFrame({"term": params["term"], "estimate": params["estimate"],
                         "se": params["se"], "df": df, "t": t, "p": params["p"],
                         "ci_low": params["ci_low"], "ci_high": params["ci_high"]})


def random_table(result: ModelResult) -> pd.DataFrame:
    """The random part as ``model_<name>_random.csv`` holds it (:data:`RANDOM_COLUMNS`).

    One row per variance (``sd_or_corr`` its SD), per covariance (``term2`` set, ``variance``
    the covariance and ``sd_or_corr`` the correlation) and the ``Residual`` row, in lme4's
    ``as.data.frame(VarCorr(fit))`` order; groups named by their columns. Empty for a model
    without random effects.
    """
    vc = result.extra.get("variance_components")
    if vc is None:
        return pd.DataFrame(columns=list(RANDOM_COLUMNS))
    groups = result.fit.get("group_columns", {})
    return pd.DataFrame({
        "group": [("Residual" if level == "residual" else groups.get(level, level))
                  for level in vc["level"]],
        "term": vc["term"], "term2": vc["term2"], "variance": vc["vcov"],
        "sd_or_corr": vc["sdcor"]})


def likelihood_ratio_test(sessions: pd.DataFrame, first: tuple[str, ModelSpec, ModelResult],
                          second: tuple[str, ModelSpec, ModelResult], *,
                          early_sessions: int = 5, max_iter: int = 1000) -> pd.DataFrame:
    """Compare two nested linear mixed models by a likelihood-ratio test, as lme4's ``anova()``.

    Parameters
    ----------
    sessions
        The processed session table.
    first, second
        ``(name, spec, fitted result)`` of each model; the one with fewer parameters is
        the null model whatever the order.
    early_sessions, max_iter
        As for :func:`fit_model` (used when the models are refitted by ML).

    Returns
    -------
    pandas.DataFrame
        Two rows, smaller model first: ``model, formula, method, npar, aic, bic, loglik,
        deviance, chisq, df, p`` (the test on the second row), and ``refit`` saying whether
        the models were refitted by ML.

    Notes
    -----
    REML likelihoods of models with different fixed effects are not comparable (their REML
    criteria condition on different fixed-effect spaces), so such models are refitted by ML
    first, as ``anova()`` does (lme4 says "refitting model(s) with ML (instead of REML)").
    Models with the same fixed part that were both fitted by REML are compared by REML (a test
    of the random part). ``chisq = deviance_small - deviance_large`` on ``npar_large -
    npar_small`` df; a variance tested at its boundary of 0 makes this p-value conservative
    (Self & Liang, 1987). Checked against ``anova(small, large)`` of lme4 1.1-31.
    """
    models = sorted([first, second], key=lambda m: m[2].fit["n_params"])
    same_fixed = models[0][1].parsed().fixed == models[1][1].parsed().fixed
    refit = any(m[1].reml for m in models) and not (
        same_fixed and all(m[1].reml for m in models))
    rows = []
    for name, spec, result in models:
        if refit and spec.reml:
            result = fit_model(sessions, name, spec.model_copy(update={"reml": False}),
                               early_sessions=early_sessions, max_iter=max_iter)
        loglik = float(result.fit["loglik"])
        rows.append({"model": name, "formula": spec.formula,
                     "method": result.fit.get("method", ""),
                     "npar": int(result.fit["n_params"]), "aic": float(result.fit["aic"]),
                     "bic": float(result.fit["bic"]), "loglik": loglik,
                     "deviance": -2 * loglik, "refit": bool(refit and spec.reml),
                     "converged": bool(result.fit["converged"])})
    table = pd.DataFrame(rows)
    chisq = table["deviance"].iloc[0] - table["deviance"].iloc[1]
    df = int(table["npar"].iloc[1] - table["npar"].iloc[0])
    table["chisq"] = [np.nan, max(chisq, 0.0)]
    table["df"] = [np.nan, df]
    table["p"] = [np.nan, float(stats.chi2.sf(max(chisq, 0.0), df)) if df > 0 else np.nan]
    return table


@dataclass(frozen=True)
class SpecifiedModels:
    """The researcher's models of a run (``models:``), fitted in the order given.

    Attributes
    ----------
    results
        ``{name: ModelResult}`` in the parameters' order.
    specs
        ``{name: ModelSpec}``, the specifications as parsed when the parameters loaded.
    comparisons
        One :func:`likelihood_ratio_test` table per pair of ``comparisons:``, stacked, with a
        ``comparison`` column (``<first> vs <second>``); empty when none were asked for.
    """

    results: dict[str, ModelResult]
    specs: dict[str, ModelSpec]
    comparisons: pd.DataFrame


def fit_models(sessions: pd.DataFrame, models: Mapping[str, ModelSpec],
               comparisons: tuple[tuple[str, str], ...] = (), *, early_sessions: int = 5,
               ci_level: float = 0.95, max_iter: int = 1000) -> SpecifiedModels:
    """Check every model against the data, then fit them in order and run the comparisons.

    A model the engine cannot fit because of how the data are organised (e.g. a client seen
    by several therapists) raises :class:`~alliance_analysis.errors.AllianceDataError`
    naming the model. A model the data cannot identify (one therapist, one client, an
    outcome without variance, collinear terms) comes back flagged as not estimable
    (:func:`~alliance_analysis.results.not_estimable`); a fit that does not converge or is
    singular comes back flagged; either way the run goes on. Comparisons involving a model
    that was not estimated are left out, with a warning.
    """
    check_models(sessions, models, early_sessions)
    results: dict[str, ModelResult] = {}
    for name, spec in models.items():
        try:
            results[name] = fit_model(sessions, name, spec, early_sessions=early_sessions,
                                      ci_level=ci_level, max_iter=max_iter)
        except (NotEstimableError, np.linalg.LinAlgError) as exc:
            reason = str(exc).removeprefix("fit_nested: ")
            results[name] = not_estimable(name, reason, spec.formula, n_obs=len(sessions))
        except AllianceDataError as exc:
            raise AllianceDataError(f"models.{name}: {exc}") from None
    skipped = [(a, b) for a, b in comparisons
               if not (is_estimated(results[a]) and is_estimated(results[b]))]
    for a, b in skipped:
        warnings.warn(f"comparison {a} vs {b} left out: a model was not estimable",
                      ConvergenceWarning, stacklevel=2)
    comparisons = tuple(pair for pair in comparisons if pair not in skipped)
    tables = [likelihood_ratio_test(sessions, (a, models[a], results[a]),
                                    (b, models[b], results[b]), early_sessions=early_sessions,
                                    max_iter=max_iter).assign(comparison=f"{a} vs {b}")
              for a, b in comparisons]
    stacked = (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame())
    if len(stacked):
        stacked = stacked[["comparison", *[c for c in stacked.columns if c != "comparison"]]]
    return SpecifiedModels(results, dict(models), stacked)
