"""Monte Carlo power for alliance study designs (project issue 11).

A researcher planning a study asks: with T therapists, C clients each, up to S sessions and
this much dropout, what power do I have to detect a within-client alliance effect of this
size, or therapist differences in alliance? Analytic formulas do not cover lagged,
person-mean-centred predictors with dropout and missing questionnaires, so the answer is
simulated (Muthén & Muthén, 2002; Arend & Schäfer, 2019): for every design point of a grid,
``replicates`` studies are drawn from :func:`alliance_analysis.data.simulate.simulate` with known
truth, each is analysed as the real study would be, and the share of significant results is
the power. The same replicates show whether the estimates are unbiased and their intervals
cover the truth as often as they claim (Morris, White & Crowther, 2019).

``alliance power params/power.yaml`` (:func:`alliance_analysis.cli.main_power`) and ``notebooks/power.ipynb`` run
:func:`run_power` and :func:`write_report`. The pieces: :mod:`alliance_analysis.power.params`
(the YAML parameters), :mod:`alliance_analysis.power.replicate` (one replicate: simulate,
fit, one row) and :mod:`alliance_analysis.power.run` (storing chunks, resuming, Dask).

References
----------
.. [1] Muthén, L. K., & Muthén, B. O. (2002). How to use a Monte Carlo study to decide on
   sample size and determine power. Structural Equation Modeling, 9(4), 599-620.
.. [2] Arend, M. G., & Schäfer, T. (2019). Statistical power in two-level models: A tutorial
   based on Monte Carlo simulation. Psychological Methods, 24(1), 1-19.
.. [3] Morris, T. P., White, I. R., & Crowther, M. J. (2019). Using simulation studies to
   evaluate statistical methods. Statistics in Medicine, 38(11), 2074-2102.
.. [4] Wilson, E. B. (1927). Probable inference, the law of succession, and statistical
   inference. Journal of the American Statistical Association, 22(158), 209-212.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from alliance_analysis.power.params import (SIZE_FIELDS, PowerParams)
from alliance_analysis.power.run import all_rows, execute
from alliance_analysis.data.simulate import SimulationDesign

#: Columns of :func:`performance` after the design point.
PERFORMANCE_COLUMNS = (
    "replicates", "converged", "convergence_rate", "power", "power_ci_low", "power_ci_high",
    "true_value", "mean_estimate", "bias", "bias_mcse", "rmse", "empirical_se", "model_se",
    "se_relative_error", "coverage", "coverage_mcse", "interval_rate")

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class PowerResult:
    """A finished power study.

    Attributes
    ----------
    params
        Its parameters.
    grid
        One row per design point (:func:`design_grid`).
    replicates
        Every replicate row (:data:`alliance_analysis.power.replicate.REPLICATE_COLUMNS`).
    summary
        ``grid`` joined with :func:`performance` per point.
    smallest
        :func:`smallest_adequate`: per scenario, the smallest design reaching the target.
    computed, reused
        Replicates computed by this call, and found already stored.
    """

    params: PowerParams
    grid: pd.DataFrame
    replicates: pd.DataFrame
    summary: pd.DataFrame
    smallest: pd.DataFrame
    computed: int
    reused: int


def wilson_interval(successes: int, n: int, level: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (statsmodels ``proportion_confint``,
    ``method="wilson"``).

    ``(x + z^2/2) / (n + z^2) +/- z sqrt(x (n - x) / n + z^2 / 4) / (n + z^2)``, clipped to
    [0, 1]; unlike the Wald interval it stays inside [0, 1] and keeps close to its level at
    proportions near 0 or 1, where power studies often are (Wilson, 1927). Missing for
    ``n = 0``.
    """
    if n == 0:
        return np.nan, np.nan
    low, high = proportion_confint(successes, n, alpha=1 - level, method="wilson")
    return float(low), float(high)


