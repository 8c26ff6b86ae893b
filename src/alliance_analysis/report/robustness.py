"""Writing the robustness stage (``06_robustness``): the specification curve's tables, figure,
headline numbers and its reading in plain words.

For a ``robustness:`` section (:class:`~alliance_analysis.specs.RobustnessSpec`) fitted by
:func:`alliance_analysis.robustness.curve.run_curve` and summarised by
:func:`~alliance_analysis.robustness.curve.summarize`:

* ``tables/robustness_specifications``: one row per specification, :data:`SPECIFICATION_COLUMNS`
  with the choices in place of ``choices`` (``where`` only when the section gives filters);
* ``tables/robustness_summary``: the curve in one row
  (:data:`~alliance_analysis.robustness.curve.SUMMARY_COLUMNS`);
* ``tables/robustness_joint_test``: the joint test under the null, when it was run;
* ``figures/robustness_curve``: :func:`alliance_analysis.report.plots.specification_curve`;
* ``results.json``: ``robustness.<key>`` for each of :data:`RECORDED`, and
  ``robustness.joint_test.<column>`` for every number of the joint test.

Every specification that did not converge, had a singular fit or could not be estimated is
flagged in the run's index (``outputs.json``), so the report page lists it among the warnings.

References
----------
Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020). Specification curve analysis.
*Nature Human Behaviour*, 4, 1208-1214.
Steegen, S., Tuerlinckx, F., Gelman, A., & Vanpaemel, W. (2016). Increasing transparency
through a multiverse analysis. *Perspectives on Psychological Science*, 11, 702-712.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from alliance_analysis.report import plots
from alliance_analysis.report.runfolder import RunFolder
from alliance_analysis.results import OPTIMIZER_NOTE
from alliance_analysis.specs import RobustnessSpec

#: Columns of ``tables/robustness_specifications``; ``choices`` stands for the choice columns,
#: ``where`` is left out when the section gives no filters.
SPECIFICATION_COLUMNS = ("spec_id", "choices", "where", "estimate", "se", "ci_low", "ci_high",
                         "df", "p", "n_obs", "converged", "singular", "preregistered",
                         "formula", "warnings")
#: Summary columns recorded in ``results.json`` as ``robustness.<column>``.
RECORDED = ("n_specifications", "n_estimated", "n_flagged", "median_estimate", "min_estimate",
            "max_estimate", "share_preregistered_sign", "share_significant_same_sign",
            "preregistered_estimate", "preregistered_rank")
#: Above this many specifications the table is written as CSV only (no APA .md/.tex/.html).
MAX_FORMATTED_ROWS = 200

_KIND = re.compile(r"^(?P<base>.+?)_(?P<kind>within|between)(?:_lag(?P<lag>\d+))?$")


def target_label(robustness: RobustnessSpec) -> str:
    """The studied coefficient in words, from the section's ``target``.

    ``{alliance}_within_lag1`` reads "within-client effect of the previous session's
    alliance", ``{alliance}_between`` "between-client effect of alliance" (the
    placeholder's name stands for its values); any other target reads "coefficient of
    <target>".
    """
    target = robustness.target.replace("{", "").replace("}", "")
    match = _KIND.match(target)
    if match is None:
        return f"coefficient of {target}"
    base, kind, lag = match["base"].replace("_", " "), match["kind"], match["lag"]
    if kind == "between":
        return f"between-client effect of {base}"
    if lag is None:
        return f"within-client effect of {base}"
    if lag == "1":
        return f"within-client effect of the previous session's {base}"
    return f"within-client effect of {base} {lag} sessions earlier"


def all_choices(robustness: RobustnessSpec) -> dict[str, tuple[str, ...]]:
    """Every choice and its values in the listed order, with the filters as ``where``."""
    return {**robustness.choices, **({"where": robustness.where} if robustness.where else {})}


def specifications_table(curve: pd.DataFrame, robustness: RobustnessSpec) -> pd.DataFrame:
    """The curve with the columns of ``tables/robustness_specifications`` in their order
    (:data:`SPECIFICATION_COLUMNS`)."""
    columns: list[str] = []
    for column in SPECIFICATION_COLUMNS:
        if column == "choices":
            columns += list(robustness.choices)
        elif column != "where" or robustness.where:
            columns.append(column)
    table = curve.loc[:, columns].reset_index(drop=True)
    return table.astype({"n_obs": "Int64"})  # whole numbers, empty when not estimable


def specification_flags(curve: pd.DataFrame, robustness: RobustnessSpec
                        ) -> list[dict[str, Any]]:
    """A flag (``model, converged, singular, warnings``) for every specification that did not
    converge, had a singular fit, could not be estimated or has warnings (optimizer notes
    left out), named by its number and choices, for the run's index
    (:meth:`~alliance_analysis.report.runfolder.RunFolder.outputs`)."""
    flags = []
    for _, row in curve.iterrows():
        text = str(row["warnings"] or "")
        notes = [text] if text.startswith("NOT ESTIMABLE") else [
            w for w in text.split("; ") if w and not OPTIMIZER_NOTE.match(w)]
        converged, singular = bool(row["converged"]), bool(row["singular"])
        if converged and not singular and not notes:
            continue
        chosen = ", ".join(f"{c}={_shown(row[c])}" for c in robustness.choices)
        if row.get("where"):
            chosen += f", where={row['where']}"
        flags.append({"model": f"robustness specification {row['spec_id']} ({chosen})",
                      "converged": converged, "singular": singular, "warnings": notes})
    return flags


def _shown(value: Any) -> str:
    return repr(value) if value == "" else str(value)


def _number(value: float, digits: int = 2) -> str:
    """A number for prose, with a true minus sign."""
    return f"{value:.{digits}f}".replace("-", "\u2212")


def _percent(share: float) -> str:
    """A share as a percentage; one decimal when rounding would say 0% or 100% wrongly."""
    text = f"{share:.0%}"
    if text in ("0%", "100%") and 0 < share < 1:
        text = f"{share:.1%}"
    return text


def _level(alpha: float) -> str:
    """A significance level as APA writes it (``.05``)."""
    return f"{alpha:g}".removeprefix("0")


def _ordinal(rank: int) -> str:
    suffix = "th" if 10 <= rank % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(rank % 10, "th")
    return f"{rank}{suffix}"


def _finite(value: Any) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(float(value))


def reading(summary: pd.DataFrame, robustness: RobustnessSpec, alpha: float = 0.05) -> str:
    """The specification curve in one plain-language paragraph, for the key findings.

    Parameters
    ----------
    summary
        :func:`alliance_analysis.robustness.curve.summarize` (one row).
    robustness
        The ``robustness:`` section (for the target's name and the preregistered choices).
    alpha
        The significance level ``summary`` was computed with.

    Returns
    -------
    str
        For example: "Across 32 specifications, the within-client effect of the previous
        session's alliance was negative in 100% (median −1.06, range −1.61 to −0.98); 100%
        were significant (p < .05) in that direction. The preregistered specification (−1.59)
        ranks 5th of 32, counting from the smallest estimate." Specifications without an
        estimate are counted ("Across 72 specifications (60 could be estimated), ... in 80%
        of those estimated"), flagged ones named at the end.
    """
    row = summary.iloc[0]
    n, n_estimated = int(row["n_specifications"]), int(row["n_estimated"])
    label = target_label(robustness)
    if n_estimated == 0:
        return (f"None of the {n} specifications of the {label} could be estimated; see "
                "the warnings in tables/robustness_specifications.")
    sign = row["preregistered_sign"]
    direction = "negative" if sign < 0 else "positive" if sign > 0 else "zero"
    reference = ("" if _finite(row["preregistered_estimate"])
                 else " (the sign of the median: no preregistered estimate)")
    some = "" if n_estimated == n else f" ({n_estimated} could be estimated)"
    of = "" if n_estimated == n else " of those estimated"
    text = (f"Across {n} specifications{some}, the {label} was {direction}{reference} in "
            f"{_percent(row['share_preregistered_sign'])}{of} (median "
            f"{_number(row['median_estimate'])}, range {_number(row['min_estimate'])} to "
            f"{_number(row['max_estimate'])}); {_percent(row['share_significant_same_sign'])} "
            f"were significant (p < {_level(alpha)}) in that direction.")
    if _finite(row["preregistered_estimate"]) and _finite(row["preregistered_rank"]):
        text += (f" The preregistered specification ({_number(row['preregistered_estimate'])})"
                 f" ranks {_ordinal(int(row['preregistered_rank']))} of {n_estimated}, "
                 "counting from the smallest estimate.")
    elif robustness.preregistered is not None:
        text += " The preregistered specification could not be estimated."
    flagged = int(row["n_flagged"])
    if flagged:
        text += (f" {flagged} specification{'s were' if flagged > 1 else ' was'} flagged (not "
                 "estimable, not converged or a singular fit): read the warnings in "
                 "tables/robustness_specifications.")
    return text


def _spec_note(robustness: RobustnessSpec, ci_level: float) -> str:
    crossed = " x ".join(f"{name} ({len(values)})" for name, values in
                         all_choices(robustness).items())
    return (f"One row per specification: every combination of the choices {crossed}. "
            f"estimate, se, {100 * ci_level:g}% CI, Satterthwaite df and p of the target "
            f"coefficient ({robustness.target}), each model fitted by {'REML' if robustness.reml else 'ML'} "
            "on the nested engine; n_obs: rows used. A specification the data cannot identify "
            "has no estimate and its reason under warnings. preregistered: the planned "
            "specification. Simonsohn, Simmons & Nelson (2020).")


def report_robustness(curve: pd.DataFrame, summary: pd.DataFrame, robustness: RobustnessSpec,
                      run: RunFolder, joint: pd.DataFrame | None = None, *,
                      ci_level: float = 0.95, alpha: float = 0.05) -> dict[str, Any]:
    """Write the specification curve to the run folder and record its headline numbers.

    Parameters
    ----------
    curve
        :func:`alliance_analysis.robustness.curve.run_curve`: one row per specification.
    summary
        :func:`alliance_analysis.robustness.curve.summarize` of ``curve``.
    robustness
        The ``robustness:`` section that was fitted.
    run
        The run folder.
    joint
        The joint test under the null (one row), written as ``tables/robustness_joint_test``
        and recorded as ``robustness.joint_test.<column>``; None: not run.
    ci_level
        Level of the intervals in ``curve`` (``multilevel.ci_level``), for the captions.
    alpha
        Significance level of ``summary``, for the captions and the figure's colours.

    Returns
    -------
    dict
        The headline numbers as stored in ``results.json`` (see the module notes).

    Notes
    -----
    ``share_preregistered_sign`` is the share of the estimated specifications with the
    preregistered estimate's sign (the median's without one),
    ``share_significant_same_sign`` the share with p < ``alpha`` in that direction, and
    ``preregistered_rank`` the preregistered estimate's place among the estimates sorted
    from the smallest (1).

    References
    ----------
    .. [1] Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020). Specification curve
       analysis. *Nature Human Behaviour, 4*, 1208-1214.
    """
    flags = specification_flags(curve, robustness)
    label = target_label(robustness)
    table = specifications_table(curve, robustness)
    run.write_table("robustness_specifications", table, flags=flags,
                    formatted=len(table) <= MAX_FORMATTED_ROWS,
                    caption=f"Specification curve: the {label} in every specification",
                    note=_spec_note(robustness, ci_level))
    run.write_table(
        "robustness_summary", summary, flags=flags,
        caption=f"Robustness of the {label} across {len(curve)} specifications",
        note="n_estimated: specifications with an estimate; n_flagged: not estimable, not "
             "converged or singular. share_preregistered_sign: share of the estimates with "
             "the preregistered specification's sign (the median's without one); "
             f"share_significant_same_sign: share with p < {_level(alpha)} in that direction; "
             "preregistered_rank: its place among the estimates sorted from the smallest (1). "
             "Simonsohn, Simmons & Nelson (2020).")
    run.write_figure("robustness_curve", plots.specification_curve(
        curve, all_choices(robustness), label, alpha=alpha, ci_level=ci_level),
        caption=f"Specification curve (Simonsohn et al., 2020): the {label} in every "
                f"specification, sorted, with its {100 * ci_level:g}% CI (top), and the choices "
                "each made (bottom)", flags=flags)
    row = summary.iloc[0]
    values: dict[str, Any] = {f"robustness.{key}": row[key] for key in RECORDED}
    if joint is not None:
        resamples = f" on {robustness.joint_test} resamples" if robustness.joint_test else ""
        run.write_table(
            "robustness_joint_test", joint, flags=flags,
            caption="Joint test of the specification curve under the null",
            note=f"The observed curve compared with curves re-estimated{resamples} of data "
                 "from which the target effect was removed (Simonsohn, Simmons & Nelson, "
                 "2020).")
        for column, value in joint.iloc[0].items():
            if isinstance(value, (int, float, np.integer, np.floating, bool, np.bool_)):
                values[f"robustness.joint_test.{column}"] = value
    return run.record(values)
