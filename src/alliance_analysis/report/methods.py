"""The methods and results paragraphs of a run, generated from its parameters and results.

A researcher can paste it into a manuscript: it says which data handling, models, estimators,
missing-data treatment and centring were used, with the citations a reader needs. Every
sentence is derived from the run's parameters, so it cannot drift from what was fitted.
"""

from __future__ import annotations

from collections.abc import Mapping

from alliance_analysis.params import RunParams

#: Full references of the works the paragraph cites, by short citation.
REFERENCES = {
    "Bates et al., 2015": "Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting "
    "linear mixed-effects models using lme4. Journal of Statistical Software, 67(1), 1-48.",
    "Curran & Bauer, 2011": "Curran, P. J., & Bauer, D. J. (2011). The disaggregation of "
    "within-person and between-person effects in longitudinal models of change. Annual Review "
    "of Psychology, 62, 583-619.",
    "Falkenström et al., 2017": "Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & "
    "Holmqvist, R. (2017). Dynamic models of individual change in psychotherapy process "
    "research. Journal of Consulting and Clinical Psychology, 85(6), 537-549.",
    "Hamaker et al., 2015": "Hamaker, E. L., Kuiper, R. M., & Grasman, R. P. P. P. (2015). A "
    "critique of the cross-lagged panel model. Psychological Methods, 20(1), 102-116.",
    "Rosseel, 2012": "Rosseel, Y. (2012). lavaan: An R package for structural equation "
    "modeling. Journal of Statistical Software, 48(2), 1-36.",
    "Jacobson & Truax, 1991": "Jacobson, N. S., & Truax, P. (1991). Clinical significance: A "
    "statistical approach to defining meaningful change in psychotherapy research. Journal of "
    "Consulting and Clinical Psychology, 59(1), 12-19.",
    "Tang & DeRubeis, 1999": "Tang, T. Z., & DeRubeis, R. J. (1999). Sudden gains and critical "
    "sessions in cognitive-behavioral therapy for depression. Journal of Consulting and "
    "Clinical Psychology, 67(6), 894-904.",
    "Simonsohn et al., 2020": "Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020). "
    "Specification curve analysis. Nature Human Behaviour, 4, 1208-1214.",
    "Stiles et al., 2004": "Stiles, W. B., Glick, M. J., Osatuke, K., Hardy, G. E., Shapiro, D. "
    "A., Agnew-Davies, R., Rees, A., & Barkham, M. (2004). Patterns of alliance development "
    "and the rupture-repair hypothesis. Journal of Counseling Psychology, 51(1), 81-92.",
    "Baldwin et al., 2007": "Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling "
    "the alliance-outcome correlation. Journal of Consulting and Clinical Psychology, 75(6), "
    "842-852.",
    "Seabold & Perktold, 2010": "Seabold, S., & Perktold, J. (2010). statsmodels: Econometric "
    "and statistical modeling with Python. Proceedings of the 9th Python in Science "
    "Conference, 92-96.",
    "Kuznetsova et al., 2017": "Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. "
    "(2017). lmerTest package: Tests in linear mixed effects models. Journal of Statistical "
    "Software, 82(13), 1-26.",
    "Igolkina & Meshcheryakov, 2020": "Igolkina, A. A., & Meshcheryakov, G. (2020). semopy: A "
    "Python package for structural equation modeling. Structural Equation Modeling, 27(6), "
    "952-963.",
}


def _data_sentences(params: RunParams) -> list[str]:
    instruments = params.instrument_definitions()
    names = ", ".join(i.name for i in instruments)
    cleaning = params.cleaning
    return [
        f"Session-by-session questionnaires ({names}) were processed with alliance-analysis.",
        "Client and therapist identifiers were replaced by keyed-hash pseudonyms before "
        "analysis; out-of-range and non-numeric item responses were set to missing, duplicate "
        f"client-session records were resolved by rule ({cleaning.duplicates.replace('_', ' ')}"
        "), and every excluded row and changed value was recorded in a cleaning ledger.",
        "Scale scores followed each instrument's scoring rule; scores with a few missing items "
        "were prorated as the mean of the answered items when at least the instrument's "
        "minimum number of items was answered; every prorated score and every score left "
        "missing for too few items is in the ledger.",
        *_scoring_sentences(params),
    ]


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


def _abbreviation(params: RunParams, key: str) -> str:
    return next(i.abbreviation() for i in params.instrument_definitions() if i.key == key)


