"""The methods and results paragraphs of a run, generated from what the run fitted.

A researcher can paste them into a manuscript. Without a run folder the paragraph describes
what the parameters ask for; with one (``run_dir``) it describes what was actually fitted,
read from the run's ``results.json`` and ``outputs.json`` and its fit tables: per model the
fitter, the estimation (REML or ML), the formula with its random part, how the fixed effects
were tested (t tests with Satterthwaite's degrees of freedom for linear mixed models, Wald z
for logistic regressions), the rows used and the rows left out and why, and every singular
or non-converged fit. Only the stages that ran are described, and only works the text cites
are listed among its references.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alliance_analysis.params import RunParams
from alliance_analysis.report.references import REFERENCES, cited_references
# the results paragraph and the small formatting helpers both texts use
from alliance_analysis.report.results_text import _abbreviation, _count, results_paragraph
from alliance_analysis.report.runrecord import RunRecord

__all__ = ["REFERENCES", "RunRecord", "cited_references", "methods_paragraph",
           "methods_text", "results_paragraph"]

def _join(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _reason(warning: str, tag: str) -> str:
    """``"SINGULAR FIT: client session variance is ~0; simplify"`` -> the middle part."""
    return warning.split(":", 1)[1].split(";")[0].strip() if tag in warning else ""


def _flag_sentences(flags: Mapping[str, Mapping[str, Any]], what: str) -> list[str]:
    """Which fits were singular or did not converge, with the engine's reason."""
    singular, failed = [], []
    for model, flag in flags.items():
        reasons = [r for w in flag.get("warnings", []) for r in [_reason(w, "SINGULAR")] if r]
        if flag.get("singular"):
            singular.append(f"{model}" + (f" ({'; '.join(reasons)})" if reasons else ""))
        if not flag.get("converged", True):
            why = [w for w in flag.get("warnings", []) if "SINGULAR" not in w
                   and not w.startswith("dropped")]
            failed.append(f"{model}" + (f" ({'; '.join(why)})" if why else ""))
    out = []
    if singular:
        fits = f"The fit of {what} {singular[0]} was" if len(singular) == 1 else \
            f"The fits of {what}s {_join(singular)} were"
        out.append(f"{fits} singular (a variance estimated at zero or a correlation at ±1): "
                   "the random part is more than the data support, and the fixed effects "
                   "are reported as estimated.")
    if failed:
        fits = f"The fit of {what} {failed[0]}" if len(failed) == 1 else \
            f"The fits of {what}s {_join(failed)}"
        out.append(f"{fits} did not converge; the estimates are not interpreted.")
    if flags and not singular and not failed:
        out.append(f"Every fit of the {what}s converged and none was singular.")
    return out


def _data_sentences(params: RunParams, record: RunRecord | None) -> list[str]:
    instruments = params.instrument_definitions()
    names = ", ".join(i.name for i in instruments)
    cleaning = params.cleaning
    sentences = [
        f"Session-by-session questionnaires ({names}) were processed with alliance-analysis.",
        "Client and therapist identifiers were replaced by keyed-hash pseudonyms before "
        "analysis; out-of-range and non-numeric item responses were set to missing, duplicate "
        f"client-session records were resolved by rule ({cleaning.duplicates.replace('_', ' ')}"
        "), and every excluded row and changed value was recorded in a cleaning ledger.",
    ]
    if record is not None and "clean.rows_input" in record.results:
        sentences.append(_exclusion_sentence(record))
    sentences.append(
        "Scale scores followed each instrument's scoring rule; scores with a few missing items "
        "were prorated as the mean of the answered items when at least the instrument's "
        "minimum number of items was answered; every prorated score and every score left "
        "missing for too few items is in the ledger.")
    return sentences + _scoring_sentences(params)


