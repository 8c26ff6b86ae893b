"""Writing the change stage (``05_change``) into the run folder: tables, captions, headline numbers."""

from __future__ import annotations

from typing import Any

import pandas as pd

from alliance_analysis.change.markers import ChangeReport
from alliance_analysis.report.plots import change_figures
from alliance_analysis.report.runfolder import RunFolder


def report_change(report: ChangeReport, run: RunFolder) -> dict[str, Any]:
    """Write a :class:`ChangeReport` to the run folder and record its headline numbers.

    Every table goes to ``tables/<name>.csv`` with its :class:`Caption` (title above, criteria
    as the note) in the APA-formatted ``.md``/``.tex``/``.html``; per-client and per-event
    listings are CSV only, their captions listed in ``tables/change_captions``. Each model
    gives ``tables/change_model_<name>`` (estimates) and ``tables/change_fit_<name>`` (fit
    statistics and warnings). The figures of
    :func:`alliance_analysis.report.plots.change_figures` go to ``figures/``, and
    :meth:`ChangeReport.headline` to ``results.json``.

    Returns
    -------
    dict
        The headline numbers as stored.
    """
    listings = {"change_reliable", "change_sudden_gains", "change_sudden_gains_clients",
                "change_ruptures", "change_rupture_counts", "change_dropout"}
    for name, table in report.tables.items():
        caption = report.captions[name]
        run.write_table(name, table, caption=caption.title, note=caption.note,
                        formatted=name not in listings)
    run.write_table("change_captions", pd.DataFrame(
        {"table": list(report.captions),
         "title": [c.title for c in report.captions.values()],
         "criteria": [c.note for c in report.captions.values()]}), formatted=False)
    for name, model in report.models.items():
        caption = report.captions[name]
        run.write_table(f"change_model_{name}", model.to_table(), caption=caption.title,
                        note=f"{caption.note} Model: {model.spec}.", flags=[model.flags()])
        run.write_table(f"change_fit_{name}", model.fit_table(), formatted=False,
                        flags=[model.flags()])
    for name, figure in change_figures(report, report.sessions, report.symptoms,
                                       report.alliance).items():
        run.write_figure(name, figure)
    return run.record(report.headline())
