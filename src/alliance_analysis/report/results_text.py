"""The headline results of a run in one paragraph of APA prose, from its ``results.json``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alliance_analysis.params import RunParams
from alliance_analysis.report.runrecord import RunRecord


def _count(n: Any) -> str:
    """An integer count with a thousands separator (APA), e.g. ``4,099``."""
    return f"{int(n):,}"


def _abbreviation(params: RunParams, key: str) -> str:
    """The short name of one of the run's instruments (``PHQ-9``)."""
    return next(i.abbreviation() for i in params.instrument_definitions() if i.key == key)


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


def results_paragraph(params: RunParams, results: Mapping[str, object] | None = None,
                      run_dir: str | Path | None = None) -> str:
    """The headline results of a run in one paragraph, from its ``results.json``.

    Only numbers the run recorded are used; a sentence whose numbers are absent (e.g. a
    stage that did not run) is left out. Numbers follow APA 7: estimates with two decimals,
    p without a leading zero (``p < .001``, ``p = .012``), counts with thousands separators.

    Parameters
    ----------
    params
        The run's parameters.
    results
        The run's headline numbers; when None they are read from ``run_dir``'s
        ``results.json``.
    run_dir
        The run folder, read when ``results`` is not given.
    """
    if results is None:
        results = RunRecord.read(run_dir).results if run_dir is not None else {}
    alliance, symptoms = (_abbreviation(params, params.alliance),
                          _abbreviation(params, params.symptoms))
    sentences = []
    if "clean.rows_input" in results:
        sentences.append(
            f"Of {_count(results['clean.rows_input'])} session records, "
            f"{_count(results['clean.rows_kept'])} were analysed "
            f"({results.get('clean.clients')} clients of {results.get('clean.therapists')} "
            "therapists).")
    within = _effect(results, f"multilevel.within_between.{params.alliance}_within_lag1")
    between = _effect(results, f"multilevel.within_between.{params.alliance}_between")
    if within and between:
        sentences.append(
            f"Within clients, an alliance ({alliance}) rating one point above the client's own "
            f"mean was followed by a {symptoms} score at the next session that differed by "
            f"{within}; between clients, a one-point higher mean alliance went with a "
            f"difference of {between}.")
    prefix = f"multilevel.therapist_effects.icc.{params.alliance}_total.therapist"
    icc = results.get(f"{prefix}.icc")
    if icc is not None:
        low, high = results.get(f"{prefix}.ci_low"), results.get(f"{prefix}.ci_high")
        interval = (f" (95% CI [{100 * low:.1f}%, {100 * high:.1f}%])"
                    if low is not None and high is not None else "")
        sentences.append(f"Therapists accounted for {100 * icc:.1f}% of the variance in the "
                         f"alliance{interval}.")
    sentences += _comparison_sentences(results)
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


def _comparison_sentences(results: Mapping[str, object]) -> list[str]:
    """``growth_arm fitted no better than growth, chi2(2) = 2.42, p = .298``, per test."""
    out = []
    names = sorted({key.rsplit(".", 1)[0] for key in results
                    if key.startswith("models.comparison.") and key.endswith(".chisq")})
    for key in names:
        chisq, df, p = (results.get(f"{key}.{s}") for s in ("chisq", "df", "p"))
        if chisq is None or df is None or p is None:
            continue
        smaller, _, larger = key.removeprefix("models.comparison.").partition(" vs ")
        verdict = "fitted better than" if p < 0.05 else "did not fit better than"
        out.append(f"In a likelihood-ratio test, {larger} {verdict} {smaller}, "
                   f"χ²({df:g}) = {chisq:.2f}, {_p(p)}.")
    return out
