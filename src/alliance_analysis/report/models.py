"""Writing and showing the researcher's own models (``models:`` of the parameters file).

For a model named ``<name>``:

* ``tables/model_<name>_fixed.csv``: ``term, estimate, se, df, t, p, ci_low, ci_high``
  (Satterthwaite df and t tests, as lmerTest);
* ``tables/model_<name>_random.csv``: ``group, term, term2, variance, sd_or_corr`` (a
  covariance row has ``term2`` set, its covariance under ``variance`` and its correlation under
  ``sd_or_corr``; a ``Residual`` row last), as lme4's ``as.data.frame(VarCorr(fit))``;
* ``results.json``: ``models.<name>.loglik``, ``.aic``, ``.bic``, ``.n_obs``, ``.n_clients``,
  ``.n_therapists``, ``.converged``, ``.singular``, ``.reml``, and per fixed effect
  ``models.<name>.<term>.<estimate|se|df|p|ci_low|ci_high>``;
* ``tables/model_comparisons.csv``: the likelihood-ratio tests of ``comparisons:``;
* ``tables/models_fit.csv``: one row per model; ``figures/model_coefficients_<name>``;
* ``tables/model_<name>_apa.csv``: the model as a paper prints it (:func:`apa_table`), and
  ``results.json`` keys ``models.<name>.r2_marginal`` and ``.r2_conditional``;
* ``tables/models_<outcome>_apa.csv``: models sharing an outcome side by side
  (:func:`side_by_side`), one block of columns per model.

The APA model table (``model_<name>_apa.csv``) has the columns :data:`APA_COLUMNS`:

=============  ==============================================================================
``part``       ``fixed``, ``random`` or ``fit``
``term``       the readable label of the term (``labels:`` of the parameters, see
               :func:`label_term`), of the random effect (``Client: Session``), or of the
               fit statistic (``Sessions``, ``Marginal R²``, ``AIC``)
``statistic``  what ``estimate`` holds: ``b`` (a fixed effect), ``variance`` and ``SD`` (of a
               random effect or the residual), ``r`` (correlation of two random effects),
               ``ICC``, ``N``, ``R2``, ``AIC``, ``BIC``, ``logLik``
``estimate``   the value (counts as integers)
``se``         standard error (fixed effects, variances)
``ci_low``,    confidence interval: t with Satterthwaite df for fixed effects (Wald z with
``ci_high``    ``inference: wald`` and for logistic models); Wald on the log scale for
               variances, their square roots for SDs
``df``         Satterthwaite df of the t test of a fixed effect (empty for z tests)
``p``          two-sided p of a fixed effect
=============  ==============================================================================

Rows: the fixed effects in the formula's order; the random part in lme4's ``VarCorr`` order
(each grouping factor's variances with their SDs, then correlations), the residual, and one
ICC per grouping factor with a random intercept; then the numbers of sessions and of each
grouping factor's units, marginal and conditional R2 (Nakagawa, Johnson & Schielzeth, 2017;
:mod:`alliance_analysis.multilevel.r2`), AIC, BIC and the log-likelihood.

REML fits report the REML log-likelihood, AIC and BIC, as lme4 does: compare models with
different fixed effects by ``comparisons:`` (refitted by ML) or by fitting them with
``reml: false``.

References
----------
.. [1] Nakagawa, S., Johnson, P. C. D., & Schielzeth, H. (2017). The coefficient of
   determination R2 and intra-class correlation coefficient from generalized linear
   mixed-effects models revisited and expanded. Journal of the Royal Society Interface,
   14(134), 20170213.
.. [2] Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest package:
   Tests in linear mixed effects models. Journal of Statistical Software, 82(13), 1-26.
.. [3] American Psychological Association (2020). *Publication Manual of the American
   Psychological Association* (7th ed.), section 7.21 (tables of regression results).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from IPython.display import Markdown

from alliance_analysis.multilevel.r2 import UNDEFINED, NakagawaR2
from alliance_analysis.multilevel.specified import (SpecifiedModels, fixed_table,
                                                    random_table)
from alliance_analysis.options import ModelSpec
from alliance_analysis.report import plots
from alliance_analysis.report.runfolder import RunFolder
from alliance_analysis.report.tables import format_apa, format_p
from alliance_analysis.results import ModelResult, is_estimated

if TYPE_CHECKING:
    from alliance_analysis.params import RunParams

#: Fit statistics recorded for each model under ``models.<name>.``.
RECORDED_FIT = ("loglik", "aic", "bic", "n_obs", "n_clients", "n_therapists", "converged",
                "singular", "reml")
#: Statistics of each fixed effect recorded under ``models.<name>.<term>.``.
RECORDED_TERM = ("estimate", "se", "df", "p", "ci_low", "ci_high")
#: Columns of :func:`apa_table`, in order (see the module notes).
APA_COLUMNS = ("part", "term", "statistic", "estimate", "se", "ci_low", "ci_high", "df", "p")
#: Columns of each model's block in :func:`side_by_side`: ``<model>_<column>``.
BLOCK_COLUMNS = ("estimate", "ci_low", "ci_high", "p")
#: Labels used unless ``labels:`` says otherwise.
DEFAULT_LABELS = {"(Intercept)": "Intercept", "Intercept": "Intercept", "client_id": "Client",
                  "therapist_id": "Therapist"}
#: A level of a treatment-coded factor as formulaic names it: ``C(arm)[T.PDT]``, ``arm[T.PDT]``.
LEVEL = re.compile(r"(?:C\((?P<factor>[^()]+)\)|(?P<bare>[A-Za-z_][\w.]*))"
                   r"\[T\.(?P<level>[^\]]+)\]")
#: Plural names of the units of the grouping columns, for the N rows.
UNITS = {"client_id": "Clients", "therapist_id": "Therapists"}


def label_term(term: str, labels: Mapping[str, str] | None = None) -> str:
    """The readable label of a term, a random effect's name or a grouping column.

    ``labels`` (the ``labels:`` of the parameters) first, then :data:`DEFAULT_LABELS`
    (``(Intercept)`` -> ``Intercept``); an interaction whose whole name is not listed is
    labelled part by part and joined with ``×`` (``I(session - 1):wai_between`` ->
    ``Session × Alliance (between)``); a level of a factor in treatment coding is named as
    sjPlot names it (``C(arm)[T.PDT]`` -> ``arm [PDT]``, ``arm`` labelled in turn); anything
    else keeps its name.
    """
    known = {**DEFAULT_LABELS, **(labels or {})}
    if term in known:
        return known[term]
    if ":" in term:
        return " × ".join(label_term(part, labels) for part in term.split(":"))
    level = LEVEL.fullmatch(term)
    if level:
        factor = level["factor"] or level["bare"]
        return f"{label_term(factor, labels)} [{level['level']}]"
    return term


def relabelled(result: ModelResult, labels: Mapping[str, str] | None) -> ModelResult:
    """A copy of ``result`` whose ``params`` name the terms by :func:`label_term` (for the
    coefficient figures); the result itself is not changed."""
    params = result.params.assign(term=result.params["term"].map(
        lambda t: label_term(str(t), labels)))
    return ModelResult(result.name, params, result.fit, result.spec, result.extra)


def headline(name: str, result: ModelResult, r2: NakagawaR2 = UNDEFINED) -> dict[str, Any]:
    """The model's numbers by their ``results.json`` keys (see the module notes)."""
    fit = result.fit
    values: dict[str, Any] = {f"models.{name}.{key}": fit.get(key) for key in RECORDED_FIT}
    values[f"models.{name}.singular"] = bool(fit.get("singular", False))
    values[f"models.{name}.r2_marginal"] = r2.r2_marginal
    values[f"models.{name}.r2_conditional"] = r2.r2_conditional
    for row in fixed_table(result).itertuples(index=False):
        for stat in RECORDED_TERM:
            values[f"models.{name}.{row.term}.{stat}"] = getattr(row, stat)
    return values


