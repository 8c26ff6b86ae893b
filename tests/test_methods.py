"""The methods paragraph follows the parameters and cites what it names."""

from __future__ import annotations

from pathlib import Path

from alliance_analysis.report.methods import methods_paragraph
from alliance_analysis.params import load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_methods_paragraph_reflects_parameters() -> None:
    demo = load_params(ROOT / "params" / "demo.yaml")
    text = methods_paragraph(demo, {"python": "3.11.7", "statsmodels": "0.15.0"})
    assert "restricted maximum likelihood" in text and "PHQ-9 at session t+1" in text
    assert "Python 3.11.7" in text and "statsmodels 0.15.0" in text
    raw = demo.to_plain()
    raw["multilevel"] = {**raw["multilevel"], "reml": False, "lagged_outcome": True}
    raw["sem_models"]["alliance_symptoms"]["missing"] = "listwise"
    changed = methods_paragraph(parse_params(raw, base_dir=ROOT), {})
    assert "by maximum likelihood" in changed and "controlling for the symptom level" in changed
    assert "listwise deletion" in changed


def test_every_citation_has_its_reference() -> None:
    text = methods_paragraph(load_params(ROOT / "params" / "demo.yaml"), {})
    paragraph, references = text.split("\n\nReferences\n")
    for author in ("Jacobson", "Tang", "Stiles", "Hamaker", "Curran", "Bates", "Baldwin"):
        assert author in paragraph and any(r.startswith(author) for r in references.split("\n"))


def test_results_paragraph_uses_only_recorded_numbers() -> None:
    from alliance_analysis.report.methods import results_paragraph

    params = load_params(ROOT / "params" / "demo.yaml")
    results = {"clean.rows_input": 10, "clean.rows_kept": 9, "clean.clients": 3,
               "clean.therapists": 2,
               "multilevel.within_between.wai_within_lag1.estimate": -1.5,
               "multilevel.within_between.wai_within_lag1.ci_low": -2.0,
               "multilevel.within_between.wai_within_lag1.ci_high": -1.0,
               "multilevel.within_between.wai_within_lag1.p": 0.0001,
               "multilevel.within_between.wai_between.estimate": -4.0,
               "multilevel.within_between.wai_between.p": 0.03}
    text = results_paragraph(params, results)
    assert "Of 10 session records, 9 were analysed (3 clients of 2 therapists)." in text
    assert "b = -1.50, 95% CI [-2.00, -1.00], p < .001" in text and "b = -4.00, p = .030" in text
    assert "RI-CLPM" not in text and "recovered" not in text  # stages absent: no sentence
    assert results_paragraph(params, {}) == ""


def test_methods_name_the_fitter_the_own_models_and_the_scoring_rules() -> None:
    demo = load_params(ROOT / "params" / "demo.yaml")
    text = methods_paragraph(demo, {})
    assert "nested engine" in text and "Satterthwaite" in text and "Kuznetsova" in text
    # the engine fits the mixed models; statsmodels only the logistic and OLS regressions
    assert "mixed models), pandas" in text and "statsmodels 0.15.0" not in text
    assert ("Model growth_arm, phq9_total ~ I(session - 1) * C(arm) + (1 + I(session - 1) || "
            "client_id) + (1 | therapist_id) (lme4 notation; fixed part: I(session - 1) * "
            "C(arm); random part: a random intercept and an uncorrelated random slope of "
            "I(session - 1) over client_id; a random intercept over therapist_id), was fitted "
            "by REML with the nested engine, its fixed effects tested by t tests with "
            "Satterthwaite's degrees of freedom.") in text
    assert "Falkenström" not in text  # detrending and the lagged outcome are off
    assert "likelihood-ratio tests (growth with growth_arm)" in text
    raw = demo.to_plain()
    raw["scoring"] = {"phq9": {"min_items": 8, "rounding": "half_even"}}
    changed = methods_paragraph(parse_params(raw, base_dir=ROOT), {})
    assert ("PHQ-9 scores were prorated from at least 8 of 9 items and rounded half to even "
            "to whole points.") in changed


def test_methods_and_results_describe_the_specification_curve() -> None:
    from alliance_analysis.report.methods import results_paragraph

    params = load_params(ROOT / "params" / "demo.yaml")
    text = methods_paragraph(params, {})
    assert ("A specification curve (Simonsohn et al., 2020) refitted the model of "
            "{alliance}_within_lag1 in 48 specifications crossing alliance (4 options), "
            "covariates (3 options), random (2 options), rows (2 filters)") in text
    assert "Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020)" in text
    results = {"robustness.n_specifications": 32, "robustness.share_preregistered_sign": 1.0,
               "robustness.share_significant_same_sign": 0.9375,
               "robustness.median_estimate": -1.0635}
    assert ("Across 32 specifications of the analysis choices, 100% of the estimates had the "
            "preregistered sign and 94% were significant in that direction (median estimate "
            "-1.06).") in results_paragraph(params, results)


