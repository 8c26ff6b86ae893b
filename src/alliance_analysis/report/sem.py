"""Writing the SEM stage's tables and headline numbers into the run folder.

Each ``write_*`` function writes its tables under stable names (``tables/sem_*``, with a
caption; fit tables carry the note that their indices follow lavaan's conventions) and
records the headline numbers in ``results.json`` under stable keys (``sem.cfa.*``,
``sem.riclpm.*``, ``sem.clpm.*``, ``sem.panel.*``, ``sem.growth.*``), returning them so a
notebook cell shows what was stored.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from alliance_analysis.results import ModelResult
from alliance_analysis.report.runfolder import RunFolder
from alliance_analysis.sem.models import CfaComparison, fit_table
from alliance_analysis.sem.fit import FIT_NOTE
from alliance_analysis.report import plots
from alliance_analysis.sem.panel import PanelComparison, SemResults
from alliance_analysis.sem.specified import SpecifiedSem, parameter_table

#: Fit statistics recorded for every model.
_HEADLINE_FIT = ("n_obs", "chi2", "df", "p", "cfi", "tli", "rmsea", "srmr", "aic", "bic",
                 "converged")


def report_sem(results: SemResults, run: RunFolder) -> dict[str, Figure]:
    """Write the SEM stage: CFA, RI-CLPM/CLPM and growth tables, numbers and figures.

    An analysis the parameters do not list (``None`` in ``results``) writes nothing.
    Returns the figures by name (the path diagrams and the growth model's coefficient plot),
    for the notebook to show.
    """
    figures: dict[str, Figure] = {}
    flags: dict[str, list] = {}
    if results.cfa is not None:
        write_cfa(run, results.cfa)
    if results.panel is not None:
        write_panel(run, results.panel)
        figures.update(plots.sem_figures(results.panel, results.alliance, results.symptoms))
        flags.update({"sem_riclpm_paths": [results.panel.riclpm.flags()],
                      "sem_clpm_paths": [results.panel.clpm.flags()]})
    if results.growth is not None:
        write_growth(run, results.growth)
        figures["sem_coefficients_growth"] = plots.sem_coefficients(results.growth)
        flags["sem_coefficients_growth"] = [results.growth.flags()]
    captions = {
        "sem_riclpm_paths": "RI-CLPM of the alliance and symptom totals: standardized lagged "
        "paths between the within-person components (dashed: p >= .05)",
        "sem_clpm_paths": "CLPM of the alliance and symptom totals: standardized lagged paths "
        "between the observed scores (dashed: p >= .05)",
        "sem_coefficients_growth": "Latent growth of symptoms: estimates with 95% CIs, early "
        "alliance predicting the intercept and the slope",
    }
    for name, figure in figures.items():
        run.write_figure(name, figure, caption=captions[name], flags=flags[name])
    return figures


def write_cfa(run: RunFolder, cfa: CfaComparison) -> dict[str, Any]:
    """Write ``sem_cfa_fit``, ``sem_cfa_loadings``, ``sem_cfa_omega``; record ``sem.cfa.*``."""
    first = next(iter(cfa.results.values()))
    what = f"the alliance items at session {cfa.session} ({first.fit['estimator']})"
    flags = [result.flags() for result in cfa.results.values()]
    run.write_table("sem_cfa_fit", cfa.fit_table(), caption=f"Fit of three CFAs of {what}",
                    note=_fit_note(cfa.results), flags=flags)
    run.write_table("sem_cfa_loadings", cfa.loadings(),
                    caption=f"Loadings of the CFAs of {what}",
                    note="std_estimate: completely standardized loading (lavaan std.all).",
                    flags=flags)
    run.write_table("sem_cfa_omega", cfa.omega, flags=flags,
                    caption=f"Omega from the CFAs of {what}",
                    note="omega_total: share of the sum score's variance due to all common "
                    "factors; omega_h (bifactor): due to the general factor (total score) or "
                    "to the specific factor (subscale) alone (McDonald 1999; Reise 2012).")
    values: dict[str, Any] = {"sem.cfa.session": cfa.session,
                              "sem.cfa.estimator": first.fit["estimator"]}
    for name, result in cfa.results.items():
        values.update(_fit_values(f"sem.cfa.{name}", result))
    for row in cfa.omega.loc[cfa.omega["scale"] == "total"].itertuples(index=False):
        values[f"sem.cfa.{row.model}.omega_total"] = row.omega_total
        if row.model == "bifactor":
            values[f"sem.cfa.{row.model}.omega_h"] = row.omega_h
    return run.record(values)


def write_panel(run: RunFolder, panel: PanelComparison) -> dict[str, Any]:
    """Write ``sem_riclpm``, ``sem_clpm``, ``sem_panel_fit``, ``sem_panel_lagged``; record.

    Keys: ``sem.<model>.<fit statistic>``; ``sem.<model>.<from>_to_<to>.std_estimate``
    and ``.estimate`` (mean over the lags), ``.n_significant``; per lag
    ``sem.<model>.<from>_to_<to>.s<a>_s<b>.{estimate,std_estimate,p}`` for the
    cross-lagged paths; ``sem.panel.{chi2_diff,df_diff,p_diff}``.
    """
    sessions = ", ".join(str(w) for w in panel.waves)
    std_note = "std_estimate: lavaan's std.all."
    flags = [panel.riclpm.flags(), panel.clpm.flags()]
    run.write_table("sem_riclpm", panel.riclpm.to_table(), flags=flags[:1],
                    caption=f"RI-CLPM of {panel.x} and {panel.y}, sessions {sessions}",
                    note=std_note)
    run.write_table("sem_clpm", panel.clpm.to_table(), flags=flags[1:],
                    caption=f"CLPM of {panel.x} and {panel.y}, sessions {sessions}",
                    note=std_note)
    run.write_table("sem_panel_fit", panel.fit_table(), flags=flags,
                    caption=f"Fit of the RI-CLPM and CLPM, sessions {sessions}",
                    note=_fit_note({"riclpm": panel.riclpm, "clpm": panel.clpm}))
    lagged = panel.lagged()
    run.write_table("sem_panel_lagged", lagged, flags=flags,
                    caption=f"Lagged paths of {panel.x} and {panel.y}, sessions {sessions}",
                    note="In the RI-CLPM the paths link within-person components (w_...). "
                    + std_note)
    values: dict[str, Any] = {}
    for name, result in (("riclpm", panel.riclpm), ("clpm", panel.clpm)):
        values.update(_fit_values(f"sem.{name}", result))
    for row in panel.summary().itertuples(index=False):
        key = f"sem.{row.model}.{row.path.replace(' -> ', '_to_')}"
        values[f"{key}.estimate"] = row.mean_estimate
        values[f"{key}.std_estimate"] = row.mean_std_estimate
        values[f"{key}.n_significant"] = int(row.n_significant)
    for row in lagged.loc[lagged["kind"] == "cross-lagged"].itertuples(index=False):
        key = (f"sem.{row.model}.{row.path.replace(' -> ', '_to_')}"
               f".s{row.from_session}_s{row.to_session}")
        values.update({f"{key}.estimate": row.estimate,
                       f"{key}.std_estimate": row.std_estimate, f"{key}.p": row.p})
    values.update({f"sem.panel.{k}": v for k, v in panel.comparison().items()
                   if k in ("chi2_diff", "df_diff", "p_diff")})
    return run.record(values)


def write_growth(run: RunFolder, growth: ModelResult) -> dict[str, Any]:
    """Write ``sem_growth`` and ``sem_growth_fit``; record ``sem.growth.*``.

    Keys: the fit statistics, ``icept_mean``, ``slope_mean`` and
    ``slope_on_early_alliance.{estimate,se,p,std_estimate}``.
    """
    run.write_table("sem_growth", growth.to_table(), flags=[growth.flags()],
                    caption="Latent growth of symptoms with early alliance as predictor",
                    note="Early alliance is centred at its mean over clients. "
                    "std_estimate: lavaan's std.all.")
    run.write_table("sem_growth_fit", fit_table({"growth": growth}), flags=[growth.flags()],
                    caption="Fit of the latent growth model", note=_fit_note({"growth": growth}))
    params = growth.params.set_index("term")
    predictor = growth.params.loc[(growth.params["lhs"] == "slope")
                                  & (growth.params["op"] == "~"), "term"].iloc[0]
    values = _fit_values("sem.growth", growth)
    values["sem.growth.icept_mean"] = params.loc["icept ~1", "estimate"]
    values["sem.growth.slope_mean"] = params.loc["slope ~1", "estimate"]
    for column in ("estimate", "se", "p", "std_estimate"):
        values[f"sem.growth.slope_on_early_alliance.{column}"] = params.loc[predictor, column]
    return run.record(values)


def _fit_note(results: dict[str, ModelResult]) -> str:
    """The fit tables' note: lavaan conventions, plus any estimator-specific remark."""
    notes = dict.fromkeys(result.fit.get("note", FIT_NOTE) for result in results.values())
    return " ".join(notes)


def _fit_values(prefix: str, result: ModelResult) -> dict[str, Any]:
    """The headline fit statistics of one model under ``<prefix>.<statistic>``."""
    return {f"{prefix}.{key}": result.fit[key] for key in _HEADLINE_FIT}


#: lavaan's names of the fit measures in ``tables/sem_<name>_fit.csv``, from our fit keys.
LAVAAN_FIT_NAMES = {"chi2": "chisq", "df": "df", "p": "pvalue", "chisq_scaled": "chisq_scaled",
                    "df_scaled": "df_scaled", "pvalue_scaled": "pvalue_scaled",
                    "scaling_factor": "scaling_factor", "cfi": "cfi", "tli": "tli",
                    "rmsea": "rmsea", "rmsea_ci_low": "rmsea_ci_low",
                    "rmsea_ci_high": "rmsea_ci_high", "cfi_scaled": "cfi_scaled",
                    "tli_scaled": "tli_scaled", "rmsea_scaled": "rmsea_scaled",
                    "cfi_robust": "cfi_robust", "tli_robust": "tli_robust",
                    "rmsea_robust": "rmsea_robust", "srmr": "srmr", "loglik": "loglik",
                    "aic": "aic", "bic": "bic", "npar": "npar", "n_obs": "n_obs",
                    "estimator": "estimator", "missing": "missing", "converged": "converged"}


def sem_fit_row(name: str, result: ModelResult) -> pd.DataFrame:
    """One row of fit measures under lavaan's names (those the estimator gives)."""
    row = {"model": name}
    row.update({lavaan: result.fit[ours] for ours, lavaan in LAVAAN_FIT_NAMES.items()
                if ours in result.fit})
    if result.fit.get("group"):
        row["groups"] = "; ".join(f"{k + 1} = {label}" for k, label in
                                  enumerate(result.fit["group_labels"]))
    row["warnings"] = "; ".join(result.fit.get("warnings", []))
    return pd.DataFrame([row])


def syntax_table(syntax: str) -> pd.DataFrame:
    """The model syntax as fitted, one statement per row (``line, statement``), comments
    kept, so that it can be read in the report and pasted into lavaan."""
    lines = [line.rstrip() for line in syntax.strip().splitlines() if line.strip()]
    return pd.DataFrame({"line": range(1, len(lines) + 1), "statement": lines})


def report_sem_models(results: SpecifiedSem, run: RunFolder) -> pd.DataFrame:
    """Write each of the researcher's SEMs (``sem_models:``): syntax, fit, parameters, tests.

    Per model: ``tables/sem_<name>_syntax.csv`` (the lavaan syntax fitted, one statement per
    row; for invariance models the least constrained level's), ``tables/sem_<name>_fit.csv``
    (one row under lavaan's fit-measure names; with ``invariance:`` one row per level with
    the comparison and verdict), ``tables/sem_<name>_params.csv`` (``lhs, op, rhs, group,
    label, est, se, z, p, std_all``; ``level`` added for invariance models; ``group`` is the
    group number, named in the fit table's ``groups``), for a multigroup RI-CLPM or CLPM
    ``tables/sem_<name>_lagged_test.csv`` (the lagged paths free vs equal over the groups),
    and ``results.json`` keys ``sem.<name>.<measure>``. Returns the fit rows of all models,
    for the notebook to show.
    """
    rows = []
    for name, result in results.results.items():
        spec = results.specs[name]
        title = spec.label or name
        where = (f"session {spec.session}" if spec.session is not None else
                 f"sessions {', '.join(map(str, spec.sessions or spec.waves or ()))}")
        if spec.group:
            where += f", in each group of {spec.group}"
        flags = [result.flags()]
        fit = sem_fit_row(name, result)
        params = parameter_table(result)
        run.write_table(f"sem_{name}_syntax", syntax_table(result.spec),
                        caption=f"Model syntax of {title} (lavaan)",
                        note="The syntax as fitted"
                        + (" at the configural level (each level adds equality constraints)"
                           if name in results.invariance else "")
                        + "; it can be pasted into lavaan::sem() with the same data.")
        if name in results.invariance:
            fits, table = results.invariance[name]
            flags = [f.flags() for f in fits.values()]
            fit = table.assign(model=name)[["model", *table.columns]]
            params = pd.concat([parameter_table(f).assign(level=lvl)
                                for lvl, f in fits.items()], ignore_index=True)
            run.record({f"sem.{name}.{row.level}.{k}": getattr(row, k)
                        for row in table.itertuples()
                        for k in ("chisq", "df", "cfi", "rmsea", "chisq_diff", "df_diff",
                                  "p_diff", "delta_cfi", "delta_rmsea")})
            over = f"the groups of {spec.group}" if spec.group else where
            run.write_table(f"sem_{name}_fit", fit, flags=flags,
                            caption=f"Measurement invariance of {title} over {over}",
                            note="Each level against the one before: chi-square difference "
                                 "(Satorra-Bentler scaled under MLR), delta CFI and delta "
                                 "RMSEA (robust ones under MLR), verdict by Chen's (2007) "
                                 "cut-offs (delta CFI >= -.010 and delta RMSEA <= .015). "
                                 + _groups_note(result) + FIT_NOTE)
            run.write_table(f"sem_{name}_params", params, flags=flags,
                            caption=f"Parameters of {title} at each invariance level")
            rows.append(fit)
            continue
        run.write_table(f"sem_{name}_fit", fit, flags=flags, caption=f"Fit of {title} ({where})",
                        note=_groups_note(result) + result.fit.get("note", FIT_NOTE))
        run.write_table(f"sem_{name}_params", params, flags=flags,
                        caption=f"Parameters of {title} ({where})",
                        note="std_all: completely standardized (lavaan's std.all); the model "
                             f"syntax is in table sem_{name}_syntax.")
        run.record({f"sem.{name}.{k}": v for k, v in fit.iloc[0].items()
                    if k not in ("model", "warnings", "groups")})
        if name in results.comparisons:
            fits, test = results.comparisons[name]
            run.write_table(f"sem_{name}_lagged_test", test.assign(model=name)[
                ["model", *test.columns]], flags=[f.flags() for f in fits.values()],
                caption=f"Are the lagged paths of {title} equal over the groups of "
                        f"{spec.group}?",
                note="Mulder & Hamaker (2021), extension 2: the model with every lagged path "
                     "free in each group against the model with each lagged path equal over "
                     "the groups; chi-square difference (Satorra-Bentler scaled under MLR). "
                     + _groups_note(result))
            last = test.iloc[-1]
            run.record({f"sem.{name}.lagged_equal.{k}": last[k]
                        for k in ("chisq_diff", "df_diff", "p_diff", "delta_cfi",
                                  "delta_rmsea")})
        rows.append(fit)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _groups_note(result: ModelResult) -> str:
    """``Groups: 1 = CBT (n = 190), 2 = PDT (n = 188). `` for a multigroup fit, else ''."""
    if not result.fit.get("group"):
        return ""
    sizes = result.fit.get("n_obs_groups") or [None] * len(result.fit["group_labels"])
    named = [f"{k + 1} = {label}" + (f" (n = {n})" if n is not None else "")
             for k, (label, n) in enumerate(zip(result.fit["group_labels"], sizes))]
    return f"Groups of {result.fit['group']}: {', '.join(named)}. "