def _row(part: str, term: str, statistic: str, estimate: Any, se: float = np.nan,
         ci_low: float = np.nan, ci_high: float = np.nan, df: float = np.nan,
         p: float = np.nan) -> dict[str, Any]:
    return {"part": part, "term": term, "statistic": statistic, "estimate": estimate, "se": se,
            "ci_low": ci_low, "ci_high": ci_high, "df": df, "p": p}


def _random_rows(result: ModelResult, labels: Mapping[str, str] | None) -> list[dict]:
    """Variances with SDs, correlations, the residual and one ICC per intercept level."""
    vc = result.extra.get("variance_components")
    if vc is None or not len(vc):
        return []
    groups = result.fit.get("group_columns", {})
    rows = []
    for row in vc.itertuples(index=False):
        group = label_term(groups.get(row.level, row.level), labels)
        if row.level == "residual":
            name = "Residual"
        elif isinstance(row.term2, str):
            name = (f"{group}: {label_term(row.term, labels)} with "
                    f"{label_term(row.term2, labels)}")
        else:
            name = f"{group}: {label_term(row.term, labels)}"
        if isinstance(row.term2, str):
            rows.append(_row("random", name, "r", float(row.sdcor)))
            continue
        rows.append(_row("random", name, "variance", float(row.vcov), float(row.se),
                         float(row.ci_low), float(row.ci_high)))
        rows.append(_row("random", name, "SD", float(np.sqrt(row.vcov)), np.nan,
                         float(np.sqrt(row.ci_low)), float(np.sqrt(row.ci_high))))
    intercepts = vc[(vc["term"] == "(Intercept)") & vc["term2"].isna()]
    total = float(intercepts["vcov"].sum() + vc.loc[vc["level"] == "residual", "vcov"].sum())
    for row in intercepts.itertuples(index=False):
        rows.append(_row("random", label_term(groups.get(row.level, row.level), labels), "ICC",
                         float(row.vcov) / total))
    return rows