def _run_folder(folder: Path, singular: bool = False) -> Path:
    """A run folder as stages 01 and 03 write it: cleaning counts, one model, its flags."""
    import pandas as pd

    from alliance_analysis.report.runfolder import RunFolder

    clean = RunFolder(folder, "01_clean")
    clean.write_table("cleaning_summary", pd.DataFrame(
        {"rule": ["duplicate_identical", "prorated"], "rows_excluded": [3, 0]}),
        caption="Cleaning")
    clean.record({"clean.rows_input": 1203, "clean.rows_excluded": 3, "clean.rows_kept": 1200})
    stage = RunFolder(folder, "03_multilevel")
    flag = {"model": "growth", "converged": True, "singular": singular, "warnings": []}
    builtin = {"model": "therapist_effects", "converged": True, "singular": True,
               "warnings": ["SINGULAR FIT: therapist (Intercept) variance is ~0; simplify"]}
    stage.write_table("model_growth_fixed", pd.DataFrame({"term": ["x"], "estimate": [1.0]}),
                      note="Rows removed: 4 by where, 17 with a missing model variable.",
                      flags=[flag], caption="Fixed effects of growth")
    stage.write_table("multilevel_therapist_effects", pd.DataFrame({"term": ["x"]}),
                      flags=[builtin], caption="Therapist effects")
    stage.record({"models.growth.n_obs": 1179, "models.growth.converged": True,
                  "models.growth.singular": singular,
                  "multilevel.therapist_effects.fit.n_obs": 120})
    return folder


def test_methods_from_a_run_describe_what_was_fitted(tmp_path: Path) -> None:
    """With the run folder: only stages that ran, rows used and dropped, singular fits."""
    params = load_params(ROOT / "params" / "demo.yaml")
    text = methods_paragraph(params, {"semopy": "2.3.11"}, run_dir=_run_folder(tmp_path,
                                                                                singular=True))
    paragraph, references = text.split("\n\nReferences\n")
    assert ("Of 1,203 session records read, 3 were excluded (duplicate identical: 3) and "
            "1,200 were kept.") in paragraph
    assert "It used 1,179 rows; 17 with a missing model variable were left out" in paragraph
    assert "The fit was singular" in paragraph
    assert ("The fit of built-in model therapist_effects (therapist (Intercept) variance is "
            "~0) was singular") in paragraph
    # stages 04-06 did not run: no SEM, change or robustness sentences, nor their citations
    # nor statsmodels: no logistic or least-squares regression was fitted
    for absent in ("semopy", "Hamaker", "Jacobson", "Simonsohn", "Rosseel", "Tang",
                   "statsmodels", "Seabold"):
        assert absent not in text
    for author in ("Bates", "Kuznetsova", "Baldwin", "Curran"):
        assert author in paragraph and any(r.startswith(author) for r in references.split("\n"))
    assert len(references.split("\n")) == 4  # nothing cited that the text does not name


def test_falkenstrom_is_cited_only_for_the_options_that_follow_it() -> None:
    raw = load_params(ROOT / "params" / "demo.yaml").to_plain()
    raw["multilevel"] = {**raw["multilevel"], "detrend": True}
    text = methods_paragraph(parse_params(raw, base_dir=ROOT), {})
    assert "detrended within client (Falkenström et al., 2017)" in text
    assert "\nFalkenström, F., Finkel, S." in text


def test_results_paragraph_reads_the_run_folder(tmp_path: Path) -> None:
    from alliance_analysis.report.methods import results_paragraph

    params = load_params(ROOT / "params" / "demo.yaml")
    folder = _run_folder(tmp_path)
    assert results_paragraph(params, run_dir=folder).startswith(
        "Of 1,203 session records, 1,200 were analysed")
    comparison = {"models.comparison.growth vs growth_arm.chisq": 2.4194,
                  "models.comparison.growth vs growth_arm.df": 2.0,
                  "models.comparison.growth vs growth_arm.p": 0.29828}
    assert ("In a likelihood-ratio test, growth_arm did not fit better than growth, "
            "χ²(2) = 2.42, p = .298.") in results_paragraph(params, comparison)
