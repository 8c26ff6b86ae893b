"""Writing the describe stage (``02_describe``) into the run folder: its tables and figures."""

from __future__ import annotations

from matplotlib.figure import Figure

from alliance_analysis.data.describe import Description
from alliance_analysis.report import plots
from alliance_analysis.report.runfolder import RunFolder


def report_describe(description: Description, run: RunFolder) -> dict[str, Figure]:
    """Write every table and figure of :class:`~alliance_analysis.data.describe.Description`.

    Tables ``describe_sample``, ``describe_clients``, ``describe_attendance``,
    ``describe_missingness``, ``reliability``, ``describe_alliance_correlations``; figures
    ``attendance``, ``score_distributions``, ``trajectories_<symptoms>``,
    ``trajectories_<alliance>`` and ``<alliance>_by_therapist``; the headline counts go to
    ``results.json``.

    Returns
    -------
    dict
        The figures by name, for the notebook to show.
    """
    d = description
    run.write_table("describe_sample", d.sample, caption="Sample")
    run.record(d.headline())
    run.write_table("describe_clients", d.characteristics, caption="Client characteristics",
                    note=f"Counts below {d.min_cell_size} are suppressed.")
    run.write_table("describe_attendance", d.attendance, caption="Attendance by session")
    figures = plots.describe_figures(d.sessions, d.alliance, d.symptoms, d.instruments,
                                     d.attendance, d.trajectories, seed=d.seed)
    run.write_table("describe_missingness", d.missingness,
                    caption="Missing scores by session (%)")
    run.write_table("reliability", d.reliability, caption="Internal consistency",
                    note="Alpha with Feldt 95% CI; omega total from a one-factor model.")
    run.write_table("describe_alliance_correlations", d.correlations,
                    caption="Correlations of the alliance subscales")
    captions = {
        "attendance": "Clients attending each session",
        "score_distributions": "Distributions of the questionnaire scores over all sessions",
        f"trajectories_{d.symptoms.key}": f"{d.symptoms.abbreviation()} over sessions: "
        "sample clients and the mean with its 95% CI",
        f"trajectories_{d.alliance.key}": f"{d.alliance.abbreviation()} over sessions: "
        "sample clients and the mean with its 95% CI",
        f"{d.alliance.key}_by_therapist": f"{d.alliance.abbreviation()} by therapist",
    }
    for name, caption in captions.items():
        run.write_figure(name, figures[name], caption=caption)
    return figures