def _exclusion_sentence(record: RunRecord) -> str:
    """How many session rows were read, excluded (by which rule) and kept."""
    r = record.results
    text = (f"Of {_count(r['clean.rows_input'])} session records read, "
            f"{_count(r.get('clean.rows_excluded', 0))} were excluded")
    summary = record.table("cleaning_summary")
    if summary is not None and {"rule", "rows_excluded"} <= set(summary.columns):
        rules = [f"{row.rule.replace('_', ' ')}: {_count(row.rows_excluded)}"
                 for row in summary.itertuples() if row.rows_excluded > 0]
        if rules:
            text += f" ({'; '.join(rules)})"
    return text + f" and {_count(r.get('clean.rows_kept', 0))} were kept."


def _scoring_sentences(params: RunParams) -> list[str]:
    """What the run's ``scoring:`` changed, per instrument."""
    words = {"half_even": "rounded half to even", "half_up": "rounded half up"}
    out = []
    for key, rule in params.scoring.items():
        instrument = next(i for i in params.instrument_definitions() if i.key == key)
        parts = []
        if rule.min_items is not None:
            parts.append(f"prorated from at least {rule.min_items} of {instrument.n_items} items")
        if instrument.rounding != "none":
            decimals = instrument.rounding_decimals
            parts.append(f"{words[instrument.rounding]} to "
                         + ("whole points" if decimals == 0 else f"{decimals} decimal(s)"))
        if parts:
            out.append(f"{instrument.abbreviation()} scores were {' and '.join(parts)}.")
    return out


def _tests(inference: str, cite: bool = True) -> str:
    """How fixed effects of a linear mixed model were tested (with the citation)."""
    if inference == "wald":
        return "Wald z tests (normal reference distribution)"
    return ("t tests with Satterthwaite's degrees of freedom"
            + (", as lmerTest computes them (Kuznetsova et al., 2017)" if cite else ""))


def _multilevel_sentences(params: RunParams, record: RunRecord | None) -> list[str]:
    options = params.multilevel
    alliance, symptoms = _abbreviation(params, params.alliance), _abbreviation(params,
                                                                              params.symptoms)
    levels = "sessions nested in clients nested in therapists" if options.therapist_level \
        else "sessions nested in clients"
    estimator = "restricted maximum likelihood (REML)" if options.reml else "maximum likelihood"
    dynamic = options.detrend or options.lagged_outcome
    sentences = [
        f"Multilevel (mixed-effects) models for {levels} were fitted by {estimator} with "
        "alliance-analysis's nested mixed-model engine, which minimises lme4's profiled "
        "deviance and whose estimates are checked against lme4 (Bates et al., 2015); fits were "
        "checked with lme4's scaled-gradient criterion and for singularity, and fixed effects "
        f"were tested by {_tests(options.inference)}.",
        f"Time was coded as {options.time.replace('_', ' ')} from session "
        f"{options.time_origin}" + (", with a random client slope." if options.client_slope
                                    else "."),
        f"The alliance ({alliance}) was split into each client's mean (between-client) "
        "and the session's deviation from it (within-client; Curran & Bauer, 2011), and the "
        f"within-client deviation at session t predicted {symptoms} at session t+1"
        + (", controlling for the symptom level at session t" if options.lagged_outcome else "")
        + (", with alliance detrended within client" if options.detrend else "")
        + (" (Falkenström et al., 2017)." if dynamic else "."),
    ]
    if record is None or "multilevel.therapist_effects.fit.n_obs" in record.results:
        sentences.append("Therapist effects on outcome were estimated following Baldwin et al. "
                         "(2007), splitting early alliance into the therapist's mean and the "
                         "client's deviation from it.")
    if record is None or "multilevel.dropout.fit.n_obs" in record.results:
        sentences.append("Premature dropout was regressed on early alliance by logistic "
                         "regression (maximum likelihood, Wald z tests with standard errors "
                         "clustered by therapist; statsmodels, Seabold & Perktold, 2010).")
    if record is not None:
        flags = record.flags("03_multilevel", exclude_prefix="model")
        dropped = [f"{model}: {_count(m.group(1))}" for model, flag in flags.items()
                   for w in flag.get("warnings", [])
                   for m in [re.match(r"dropped (\d+) row", w)] if m]
        if dropped:
            sentences.append("Rows with a missing model variable were left out of each model "
                             f"(complete cases, as lme4's na.omit; {'; '.join(dropped)}).")
        sentences += _flag_sentences(flags, "built-in model")
    return sentences


