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
* ``tables/models_fit.csv``: one row per model; ``figures/model_coefficients_<name>``.

REML fits report the REML log-likelihood, AIC and BIC, as lme4 does: compare models with
different fixed effects by ``comparisons:`` (refitted by ML) or by fitting them with
``reml: false``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from IPython.display import Markdown

from alliance_analysis.multilevel.specified import (SpecifiedModels, fixed_table,
                                                    random_table)
from alliance_analysis.report import plots
from alliance_analysis.report.runfolder import RunFolder
from alliance_analysis.report.tables import format_p
from alliance_analysis.results import ModelResult

#: Fit statistics recorded for each model under ``models.<name>.``.
RECORDED_FIT = ("loglik", "aic", "bic", "n_obs", "n_clients", "n_therapists", "converged",
                "singular", "reml")
#: Statistics of each fixed effect recorded under ``models.<name>.<term>.``.
RECORDED_TERM = ("estimate", "se", "df", "p", "ci_low", "ci_high")


def headline(name: str, result: ModelResult) -> dict[str, Any]:
    """The model's numbers by their ``results.json`` keys (see the module notes)."""
    fit = result.fit
    values: dict[str, Any] = {f"models.{name}.{key}": fit.get(key) for key in RECORDED_FIT}
    values[f"models.{name}.singular"] = bool(fit.get("singular", False))
    for row in fixed_table(result).itertuples(index=False):
        for stat in RECORDED_TERM:
            values[f"models.{name}.{row.term}.{stat}"] = getattr(row, stat)
    return values


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


def report_models(results: SpecifiedModels, run: RunFolder) -> pd.DataFrame:
    """Write every listed model's tables, numbers and coefficient plot, and the comparisons.

    Returns the fit table (one row per model), for the notebook to show.
    """
    fits = []
    for name, result in results.results.items():
        spec = results.specs[name]
        flags = [result.flags()]
        title = spec.label or name
        run.write_table(f"model_{name}_fixed", fixed_table(result), flags=flags,
                        caption=f"Fixed effects of {title}",
                        note=_note(result, spec.formula))
        if spec.family == "gaussian":
            run.write_table(f"model_{name}_random", random_table(result), flags=flags,
                            caption=f"Random effects of {title}",
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
        run.record(headline(name, result))
        run.write_figure(f"model_coefficients_{name}", plots.coefficients(
            result, exclude=("(Intercept)", "Intercept")), caption=f"Estimates of {title} "
            "with their confidence intervals", flags=flags)
        fits.append(result.fit_table().assign(formula=spec.formula))
    table = pd.concat(fits, ignore_index=True) if fits else pd.DataFrame()
    if len(table):
        run.write_table("models_fit", table, formatted=False,
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