def _fit_rows(result: ModelResult, spec: ModelSpec, r2: NakagawaR2) -> list[dict]:
    """Numbers of observations and units, R2 (linear models), AIC, BIC, log-likelihood."""
    fit = result.fit
    level = spec.level if spec.family == "gaussian" else "client"
    rows = [_row("fit", "Sessions" if level == "session" else "Clients", "N",
                 int(fit.get("n_obs") or 0))]
    groups = fit.get("group_columns") or {}
    if spec.family == "binomial" and fit.get("n_therapists"):
        rows.append(_row("fit", "Therapists", "N", int(fit["n_therapists"])))
    for level_name, column in groups.items():
        count = fit.get(f"n_{level_name}s")
        if count is not None and not (level == "client" and column == "client_id"):
            rows.append(_row("fit", UNITS.get(column, f"Units of {column}"), "N", int(count)))
    if spec.family == "gaussian":
        rows += [_row("fit", "Marginal R²", "R2", r2.r2_marginal),
                 _row("fit", "Conditional R²", "R2", r2.r2_conditional)]
    for term, statistic, key in (("AIC", "AIC", "aic"), ("BIC", "BIC", "bic"),
                                 ("Log-likelihood", "logLik", "loglik")):
        value = fit.get(key)
        rows.append(_row("fit", term, statistic, np.nan if value is None else float(value)))
    return rows