def _random_words(formula: Any) -> str:
    """The random part of a parsed formula in words, one phrase per grouping bar."""
    parts = []
    for bar in formula.random:
        slopes = _join(list(bar.slopes)) if bar.slopes else ""
        plural = "s" if len(bar.slopes) > 1 else ""
        if bar.intercept and slopes and bar.correlated:
            parts.append(f"a random intercept and random slope{plural} of {slopes} over "
                         f"{bar.group}, correlated")
        elif bar.intercept and slopes:
            parts.append(f"a random intercept and an uncorrelated random slope{plural} of "
                         f"{slopes} over {bar.group}")
        elif slopes:
            parts.append(f"a random slope{plural} of {slopes} over {bar.group}")
        else:
            parts.append(f"a random intercept over {bar.group}")
    return "; ".join(parts) if parts else "no random part"


def _removed(record: RunRecord, name: str) -> tuple[int, int] | None:
    """Rows of model ``name`` removed by its row filter and for a missing model variable."""
    fit = record.table("models_fit")
    if fit is not None and {"model", "n_removed_where", "n_removed_missing"} <= set(fit.columns):
        row = fit[fit["model"] == name]
        if len(row):
            return int(row["n_removed_where"].iloc[0]), int(row["n_removed_missing"].iloc[0])
    entry = record.entry(f"model_{name}_fixed") or {}
    found = re.search(r"Rows removed: (\d+) by where, (\d+) with a missing", entry.get("note",
                                                                                     ""))
    return (int(found.group(1)), int(found.group(2))) if found else None


def _own_model_sentence(name: str, spec: Any, record: RunRecord | None,
                        wald_default: bool = False) -> str:
    """Fitter, estimation, formula and random part, tests, rows used and left out, flags."""
    where = f", on the rows with {spec.where}" if spec.where else ""
    if spec.family == "binomial":
        text = (f"Model {name}, {spec.formula}, was a logistic regression of a client-level "
                "0/1 outcome (one row per client) fitted by maximum likelihood "
                "(Newton-Raphson in statsmodels; Seabold & Perktold, 2010), with Wald z tests"
                f"{where}.")
    else:
        parsed = spec.parsed()
        fixed = "the intercept only" if parsed.fixed.strip() == "1" else parsed.fixed
        text = (f"Model {name}, {spec.formula} (lme4 notation; fixed part: {fixed}; random "
                f"part: {_random_words(parsed)}), was fitted by "
                f"{'REML' if spec.reml else 'maximum likelihood (ML)'} with the nested engine"
                f"{where}, its fixed effects tested by "
                f"{_tests(spec.inference, cite=wald_default)}.")
    if record is None:
        return text
    n = record.results.get(f"models.{name}.n_obs")
    removed = _removed(record, name)
    if n is not None:
        text += f" It used {_count(n)} rows"
        if removed is not None:
            by_where, missing = removed
            text += (f"; {_count(missing)} with a missing model variable were left out "
                     "(complete cases)")
            if spec.where:
                text += f" and {_count(by_where)} by the row filter"
        text += "."
    if record.results.get(f"models.{name}.converged") is False:
        text += " The fit did not converge; its estimates are not interpreted."
    elif record.results.get(f"models.{name}.singular") is True:
        text += " The fit was singular (a variance estimated at zero or a correlation at ±1)."
    return text


def _own_model_sentences(params: RunParams, record: RunRecord | None) -> list[str]:
    """One sentence per model listed under ``models:``, and the comparisons."""
    if not params.models:
        return []
    wald = params.multilevel.inference == "wald"  # else the general sentence cites lmerTest
    sentences = [_own_model_sentence(name, spec, record, wald)
                 for name, spec in params.models.items()]
    if params.comparisons:
        pairs = "; ".join(f"{a} with {b}" for a, b in params.comparisons)
        sentences.append(f"Nested models were compared by likelihood-ratio tests ({pairs}), "
                         "refitted by maximum likelihood where their fixed effects differed.")
    return sentences


