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
    assert "statsmodels (Seabold" not in text  # the engine fits the models, not statsmodels
    assert "The model growth_arm, phq9_total ~ I(session - 1) * C(arm)" in text
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