def apa_table(result: ModelResult, spec: ModelSpec, labels: Mapping[str, str] | None = None,
              r2: NakagawaR2 = UNDEFINED) -> pd.DataFrame:
    """One model as a paper's table prints it: fixed effects, random part, N, R2, fit.

    Parameters
    ----------
    result
        The fitted model (:func:`~alliance_analysis.multilevel.specified.fit_model`).
    spec
        Its specification (family, level, inference).
    labels
        Readable names of terms and grouping columns (``labels:`` of the parameters;
        :func:`label_term`).
    r2
        Its R2 (:func:`~alliance_analysis.multilevel.r2.model_r2`); NaN when not given.

    Returns
    -------
    pandas.DataFrame
        The columns :data:`APA_COLUMNS` and the rows of the module notes, as sjPlot's
        ``tab_model()`` and papaja's ``apa_print()`` lay out a mixed model. ``estimate`` holds
        integers for the counts (object dtype) so that they print as counts. A model that was
        not estimated has only its fit rows.
    """
    fixed = fixed_table(result)
    z_test = spec.family == "binomial" or spec.inference == "wald"
    rows = [_row("fixed", label_term(str(r.term), labels), "b", float(r.estimate), float(r.se),
                 float(r.ci_low), float(r.ci_high),
                 np.nan if z_test or not np.isfinite(r.df) else float(r.df), float(r.p))
            for r in fixed.itertuples(index=False)]
    rows += _random_rows(result, labels) + _fit_rows(result, spec, r2)
    table = pd.DataFrame(rows, columns=list(APA_COLUMNS))
    table["estimate"] = pd.Series([r["estimate"] for r in rows], dtype=object)
    return table


def _apa_note(result: ModelResult, spec: ModelSpec, ci_level: float, r2_given: bool) -> str:
    level = f"{100 * ci_level:g}%"
    if spec.family == "binomial":
        return (f"b = log odds; SE = standard error; CI = {level} Wald confidence interval; p "
                "from a Wald z test. Logistic regression, one row per client, fitted by "
                "maximum likelihood; no random part, so no R².")
    reml = bool(result.fit.get("reml"))
    tests = ("Wald z tests and intervals (inference: wald); no df" if spec.inference == "wald"
             else f"t tests and {level} confidence intervals with Satterthwaite's df, as "
                  "lmerTest's summary()")
    parts = [
        f"b = unstandardised estimate; SE = standard error; CI = {level} confidence interval; "
        f"df = degrees of freedom; {tests}.",
        "Random part: variances of the random effects and the residual with their SDs "
        "(intervals Wald on the log scale of the variance); r = correlation of two random "
        "effects; ICC = a level's intercept variance over the sum of the intercept variances "
        "and the residual variance" + (" (with random slopes: where the slope variables are 0)"
                                       if _has_slopes(result) else "") + ".",
        "R²: marginal (fixed effects) and conditional (fixed and random effects), Nakagawa, "
        "Johnson & Schielzeth (2017), random slopes as Johnson (2014)." if r2_given else
        "R² not computed (the fit's rows and design were not available to the report).",
        f"Fitted by {'REML' if reml else 'maximum likelihood (ML)'}"
        + ("; the log-likelihood, AIC and BIC are REML criteria: they compare only models with "
           "the same fixed effects. Compare fixed effects with ML fits of the same rows "
           "(reml: false, or comparisons:)." if reml else
           "; AIC and BIC compare ML fits of the same rows."),
    ]
    return " ".join(parts)


def _has_slopes(result: ModelResult) -> bool:
    vc = result.extra.get("variance_components")
    return vc is not None and bool(((vc["level"] != "residual")
                                    & (vc["term"] != "(Intercept)")).any())


def _comparable(models: Mapping[str, tuple[ModelResult, ModelSpec]]) -> str:
    """Why the AIC and BIC of these models cannot be compared, or "" when they can."""
    fits = [(r.fit, s) for r, s in models.values()]
    if any(s.family != "gaussian" for _, s in fits):
        return "the models are not all linear mixed models"
    if len({f.get("n_obs") for f, _ in fits}) > 1 or len({s.where for _, s in fits}) > 1:
        return "the models are fitted on different rows"
    remls = {bool(f.get("reml")) for f, _ in fits}
    if remls == {False}:
        return ""
    if remls == {True} and len({s.parsed().fixed for _, s in fits}) == 1:
        return ""
    return ("REML criteria compare only models with the same fixed effects (refit with "
            "reml: false to compare them)")