def _sem_sentences(params: RunParams, record: RunRecord | None) -> list[str]:
    builtin = params.builtin_sem()
    sentences = []
    if builtin.cfa is not None:
        estimator = "maximum likelihood" if builtin.cfa.estimator == "ML" else \
            "diagonally weighted least squares on polychoric correlations"
        sentences.append(
            f"Confirmatory factor analyses of the alliance items at session "
            f"{builtin.cfa.cfa_session} (one factor, three correlated factors, bifactor) used "
            f"{estimator}.")
    if builtin.panel is not None:
        missing = ("full-information maximum likelihood" if builtin.panel.missing == "fiml"
                   else "listwise deletion")
        waves = ", ".join(str(w) for w in builtin.panel.waves)
        sentences.append(
            f"The random-intercept cross-lagged panel model (Hamaker et al., 2015) and the "
            f"traditional cross-lagged panel model were fitted to sessions {waves} with "
            f"{missing}.")
    if builtin.growth is not None:
        waves = ", ".join(str(w) for w in builtin.growth.growth_sessions)
        sentences.append(
            f"A linear latent growth model of symptoms over sessions {waves} had early "
            f"alliance (the mean over sessions 1 to {builtin.growth.early_sessions}) "
            "predicting its intercept and slope.")
    own = params.own_sem_models()
    if own:
        missing_words = {"fiml": "full-information maximum likelihood for missing values",
                         "listwise": "listwise deletion"}
        described = [f"{name} ({spec.estimator}, {missing_words[spec.missing]})"
                     for name, spec in own.items()]
        sentences.append(f"Further structural equation models were specified in the "
                         f"parameters: {_join(described)}.")
    if not sentences:
        return []
    sentences.append("Models were estimated with semopy's model specification (Igolkina & "
                     "Meshcheryakov, 2020), with fit statistics computed by lavaan's "
                     "conventions (Rosseel, 2012).")
    if record is not None:
        sizes = sorted({int(v) for k, v in record.results.items()
                        if k.startswith("sem.") and k.endswith(".n_obs") and v is not None})
        if sizes:
            n = _count(sizes[0]) if len(sizes) == 1 else \
                f"{_count(sizes[0])} to {_count(sizes[-1])}"
            sentences.append(f"They were fitted to one row per client (N = {n}).")
        sentences += _flag_sentences(record.flags("04_sem"), "structural equation model")
    return sentences


def _change_sentences(params: RunParams, record: RunRecord | None) -> list[str]:
    options = params.change
    rule = "published reliable-change thresholds and clinical cut-offs of each instrument" \
        if options.reliable_change == "published" else \
        "the reliable change index and cut-off computed from the sample"
    sds = " and ".join(f"{s:g}" for s in options.rupture_sd)
    sentences = [
        f"Reliable and clinically significant change was classified following Jacobson and "
        f"Truax (1991), using the {rule}. Sudden gains followed Tang and DeRubeis (1999). An "
        f"alliance rupture was a session more than {sds} SD below the client's own mean "
        f"alliance, and a repair its return to the pre-rupture level within "
        f"{options.repair_within} sessions (Stiles et al., 2004).",
    ]
    regressions = []
    if record is None or record.entry("change_model_dropout_early_alliance"):
        regressions.append("dropout on early alliance level and change by logistic "
                           "regression")
    if record is None or any(name.startswith("change_model_rupture_outcome")
                             for name in record.outputs.get("tables", {})):
        regressions.append("symptom change on repaired ruptures by ordinary least squares")
    if regressions:
        sentences.append(f"Client-level models regressed {_join(regressions)} (statsmodels; "
                         "Seabold & Perktold, 2010).")
    return sentences


def _robustness_sentences(params: RunParams) -> list[str]:
    robustness = params.robustness
    if robustness is None:
        return []
    varied = ", ".join(f"{name} ({len(values)} options)"
                       for name, values in robustness.choices.items())
    if robustness.where:
        varied += f", rows ({len(robustness.where)} filters)"
    test = (f" The curve was tested as a whole under the null with {robustness.joint_test} "
            "client resamples from data with each specification's effect removed."
            if robustness.joint_test else "")
    return [f"A specification curve (Simonsohn et al., 2020) refitted the model of "
            f"{robustness.target} in {robustness.n_specifications()} specifications crossing "
            f"{varied}, each a linear mixed model estimated as above.{test}"]