def _multilevel_sentences(params: RunParams) -> list[str]:
    options = params.multilevel
    alliance, symptoms = _abbreviation(params, params.alliance), _abbreviation(params,
                                                                              params.symptoms)
    levels = "sessions nested in clients nested in therapists" if options.therapist_level \
        else "sessions nested in clients"
    estimator = "restricted maximum likelihood (REML)" if options.reml else "maximum likelihood"
    return [
        f"Multilevel (mixed-effects) models for {levels} were fitted by {estimator}, "
        "minimising lme4's profiled deviance (Bates et al., 2015) with alliance-analysis's "
        "nested engine, whose estimates equal lme4's; fits were checked with lme4's "
        "scaled-gradient criterion and for singularity, and fixed effects were tested by t "
        "tests with Satterthwaite's degrees of freedom (Kuznetsova et al., 2017).",
        f"Time was coded as {options.time.replace('_', ' ')} from session "
        f"{options.time_origin}" + (", with a random client slope." if options.client_slope
                                    else "."),
        f"The alliance ({alliance}) was split into each client's mean (between-client) "
        "and the session's deviation from it (within-client; Curran & Bauer, 2011), and the "
        f"within-client deviation at session t predicted {symptoms} at session t+1"
        + (", controlling for the symptom level at session t" if options.lagged_outcome else "")
        + (", with alliance detrended within client (Falkenström et al., 2017)."
           if options.detrend else " (Falkenström et al., 2017)."),
        "Therapist effects were estimated following Baldwin et al. (2007).",
    ]


def _own_model_sentences(params: RunParams) -> list[str]:
    """One sentence per model listed under ``models:``, and the comparisons."""
    sentences = []
    for name, spec in params.models.items():
        if spec.family == "binomial":
            how = "a logistic regression with one row per client, by maximum likelihood"
        else:
            how = (f"{'REML' if spec.reml else 'maximum likelihood'} with the nested engine, "
                   + ("Satterthwaite t tests" if spec.inference == "satterthwaite"
                      else "Wald z tests"))
        where = f", on the rows with {spec.where}" if spec.where else ""
        sentences.append(f"The model {name}, {spec.formula} (lme4 notation), was fitted by "
                         f"{how}{where}.")
    if params.comparisons:
        pairs = "; ".join(f"{a} with {b}" for a, b in params.comparisons)
        sentences.append(f"Nested models were compared by likelihood-ratio tests ({pairs}), "
                         "refitted by maximum likelihood where their fixed effects differed.")
    return sentences


def _sem_sentences(params: RunParams) -> list[str]:
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
    if params.own_sem_models():
        names = ", ".join(params.own_sem_models())
        sentences.append(f"Further structural equation models were specified in the "
                         f"parameters ({names}).")
    if sentences:
        sentences.append("Models were estimated in semopy (Igolkina & Meshcheryakov, 2020), "
                         "with fit statistics computed by lavaan's conventions "
                         "(Rosseel, 2012).")
    return sentences


def _change_sentences(params: RunParams) -> list[str]:
    options = params.change
    rule = "published reliable-change thresholds and clinical cut-offs of each instrument" \
        if options.reliable_change == "published" else \
        "the reliable change index and cut-off computed from the sample"
    sds = " and ".join(f"{s:g}" for s in options.rupture_sd)
    return [
        f"Reliable and clinically significant change was classified following Jacobson and "
        f"Truax (1991), using the {rule}. Sudden gains followed Tang and DeRubeis (1999). An "
        f"alliance rupture was a session more than {sds} SD below the client's own mean "
        f"alliance, and a repair its return to the pre-rupture level within "
        f"{options.repair_within} sessions (Stiles et al., 2004).",
    ]


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


def methods_paragraph(params: RunParams, packages: Mapping[str, str]) -> str:
    """The methods paragraph of a run, with its citations.

    Parameters
    ----------
    params
        The run's parameters.
    packages
        Installed versions (``{"python": ..., "statsmodels": ...}``, as in the manifest).

    Returns
    -------
    str
        Plain text; the references cited follow, one per line, after a blank line.
    """
    software = (f"Analyses ran in Python {packages.get('python', '?')} with alliance-analysis "
                f"{packages.get('alliance-analysis', '?')}, statsmodels "
                f"{packages.get('statsmodels', '?')}, semopy {packages.get('semopy', '?')} and "
                f"pandas {packages.get('pandas', '?')} (seed {params.seed}).")
    sentences = (_data_sentences(params) + _multilevel_sentences(params)
                 + _own_model_sentences(params) + _sem_sentences(params)
                 + _change_sentences(params) + _robustness_sentences(params) + [software])
    text = " ".join(sentences)
    cited = [ref for short, ref in REFERENCES.items()
             if short.split(",")[0].split(" ")[0] in text]
    return text + "\n\nReferences\n" + "\n".join(sorted(cited))