def side_by_side(tables: Mapping[str, pd.DataFrame], comparable: bool = True
                 ) -> pd.DataFrame:
    """Models that share an outcome side by side: one row per term, one block per model.

    Parameters
    ----------
    tables
        Each model's :func:`apa_table` by name, in the order of the columns.
    comparable
        Whether their AIC, BIC and log-likelihood can be compared; when not, those rows are
        left out.

    Returns
    -------
    pandas.DataFrame
        ``part, term, statistic`` (the rows of any model, in the order they first appear:
        fixed effects, random part, fit), then ``<model>_estimate, <model>_ci_low,
        <model>_ci_high, <model>_p`` per model (:data:`BLOCK_COLUMNS`); empty where a model
        has no such row.
    """
    keys = ["part", "term", "statistic"]
    order = {"fixed": 0, "random": 1, "fit": 2}
    rows = pd.concat([t[keys] for t in tables.values()], ignore_index=True)
    rows = rows.drop_duplicates().reset_index(drop=True)
    rows = rows.iloc[np.argsort(rows["part"].map(order).to_numpy(), kind="stable")]
    if not comparable:
        rows = rows[~rows["statistic"].isin(["AIC", "BIC", "logLik"])]
    wide = rows.reset_index(drop=True)
    for name, table in tables.items():
        block = table[keys + list(BLOCK_COLUMNS)].rename(
            columns={c: f"{name}_{c}" for c in BLOCK_COLUMNS})
        wide = wide.merge(block, on=keys, how="left")
    return wide


def _side_by_side_shown(tables: Mapping[str, pd.DataFrame], wide: pd.DataFrame,
                        titles: Mapping[str, str], ci_level: float) -> pd.DataFrame:
    """The side-by-side table as text: each block formatted by :func:`format_apa`."""
    keys = ["part", "term", "statistic"]
    shown = wide[keys].copy()
    ci = f"{100 * ci_level:g}% CI"
    for name, table in tables.items():
        formatted = format_apa(table, ci_level=ci_level)
        block = pd.concat([table[keys], formatted[["estimate", ci, "p"]]], axis=1)
        block = shown[keys].merge(block, on=keys, how="left").fillna("")
        for column, header in (("estimate", "b"), (ci, ci), ("p", "p")):
            shown[f"{titles[name]}: {header}"] = block[column].to_numpy()
    return shown


def _outcome_groups(results: SpecifiedModels) -> dict[str, list[str]]:
    """Estimated models by outcome, for outcomes of two or more models."""
    groups: dict[str, list[str]] = {}
    for name, result in results.results.items():
        if is_estimated(result):
            groups.setdefault(results.specs[name].parsed().outcome, []).append(name)
    return {outcome: names for outcome, names in groups.items() if len(names) > 1}


def _note(result: ModelResult, spec_text: str) -> str:
    fit = result.fit
    parts = [f"Model: {spec_text}."]
    if fit.get("family") == "binomial":
        parts.append("Logistic regression, one row per client; estimates are log odds, "
                     "Wald z tests (df infinite).")
    else:
        parts.append(f"{'REML' if fit.get('reml') else 'ML'} fit by the nested engine; t tests "
                     "with Satterthwaite df (lmerTest).")
    removed = fit.get("n_removed_where", 0), fit.get("n_removed_missing", 0)
    if any(removed):
        parts.append(f"Rows removed: {removed[0]} by where, {removed[1]} with a missing model "
                     "variable.")
    return " ".join(parts)