def _statsmodels_used(params: RunParams, record: RunRecord | None) -> bool:
    """Whether a logistic or least-squares regression (statsmodels) was fitted."""
    if record is None:
        return True
    tables = record.outputs.get("tables", {})
    return ("multilevel.dropout.fit.n_obs" in record.results
            or any(name.startswith("change_model_") for name in tables)
            or any(spec.family == "binomial" and f"models.{name}.n_obs" in record.results
                   for name, spec in params.models.items()))


def _software_sentence(params: RunParams, packages: Mapping[str, str],
                       record: RunRecord | None) -> str:
    def ran(stage: str) -> bool:
        return record is None or record.ran(stage)

    used = [f"alliance-analysis {packages.get('alliance-analysis', '?')} (data handling and "
            "mixed models)", f"pandas {packages.get('pandas', '?')}",
            f"NumPy {packages.get('numpy', '?')}", f"SciPy {packages.get('scipy', '?')}"]
    if _statsmodels_used(params, record):
        used.append(f"statsmodels {packages.get('statsmodels', '?')} (logistic and "
                    "least-squares regressions)")
    if ran("04_sem"):
        used.append(f"semopy {packages.get('semopy', '?')} (structural equation models)")
    return (f"Analyses ran in Python {packages.get('python', '?')} with {_join(used)}; the "
            f"random seed was {params.seed}.")


def methods_text(params: RunParams, packages: Mapping[str, str],
                 run_dir: str | Path | None = None) -> tuple[str, list[str]]:
    """The methods paragraph and the full references it cites (see :func:`methods_paragraph`).

    Returns
    -------
    tuple
        ``(paragraph, references)``: plain text, and the references in alphabetical order.
    """
    record = RunRecord.read(run_dir) if run_dir is not None else None

    def ran(stage: str) -> bool:
        return record is None or record.ran(stage)

    sentences = _data_sentences(params, record)
    if ran("03_multilevel"):
        sentences += _multilevel_sentences(params, record) + _own_model_sentences(params,
                                                                                  record)
    if ran("04_sem"):
        sentences += _sem_sentences(params, record)
    if ran("05_change"):
        sentences += _change_sentences(params, record)
    if ran("06_robustness"):
        sentences += _robustness_sentences(params)
    sentences.append(_software_sentence(params, packages, record))
    text = " ".join(sentences)
    return text, cited_references(text)


def methods_paragraph(params: RunParams, packages: Mapping[str, str],
                      run_dir: str | Path | None = None) -> str:
    """The methods paragraph of a run, with its citations.

    Parameters
    ----------
    params
        The run's parameters.
    packages
        Installed versions (``{"python": ..., "statsmodels": ...}``, as in the manifest).
    run_dir
        The run folder. When given, the paragraph describes what the run fitted, from its
        ``results.json``, ``outputs.json`` and fit tables (:class:`RunRecord`): only the
        stages that ran, the rows each model used and left out, and every singular or
        non-converged fit. Without it, what the parameters ask for.

    Returns
    -------
    str
        Plain text; the references cited follow, one per line, after a blank line and a
        ``References`` line.

    Notes
    -----
    Linear mixed models are described as fitted by the package's nested engine (lme4's
    profiled REML or ML deviance, checked against lme4 in ``tests/reference``), with
    t tests on Satterthwaite degrees of freedom as lmerTest (or Wald z where a model asks
    for it); logistic and least-squares regressions by statsmodels; SEMs with semopy's
    model specification and lavaan's fit conventions.

    References
    ----------
    .. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear
       mixed-effects models using lme4. Journal of Statistical Software, 67(1), 1-48.
    .. [2] Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest
       package: Tests in linear mixed effects models. Journal of Statistical Software,
       82(13), 1-26.
    """
    text, references = methods_text(params, packages, run_dir)
    return text + "\n\nReferences\n" + "\n".join(references)
