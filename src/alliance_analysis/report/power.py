"""The report of a Monte Carlo power study: its tables, power curve and headline numbers.

The study itself (:mod:`alliance_analysis.power`) computes; this module draws and writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from alliance_analysis.power.params import TARGET_LABELS, PowerParams
from alliance_analysis.power.study import PowerResult
from alliance_analysis.report.plots import PALETTE, themed
from alliance_analysis.report.runfolder import RunFolder

#: Marker of each line of the power curve, in turn.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@themed
def power_curve(summary: pd.DataFrame, params: PowerParams) -> Figure:
    """Power against the number of clients, one line per combination of the other fields.

    The x axis is the total number of clients (therapists x clients per therapist); each
    line joins the design points that differ only in clients per therapist (or, when that is
    fixed, in therapists), labelled by the other varying fields (effect size, ICC, ...).
    Error bars are the Monte Carlo (Wilson) intervals, each line's points nudged sideways
    by up to 1% of the axis so that the bars do not hide one another; the dashed line is
    the target power, the dotted one alpha (the power of a test of a zero effect).
    """
    varying = params.varying_fields()
    along = next((f for f in ("clients_per_therapist", "therapists") if f in varying), None)
    others = [f for f in varying if f != along]
    fig = Figure(figsize=(7, 4.4), layout="constrained")
    ax = fig.add_subplot()
    groups = list(summary.groupby(others, sort=False)) if others else [((), summary)]
    span = float(summary["clients"].max() - summary["clients"].min()) or 1.0
    for k, (key, line) in enumerate(groups):
        values = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{f} = {v:g}" for f, v in zip(others, values, strict=True))
        line = line.sort_values("clients")
        nudge = 0.02 * span * (k / (len(groups) - 1) - 0.5) if len(groups) > 1 else 0.0
        errors = np.clip(np.vstack([line["power"] - line["power_ci_low"],
                                    line["power_ci_high"] - line["power"]]), 0, None)
        ax.errorbar(line["clients"] + nudge, line["power"], yerr=errors,
                    color=PALETTE[k % len(PALETTE)], marker=_MARKERS[k % len(_MARKERS)],
                    capsize=3, linewidth=1.6, label=label or "power")
    ax.axhline(params.target_power, color="0.3", linestyle="--", linewidth=1,
               label=f"target power {params.target_power:g}")
    ax.axhline(params.alpha, color="0.5", linestyle=":", linewidth=1,
               label=f"alpha {params.alpha:g}")
    ax.set(xlabel="clients (therapists x clients per therapist)", ylabel="power",
           ylim=(0, 1.02), title=f"Power for the {TARGET_LABELS[params.target_term()]} "
                                 f"({params.replicates} replicates per design)")
    ax.legend(loc="lower right", fontsize="small", frameon=True)
    return fig


def write_report(result: PowerResult) -> RunFolder:
    """Write the study's tables, figure and headline numbers to its output folder.

    ``tables/power_grid``, ``power_summary``, ``power_smallest`` (CSV and APA Markdown, TeX,
    HTML), ``tables/power_replicates.csv`` (every replicate), ``figures/power_curve.png``
    and ``.svg``, and ``results.json`` keys ``power.p<point>.<measure>`` and
    ``power.smallest.<k>.<column>`` (written afresh, so no key of an earlier grid stays).
    Same stored replicates, same bytes.
    """
    params = result.params
    folder = RunFolder(params.output_dir())
    folder.results_file.unlink(missing_ok=True)
    folder.write_table("power_grid", result.grid, caption="Design points of the power study")
    folder.write_table(
        "power_summary", result.summary,
        caption=f"Monte Carlo power for the {TARGET_LABELS[params.target_term()]} "
                f"({params.target_term()}, model {params.model}, engine {params.engine})",
        note=f"{params.replicates} replicates per design point; power = share of converged "
             f"replicates with p < {params.alpha:g}, with a {params.mc_ci_level:.0%} Wilson "
             f"interval; coverage of {100 * params.multilevel.ci_level:g}% intervals.")
    folder.write_table("power_smallest", result.smallest,
                       caption=f"Smallest design reaching power {params.target_power:g}")
    folder.write_table("power_replicates", result.replicates, formatted=False,
                       caption="Every replicate of the power study")
    folder.write_figure("power_curve", power_curve(result.summary, params),
                        caption="Power by design point, with its Monte Carlo 95% CI")
    folder.record(_headlines(result))
    return folder


def _headlines(result: PowerResult) -> dict[str, Any]:
    measures = ("power", "power_ci_low", "power_ci_high", "bias", "rmse", "coverage",
                "convergence_rate")
    values = {f"power.p{row.point:03d}.{m}": getattr(row, m)
              for row in result.summary.itertuples() for m in measures}
    for k, row in enumerate(result.smallest.to_dict("records")):
        values |= {f"power.smallest.{k}.{c}": None if pd.isna(row[c]) else row[c]
                   for c in ("point", "clients", "power")}
    return values