def report_models(results: SpecifiedModels, run: RunFolder,
                  params: RunParams | None = None) -> pd.DataFrame:
    """Write every listed model's tables, numbers and coefficient plot, and the comparisons.

    Parameters
    ----------
    results
        The fitted models (:func:`~alliance_analysis.multilevel.specified.fit_models`).
    run
        The run folder.
    params
        The run parameters: ``labels:`` (readable term names in the APA tables and the
        figures, units of the outcomes) and ``multilevel.ci_level`` (default 0.95 without
        them).

    Each model's R2 is the one :func:`~alliance_analysis.multilevel.specified.fit_model`
    computed on the rows it fitted (``extra["r2"]``); a result without it gets an empty R2
    and a note saying so.

    Returns
    -------
    pandas.DataFrame
        The fit table (one row per model), for the notebook to show.
    """
    labels = dict(params.labels) if params is not None else {}
    instruments = params.instrument_definitions() if params is not None else []
    ci_level = params.multilevel.ci_level if params is not None else 0.95
    fits, apa, titles = [], {}, {}
    for name, result in results.results.items():
        spec = results.specs[name]
        flags = [result.flags()]
        title = spec.label or name
        titles[name] = title
        outcome = label_term(spec.parsed().outcome, labels)
        kind = "logistic regression" if spec.family == "binomial" else "linear mixed model"
        run.write_table(f"model_{name}_fixed", fixed_table(result), flags=flags,
                        caption=f"Fixed effects of {title}, a {kind} of {outcome}",
                        note=_note(result, spec.formula))
        if spec.family == "gaussian":
            run.write_table(f"model_{name}_random", random_table(result), flags=flags,
                            caption=f"Random effects of {title}: variances, covariances and "
                                    "the residual variance",
                            note="Variances (sd_or_corr: SD) and covariances (sd_or_corr: "
                                 "correlation) of the random effects, and the residual "
                                 "variance.")
        intervals = result.extra.get("random_intervals")
        if intervals is not None:
            run.write_table(
                f"model_{name}_random_intervals", intervals, flags=flags,
                caption=f"Parametric-bootstrap intervals of the random part of {title}",
                note=f"Percentile intervals over {spec.bootstrap_samples} samples simulated "
                     "from the fitted model and refitted (n_samples: refits that converged; "
                     "n_singular: refits with a variance at 0). icc: share of the total "
                     "intercept-plus-residual variance.")
        r2 = result.extra.get("r2", UNDEFINED)
        apa[name] = apa_table(result, spec, labels, r2)
        run.write_table(f"model_{name}_apa", apa[name], flags=flags,
                        caption=f"{kind[0].upper()}{kind[1:]} {title} of {outcome}: fixed "
                                "effects, random part and fit",
                        note=_apa_note(result, spec, ci_level,
                                       not np.isnan(r2.r2_marginal)))
        run.record(headline(name, result, r2))
        run.write_figure(f"model_coefficients_{name}", plots.coefficients(
            relabelled(result, labels), exclude=("(Intercept)", "Intercept"),
            outcome=plots.outcome_label(spec.parsed().outcome, instruments)),
            caption=f"Fixed effects of {title} ({outcome}) with their {100 * ci_level:g}% "
                    "confidence intervals (intercept not shown)", flags=flags)
        fits.append(result.fit_table().assign(formula=spec.formula, r2_marginal=r2.r2_marginal,
                                              r2_conditional=r2.r2_conditional))
    for outcome, names in _outcome_groups(results).items():
        _write_side_by_side(run, outcome, {n: apa[n] for n in names},
                            {n: (results.results[n], results.specs[n]) for n in names},
                            {n: titles[n] for n in names}, labels, ci_level)
    table = pd.concat(fits, ignore_index=True) if fits else pd.DataFrame()
    if len(table):
        run.write_table("models_fit", table, formatted=False,
                        caption="Fit of every model listed under models: sample sizes, "
                                "log-likelihood, AIC, BIC, R², convergence and warnings",
                        flags=[r.flags() for r in results.results.values()])
    if len(results.comparisons):
        run.write_table("model_comparisons", results.comparisons,
                        caption="Likelihood-ratio tests of nested models",
                        note="Models fitted by REML with different fixed effects were refitted "
                             "by ML first (refit), as lme4's anova(); chisq on df degrees of "
                             "freedom; a variance tested at its boundary of 0 makes p "
                             "conservative.")
        run.record({f"models.comparison.{row.comparison}.{stat}": getattr(row, stat)
                    for row in results.comparisons.dropna(subset=["chisq"]).itertuples()
                    for stat in ("chisq", "df", "p")})
    return table