def performance(rows: pd.DataFrame, mc_ci_level: float = 0.95) -> pd.DataFrame:
    """Performance of the estimator and test at each design point, over converged replicates.

    Parameters
    ----------
    rows
        Replicate rows (:func:`alliance_analysis.power.replicate.run_chunk`).
    mc_ci_level
        Level of the Monte Carlo interval of power.

    Returns
    -------
    pandas.DataFrame
        One row per ``point`` with :data:`PERFORMANCE_COLUMNS`:

        - ``replicates``, ``converged`` (counts), ``convergence_rate``;
        - ``power``: share of converged replicates with p < alpha, with its Wilson interval
          ``power_ci_low``, ``power_ci_high`` (:func:`wilson_interval`);
        - ``true_value``, ``mean_estimate``, ``bias`` = mean(estimate) - truth and its Monte
          Carlo SE ``bias_mcse`` = empirical_se / sqrt(n);
        - ``rmse`` = sqrt(mean((estimate - truth)^2));
        - ``empirical_se``: SD of the estimates (n - 1); ``model_se``: root mean square of the
          model SEs (of the replicates that have one: a therapist variance estimated at zero
          has none); ``se_relative_error`` = model_se / empirical_se - 1 (negative: the
          model's SEs are too small);
        - ``coverage``: share of intervals containing the truth, among replicates with an
          interval, with ``coverage_mcse`` = sqrt(c (1 - c) / n); ``interval_rate``: share
          of converged replicates with an interval.

    Notes
    -----
    Formulas as in Morris, White & Crowther (2019, Table 6). Non-converged replicates are
    left out of every measure and counted in ``convergence_rate``: a study whose model does
    not converge would be refitted or simplified, not reported.
    """
    return pd.DataFrame([{"point": point, **_measures(group, mc_ci_level)}
                         for point, group in rows.groupby("point", sort=True)],
                        columns=["point", *PERFORMANCE_COLUMNS])


def _measures(group: pd.DataFrame, mc_ci_level: float) -> dict[str, Any]:
    ok = group[group["converged"]]
    n = len(ok)
    estimate, truth = ok["estimate"].to_numpy(float), float(group["true_value"].iloc[0])
    significant = int(ok["significant"].sum())
    covered = ok["covered"].dropna().astype(bool)
    empirical_se = float(np.std(estimate, ddof=1)) if n > 1 else np.nan
    se = ok["se"].dropna().to_numpy(float)
    model_se = float(np.sqrt(np.mean(se ** 2))) if se.size else np.nan
    coverage = float(covered.mean()) if len(covered) else np.nan
    low, high = wilson_interval(significant, n, mc_ci_level)
    return {
        "replicates": len(group), "converged": n, "convergence_rate": n / len(group),
        "power": significant / n if n else np.nan, "power_ci_low": low, "power_ci_high": high,
        "true_value": truth, "mean_estimate": float(estimate.mean()) if n else np.nan,
        "bias": float(estimate.mean() - truth) if n else np.nan,
        "bias_mcse": empirical_se / np.sqrt(n) if n else np.nan,
        "rmse": float(np.sqrt(np.mean((estimate - truth) ** 2))) if n else np.nan,
        "empirical_se": empirical_se, "model_se": model_se,
        "se_relative_error": model_se / empirical_se - 1 if n > 1 and se.size else np.nan,
        "coverage": coverage,
        "coverage_mcse": float(np.sqrt(coverage * (1 - coverage) / len(covered)))
        if len(covered) else np.nan,
        "interval_rate": len(covered) / n if n else np.nan,
    }


def design_grid(params: PowerParams) -> pd.DataFrame:
    """One row per design point: ``point``, therapists, clients per therapist, maximum
    sessions, every other design field given in the parameters, and ``clients``."""
    designs = params.design_points()
    fields = [*SIZE_FIELDS, *(f for f in SimulationDesign.model_fields
                              if f in params.design and f not in SIZE_FIELDS)]
    rows = [{"point": i, **{f: getattr(d, f) for f in fields},
             "clients": d.therapists * d.clients_per_therapist} for i, d in enumerate(designs)]
    return pd.DataFrame(rows)