def _p(value: float) -> str:
    from alliance_analysis.report.tables import format_p

    text = format_p(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _effect(results: Mapping[str, object], key: str) -> str | None:
    """``b = -1.58, 95% CI [-1.85, -1.32], p < .001`` for a ``<key>.estimate`` family."""
    if f"{key}.estimate" not in results:
        return None
    estimate, low, high = (results.get(f"{key}.{s}") for s in ("estimate", "ci_low", "ci_high"))
    text = f"b = {estimate:.2f}"
    if low is not None and high is not None:
        text += f", 95% CI [{low:.2f}, {high:.2f}]"
    p = results.get(f"{key}.p")
    return text + (f", {_p(p)}" if p is not None else "")


def results_paragraph(params: RunParams, results: Mapping[str, object]) -> str:
    """The headline results of a run in one paragraph, from its ``results.json``.

    Only numbers the run recorded are used; a sentence whose numbers are absent (e.g. a
    stage that did not run) is left out.
    """
    alliance, symptoms = (_abbreviation(params, params.alliance),
                          _abbreviation(params, params.symptoms))
    sentences = []
    if "clean.rows_input" in results:
        sentences.append(
            f"Of {results['clean.rows_input']} session records, {results['clean.rows_kept']} were "
            f"analysed ({results.get('clean.clients')} clients of "
            f"{results.get('clean.therapists')} therapists).")
    within = _effect(results, f"multilevel.within_between.{params.alliance}_within_lag1")
    between = _effect(results, f"multilevel.within_between.{params.alliance}_between")
    if within and between:
        sentences.append(
            f"Within clients, an alliance ({alliance}) rating one point above the client's own "
            f"mean was followed by a {symptoms} score at the next session that differed by "
            f"{within}; between clients, a one-point higher mean alliance went with a "
            f"difference of {between}.")
    icc = results.get(f"multilevel.therapist_effects.icc.{params.alliance}_total.therapist.icc")
    if icc is not None:
        prefix = f"multilevel.therapist_effects.icc.{params.alliance}_total.therapist"
        low, high = results.get(f"{prefix}.ci_low"), results.get(f"{prefix}.ci_high")
        interval = f" (95% CI [{low:.3f}, {high:.3f}])" if low is not None and high is not None \
            else ""
        sentences.append(f"Therapists accounted for {100 * icc:.1f}% of the variance in the "
                         f"alliance{interval}.")
    riclpm = results.get(f"sem.riclpm.{params.alliance}_to_{params.symptoms}.std_estimate")
    clpm = results.get(f"sem.clpm.{params.alliance}_to_{params.symptoms}.std_estimate")
    if riclpm is not None and clpm is not None:
        sentences.append(
            f"In the RI-CLPM the mean standardized within-person path from alliance to later "
            f"symptoms was {riclpm:.2f} (CLPM: {clpm:.2f}).")
    if "robustness.n_specifications" in results:
        share = results.get("robustness.share_preregistered_sign")
        significant = results.get("robustness.share_significant_same_sign")
        median = results.get("robustness.median_estimate")
        if share is not None and median is not None:
            sentences.append(
                f"Across {results['robustness.n_specifications']} specifications of the "
                f"analysis choices, {100 * share:.0f}% of the estimates had the preregistered "
                f"sign and {100 * (significant or 0):.0f}% were significant in that direction "
                f"(median estimate {median:.2f}).")
    if "change.rci.recovered.n" in results:
        sentences.append(
            f"By the end of treatment {results['change.rci.recovered.n']} clients "
            f"({results['change.rci.recovered.percent']}%) had recovered, "
            f"{results['change.rci.reliably_improved.n']} "
            f"({results['change.rci.reliably_improved.percent']}%) had reliably improved and "
            f"{results['change.rci.reliably_deteriorated.n']} "
            f"({results['change.rci.reliably_deteriorated.percent']}%) had reliably "
            f"deteriorated; {results.get('change.sudden_gains.n_clients', 0)} clients had a "
            f"sudden gain, {results.get('change.sudden_losses.n_clients', 0)} a sudden loss, "
            f"and {results.get('change.dropout.n', 0)} "
            f"({results.get('change.dropout.percent', 0)}%) dropped out.")
    return " ".join(sentences)