def _write_side_by_side(run: RunFolder, outcome: str, tables: Mapping[str, pd.DataFrame],
                        models: Mapping[str, tuple[ModelResult, ModelSpec]],
                        titles: Mapping[str, str], labels: Mapping[str, str],
                        ci_level: float) -> None:
    """``tables/models_<outcome>_apa``: the numbers as CSV, the text formatted per block."""
    why_not = _comparable(models)
    wide = side_by_side(tables, comparable=not why_not)
    name = f"models_{outcome}_apa"
    caption = (f"Models of {label_term(outcome, labels)} side by side: "
               f"{', '.join(titles.values())}")
    note = (f"b = unstandardised estimate; CI = {100 * ci_level:g}% confidence interval; p of the "
            "t test with Satterthwaite's df (lmerTest). Random part: variances, SDs and "
            "correlations r of the random effects; ICC = a level's share of the intercept and "
            "residual variance. R²: marginal and conditional (Nakagawa, Johnson & Schielzeth, "
            "2017). Each model's full table, with SE and df: model_<name>_apa. "
            + ("AIC, BIC and log-likelihood compare these fits (same rows, "
               + ("ML)." if not any(r.fit.get("reml") for r, _ in models.values())
                  else "REML with the same fixed effects).")
               if not why_not else f"AIC and BIC are left out: {why_not}."))
    flags = [r.flags() for r, _ in models.values()]
    run.write_table(name, wide, caption=caption, note=note, flags=flags,
                    shown=_side_by_side_shown(tables, wide, titles, ci_level))


def show_model(name: str, result: ModelResult, spec_text: str) -> Markdown:
    """One model for a notebook: its formula, fixed effects with df and p, random part, fit."""
    fixed = fixed_table(result).assign(p=lambda t: t["p"].map(format_p))
    parts = [f"### {name}", f"`{spec_text}`", fixed.to_markdown(index=False, floatfmt=".3f")]
    random = random_table(result)
    if len(random):
        parts.append("**Random part**\n\n" + random.to_markdown(index=False, floatfmt=".4g"))
    fit = result.fit
    flags = result.flags()
    state = ("converged" if flags["converged"] else "**did NOT converge**") + (
        "; **singular fit**" if flags["singular"] else "")
    parts.append(f"*Fit:* {fit.get('n_obs')} observations, {fit.get('n_clients')} clients, "
                 f"{fit.get('n_therapists')} therapists; log-likelihood {fit['loglik']:.2f} "
                 f"({'REML' if fit.get('reml') else 'ML'}); AIC {fit['aic']:.1f}, BIC "
                 f"{fit['bic']:.1f}; {state}.")
    if flags["warnings"]:
        parts.append("*Warnings:* " + "; ".join(flags["warnings"]))
    return Markdown("\n\n".join(parts))


def show_models(results: SpecifiedModels) -> Markdown:
    """:func:`show_model` for every listed model, and the comparisons."""
    parts = [show_model(name, result, results.specs[name].formula).data
             for name, result in results.results.items()]
    if len(results.comparisons):
        shown = results.comparisons.assign(p=results.comparisons["p"].map(format_p))
        parts.append("### Comparisons\n\n" + shown.to_markdown(index=False, floatfmt=".3f"))
    return Markdown("\n\n---\n\n".join(parts) or "No models listed under `models:`.")
