"""Writing the change stage (``05_change``) into the run folder: tables, captions, headline numbers."""

from __future__ import annotations

from typing import Any

import pandas as pd

from alliance_analysis.change.markers import ChangeReport
from alliance_analysis.report.plots import axis_label, change_figures, example_trajectories
from alliance_analysis.report.runfolder import RunFolder

#: Per-client and per-event listings: CSV only (their captions are in ``change_captions``).
LISTINGS = frozenset({"change_reliable", "change_sudden_gains", "change_sudden_gains_clients",
                      "change_sudden_losses", "change_sudden_losses_clients",
                      "change_ruptures", "change_rupture_counts", "change_dropout"})


def report_change(report: ChangeReport, run: RunFolder) -> dict[str, Any]:
    """Write a :class:`ChangeReport` to the run folder and record its headline numbers.

    Every table goes to ``tables/<name>.csv`` with its :class:`Caption` (title above, criteria
    as the note) in the APA-formatted ``.md``/``.tex``/``.html``; per-client and per-event
    listings (:data:`LISTINGS`, among them ``change_sudden_losses``) are CSV only, their
    captions listed in ``tables/change_captions``. Each model gives
    ``tables/change_model_<name>`` (estimates) and ``tables/change_fit_<name>`` (fit
    statistics and warnings). The figures of
    :func:`alliance_analysis.report.plots.change_figures` go to ``figures/``, with
    ``change_sudden_losses`` (example trajectories) when there are sudden losses, and
    :meth:`ChangeReport.headline` to ``results.json``. The report's notes (e.g. an empty
    session table) are in every caption and flag every change table in the run's index, so
    the report page lists them among the warnings to read first.

    Returns
    -------
    dict
        The headline numbers as stored.
    """
    flags = [{"model": "change markers (05_change)", "converged": True, "singular": False,
              "warnings": list(report.notes)}] if report.notes else []
    for name, table in report.tables.items():
        caption = report.captions[name]
        run.write_table(name, table, caption=caption.title, note=caption.note,
                        formatted=name not in LISTINGS, flags=flags)
    run.write_table("change_captions", pd.DataFrame(
        {"table": list(report.captions),
         "title": [c.title for c in report.captions.values()],
         "criteria": [c.note for c in report.captions.values()]}), formatted=False,
        caption="Titles and criteria of the change tables")
    for name, model in report.models.items():
        caption = report.captions[name]
        run.write_table(f"change_model_{name}", model.to_table(), caption=caption.title,
                        note=f"{caption.note} Model: {model.spec}.", flags=[model.flags()])
        run.write_table(f"change_fit_{name}", model.fit_table(), formatted=False,
                        flags=[model.flags()], caption=f"Fit of the model: {caption.title}")
    figures = change_figures(report, report.sessions, report.symptoms, report.alliance)
    losses = report.tables["change_sudden_losses"]
    if len(losses):
        figures["change_sudden_losses"] = example_trajectories(
            report.sessions, report.symptoms.score_column(), losses, "postloss_session",
            axis_label(report.symptoms),
            "Sudden losses (circled: the first post-loss session)")
    for name, figure in figures.items():
        run.write_figure(name, figure, caption=_figure_caption(name, report))
    return run.record(report.headline())


def _figure_caption(name: str, report: ChangeReport) -> str:
    """The caption of one change figure (:func:`~alliance_analysis.report.plots.
    change_figures`)."""
    symptoms = report.symptoms.abbreviation()
    if name == "change_reliable":
        return (f"Reliable and clinically significant change in the {symptoms} (Jacobson & "
                "Truax, 1991): first against last score per client")
    if name == "change_sudden_gains":
        return f"Sample clients with a sudden gain in the {symptoms} (circled: the gain)"
    if name == "change_sudden_losses":
        return f"Sample clients with a sudden loss in the {symptoms} (circled: the loss)"
    if name.startswith("change_ruptures_"):
        criterion = name.removeprefix("change_ruptures_").removeprefix("sd")
        return (f"Sample clients with an alliance rupture ({criterion} SD below their own "
                "mean alliance)")
    if name.startswith("change_coefficients_"):
        model = name.removeprefix("change_coefficients_")
        title = report.captions[model].title if model in report.captions else model
        return f"Estimates with 95% CIs: {title}"
    return name.replace("_", " ")