def smallest_adequate(summary: pd.DataFrame, scenario_fields: list[str],
                      target_power: float) -> pd.DataFrame:
    """Per scenario, the smallest design whose power reaches ``target_power``.

    A *scenario* is a combination of the varying design fields that describe the population
    (effect sizes, ICCs, dropout, ...): every varying field except the size fields
    therapists, clients per therapist and maximum sessions. Within a scenario the smallest
    adequate design has the fewest clients, then the fewest planned sessions (clients x
    ``max_sessions``), then the fewest therapists, among the points whose estimated power is
    at least ``target_power``. ``ci_low_reaches_target`` says whether the Monte Carlo
    interval's lower end reaches it too (if not, more replicates are needed to be sure).

    Returns
    -------
    pandas.DataFrame
        The scenario fields, ``point`` (missing when no design of the grid reaches the
        target), ``therapists``, ``clients_per_therapist``, ``max_sessions``, ``clients``,
        ``power``, ``power_ci_low``, ``power_ci_high``, ``ci_low_reaches_target``, ``note``.
    """
    sizes = ["therapists", "clients_per_therapist", "max_sessions", "clients"]
    shown = ["point", *sizes, "power", "power_ci_low", "power_ci_high"]
    table = summary.assign(sessions_planned=summary["clients"] * summary["max_sessions"])
    groups = table.groupby(scenario_fields, sort=False) if scenario_fields else [((), table)]
    rows = []
    for key, group in groups:
        scenario = dict(zip(scenario_fields, key if isinstance(key, tuple) else (key,),
                            strict=True))
        adequate = group[group["power"] >= target_power].sort_values(
            ["clients", "sessions_planned", "therapists", "point"])
        if adequate.empty:
            rows.append({**scenario, "note": f"no design in the grid reaches power "
                         f"{target_power:g}; extend the grid"})
            continue
        best = adequate.iloc[0]
        rows.append({**scenario, **{c: best[c] for c in shown},
                     "ci_low_reaches_target": bool(best["power_ci_low"] >= target_power),
                     "note": ""})
    columns = [*scenario_fields, *shown, "ci_low_reaches_target", "note"]
    return pd.DataFrame(rows, columns=columns).astype(
        {**{c: "Int64" for c in ["point", *sizes]}, "ci_low_reaches_target": "boolean"})


def scenario_fields(params: PowerParams) -> list[str]:
    """The varying design fields that are not study-size fields."""
    return [f for f in params.varying_fields() if f not in SIZE_FIELDS]


def headline_table(result: PowerResult) -> pd.DataFrame:
    """The summary's main columns: the point, its varying fields, clients, power with its
    interval, bias, RMSE, coverage and convergence rate."""
    shown = ["point", *result.params.varying_fields(), "clients", "power", "power_ci_low",
             "power_ci_high", "bias", "rmse", "coverage", "convergence_rate"]
    return result.summary[list(dict.fromkeys(shown))]


def run_power(params: PowerParams, progress: bool = True) -> PowerResult:
    """Run (or resume) a power study and summarise it.

    Every replicate not yet stored in the output folder is computed and stored
    (:func:`alliance_analysis.power.run.execute`); the summary is then computed from the
    stored rows, so a resumed run and an uninterrupted one give identical results.

    Parameters
    ----------
    params
        The study (:func:`~alliance_analysis.power.params.load_power_params`).
    progress
        Show a progress bar.
    """
    designs = params.design_points()
    counts = execute(params, designs, progress=progress)
    rows = all_rows(params, designs)
    grid = design_grid(params)
    summary = grid.merge(performance(rows, params.mc_ci_level), on="point", how="left")
    return PowerResult(params, grid, rows, summary,
                       smallest_adequate(summary, scenario_fields(params), params.target_power),
                       counts.computed, counts.reused)


