"""The figures of the pipeline's stages, each a function returning a matplotlib Figure.

Figures draw what they are given; they compute no statistics (the tables they draw come from
the analyses, e.g. :func:`alliance_analysis.data.describe.trajectory_summary`). The power
curve is in :mod:`alliance_analysis.report.power`, the tutorials' own pictures in
:mod:`alliance_analysis.teaching`.

Figures are built on :class:`matplotlib.figure.Figure` directly (not through pyplot), so
nothing global changes and a notebook shows each figure once. One seaborn theme and the
colour-blind-safe ``colorblind`` palette are applied inside each function (no global rcParams
are touched). :func:`save` (from :mod:`alliance_analysis.report.figure_files`, kept here for
the callers that draw and save) writes PNG (300 dpi) and SVG with fixed metadata, so the same
figure gives the same bytes.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, ParamSpec

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from alliance_analysis.instruments import Instrument
from alliance_analysis.report.figure_files import RC, save  # noqa: F401 - save re-exported
from alliance_analysis.results import ModelResult, is_estimated

PALETTE = sns.color_palette("colorblind")

P = ParamSpec("P")


@contextmanager
def theme() -> Iterator[None]:
    """The workbench's seaborn theme, applied only inside the ``with`` block."""
    with mpl.rc_context(RC), sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        yield


def themed(function: Callable[P, Figure]) -> Callable[P, Figure]:
    """Build the figure of ``function`` inside :func:`theme`."""
    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with theme():
            return function(*args, **kwargs)
    return wrapper


def axis_label(instrument: Instrument, subscale: str | None = None) -> str:
    """An axis label naming the instrument's short name, the score and its possible range."""
    low, high = instrument.total_range()
    short = instrument.abbreviation()
    what = "total" if subscale is None else subscale
    kind = "mean item score" if instrument.scoring == "mean" else "sum score"
    return f"{short} {what} ({kind}, {low:g}-{high:g})"


@themed
def trajectories(sessions: pd.DataFrame, instrument: Instrument, summary: pd.DataFrame,
                 n_clients: int = 40, seed: int = 0, ci_level: float = 0.95) -> Figure:
    """Individual trajectories of a score with the mean and its confidence band.

    Parameters
    ----------
    sessions
        The scored session table.
    instrument
        Whose total to plot.
    summary
        The mean at each session with its interval,
        :func:`alliance_analysis.data.describe.trajectory_summary` (figures draw, they do not
        compute).
    n_clients
        How many clients' own trajectories to draw (a seeded random sample), in grey.
    seed
        Seed of the sample.
    ci_level
        Level of the band around the session means (for the legend).
    """
    score = instrument.score_column()
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    clients = sessions["client_id"].drop_duplicates().sort_values().to_numpy()
    shown = np.random.default_rng(seed).choice(clients, min(n_clients, len(clients)),
                                               replace=False)
    for client in sorted(shown):
        one = sessions[sessions["client_id"] == client].dropna(subset=[score])
        ax.plot(one["session"], one[score], color="0.7", linewidth=0.7, alpha=0.8)
    ax.fill_between(summary["session"], summary["ci_low"], summary["ci_high"],
                    color=PALETTE[0], alpha=0.3, linewidth=0,
                    label=f"{100 * ci_level:g}% CI of the mean")
    ax.plot(summary["session"], summary["mean"], color=PALETTE[0], linewidth=2.2,
            label="mean of clients attending")
    low, high = instrument.total_range()
    ax.set(xlabel="session", ylabel=axis_label(instrument), ylim=(low, high))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best", frameon=True, fontsize="small",
              title=f"grey: {len(shown)} clients", title_fontsize="small")
    return fig


@themed
def alliance_by_therapist(sessions: pd.DataFrame, instrument: Instrument) -> Figure:
    """Mean alliance at each session for every therapist, beside the grand mean."""
    score = instrument.score_column()
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    means = sessions.groupby(["therapist_id", "session"])[score].mean().reset_index()
    for _, one in means.groupby("therapist_id"):
        ax.plot(one["session"], one[score], color=PALETTE[7], linewidth=0.8, alpha=0.6)
    grand = sessions.groupby("session")[score].mean()
    ax.plot(grand.index, grand.to_numpy(), color=PALETTE[1], linewidth=2.5,
            label="all clients")
    ax.plot([], [], color=PALETTE[7], linewidth=0.8, label="one therapist's clients")
    ax.set(xlabel="session", ylabel=axis_label(instrument))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="lower right", fontsize="small")
    return fig


@themed
def score_distributions(sessions: pd.DataFrame, instruments: Sequence[Instrument],
                        session: int = 1) -> Figure:
    """Histograms of each instrument's total at one session (default: the first)."""
    fig = Figure(figsize=(3.2 * len(instruments), 3.2), layout="constrained")
    axes = fig.subplots(1, len(instruments), squeeze=False)[0]
    at = sessions[sessions["session"] == session]
    for ax, instrument, colour in zip(axes, instruments, PALETTE, strict=False):
        values = at[instrument.score_column()].dropna()
        low, high = instrument.total_range()
        if instrument.scoring == "sum":  # one bar per possible total
            sns.histplot(values, ax=ax, color=colour, discrete=True)
        else:
            sns.histplot(values, ax=ax, color=colour, binrange=(low, high), bins=16)
        ax.set(xlabel=axis_label(instrument), ylabel="clients", xlim=(low - 0.5, high + 0.5)
               if instrument.scoring == "sum" else (low, high))
        ax.xaxis.label.set_size("small")
    fig.suptitle(f"Scores at session {session}", fontsize="medium")
    return fig


@themed
def attendance(table: pd.DataFrame) -> Figure:
    """Clients attending each session (bars) and clients ending there (line)."""
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(table["session"], table["clients"], color=PALETTE[0], label="clients attending")
    ax.plot(table["session"], table["last_session"], color=PALETTE[3], marker="o",
            markersize=3, label="clients whose last session this was")
    ax.set(xlabel="session", ylabel="clients")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper right", fontsize="small")
    return fig


@themed
def not_estimable(result: ModelResult) -> Figure:
    """A figure in place of one that needs estimates: the model's name and why it has none."""
    reason = "; ".join(w.removeprefix("NOT ESTIMABLE: ") for w in result.fit["warnings"]
                       if w.startswith("NOT ESTIMABLE")) or "no estimates"
    fig = Figure(figsize=(6.0, 1.6), layout="constrained")
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, f"{result.name}: not estimable\n" + textwrap.fill(reason, 70),
            ha="center", va="center", fontsize=10)
    return fig


def outcome_label(column: str, instruments: Sequence[Instrument] = ()) -> str:
    """A model outcome as an axis names it: an instrument's score with its unit and range
    (:func:`axis_label`, e.g. "PHQ-9 total (sum score, 0-27)"), else the column name."""
    for instrument in instruments:
        if column == instrument.score_column():
            return axis_label(instrument)
        for subscale in instrument.subscales:
            if column == instrument.score_column(subscale):
                return axis_label(instrument, subscale)
    return column


def outcome_of(result: ModelResult) -> str:
    """The outcome of a model from its formula (``spec``: ``outcome ~ ...``), or ''."""
    spec = result.spec if isinstance(result.spec, str) else ""
    return spec.split("~", 1)[0].strip() if "~" in spec and "=~" not in spec else ""


@themed
def coefficients(result: ModelResult, exclude: Sequence[str] = ("Intercept",),
                 outcome: str | None = None) -> Figure:
    """Coefficient plot of a model: each estimate with its confidence interval (a
    :func:`not_estimable` figure for a model without estimates).

    The x axis says what an estimate is, in the outcome's unit: the change in ``outcome``
    (default: the outcome of the model's formula; pass :func:`outcome_label` for the
    instrument's unit and range) per unit of each term, or the change in log odds for a
    logistic model.
    """
    if not is_estimated(result):
        return not_estimable(result)
    table = result.params[~result.params["term"].isin(exclude)].iloc[::-1]
    fig = Figure(figsize=(6.5, 0.45 * len(table) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(table))
    ax.errorbar(table["estimate"], y, xerr=[table["estimate"] - table["ci_low"],
                                            table["ci_high"] - table["estimate"]],
                fmt="o", color=PALETTE[0], ecolor=PALETTE[0], capsize=3)
    ax.axvline(0, color="0.3", linewidth=0.8, linestyle="--")
    ax.set_yticks(y, table["term"])
    outcome = outcome or outcome_of(result)
    if result.fit.get("family") == "binomial":
        what = f"log odds of {outcome}" if outcome else "log odds"
    else:
        what = f"change in {outcome}" if outcome else "estimate"
    ax.set(xlabel=f"{what} per unit of each term\n(point: estimate; bar: confidence "
                  "interval)", title=result.name)
    if not result.fit["converged"]:
        ax.set_title(f"{result.name} (did NOT converge)", color=PALETTE[3])
    return fig


def describe_figures(sessions: pd.DataFrame, alliance: Instrument, symptoms: Instrument,
                     instruments: Sequence[Instrument], attendance_table: pd.DataFrame,
                     summaries: Mapping[str, pd.DataFrame], seed: int) -> dict[str, Figure]:
    """The figures of ``02_describe`` by stable name.

    ``summaries`` holds each instrument's :func:`~alliance_analysis.data.describe.trajectory_summary`
    by instrument key (at least the alliance and the symptom measure).
    """
    return {
        f"trajectories_{symptoms.key}": trajectories(sessions, symptoms, summaries[symptoms.key],
                                                     seed=seed),
        f"trajectories_{alliance.key}": trajectories(sessions, alliance, summaries[alliance.key],
                                                     seed=seed),
        f"{alliance.key}_by_therapist": alliance_by_therapist(sessions, alliance),
        "score_distributions": score_distributions(sessions, instruments),
        "attendance": attendance(attendance_table),
    }



@themed
def caterpillar(intercepts: pd.DataFrame, ylabel: str, title: str = "") -> Figure:
    """Caterpillar plot: each group's random intercept with its interval, sorted.

    Parameters
    ----------
    intercepts
        ``group, estimate, ci_low, ci_high`` (e.g. ``extra["group_intercepts"]`` of a model).
    ylabel
        What the intercepts measure (the outcome's name and unit).
    title
        Figure title.
    """
    table = intercepts.sort_values("estimate").reset_index(drop=True)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(1, len(table) + 1)
    ax.errorbar(x, table["estimate"], yerr=[table["estimate"] - table["ci_low"],
                                            table["ci_high"] - table["estimate"]],
                fmt="o", markersize=3, color=PALETTE[0], ecolor=PALETTE[0], elinewidth=0.8)
    ax.axhline(0, color="0.3", linewidth=0.8, linestyle="--")
    level = str(table["level"].iloc[0]) if "level" in table and len(table) else "group"
    ax.set(xlabel=f"{level.replace('_id', '')}s, ranked by estimate",
           ylabel=f"deviation from the average {ylabel}", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


@themed
def within_between(result: ModelResult, alliance: Instrument, symptoms: Instrument) -> Figure:
    """The within-client and between-client alliance effects side by side, with intervals."""
    terms = {f"{alliance.key}_within_lag1": "within client\n(last session's deviation\n"
                                             "from own mean)",
             f"{alliance.key}_between": "between clients\n(client's mean alliance)"}
    table = result.params.set_index("term").loc[[t for t in terms if t in
                                                 set(result.params["term"])]]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(table))
    ax.errorbar(table["estimate"], y, xerr=[table["estimate"] - table["ci_low"],
                                            table["ci_high"] - table["estimate"]],
                fmt="o", markersize=7, color=PALETTE[2], ecolor=PALETTE[2], capsize=4)
    ax.axvline(0, color="0.3", linewidth=0.8, linestyle="--")
    ax.set_yticks(y, [terms[t] for t in table.index], fontsize="small")
    ax.set_ylim(-0.6, len(table) - 0.4)
    ax.set_xlabel(f"change in {symptoms.abbreviation()} per point of {alliance.abbreviation()}"
                  " (95% CI)")
    if not result.fit["converged"]:
        ax.set_title("did NOT converge", color=PALETTE[3])
    return fig


#: Colours of the reliable-change categories (colour-blind-safe palette).
CATEGORY_COLOURS = {"recovered": PALETTE[2], "reliably improved": PALETTE[0],
                    "unchanged": PALETTE[7], "reliably deteriorated": PALETTE[3]}


@themed
def reliable_change(table: pd.DataFrame, instrument: Instrument, threshold: float,
                    cutoff: float | None) -> Figure:
    """Pre-post scatter with the no-change line, the reliable-change band and the cut-off.

    Parameters
    ----------
    table
        Per-client ``pre, post, category`` (``change_reliable`` of the change report).
    instrument
        The symptom measure (for the axis labels and range).
    threshold
        Points of change that are reliable: the band is ``pre +/- threshold``.
    cutoff
        Clinical cut-off drawn on both axes (None: not drawn).

    References
    ----------
    .. [1] Jacobson, N. S., & Truax, P. (1991). Clinical significance: A statistical approach
       to defining meaningful change in psychotherapy research. *Journal of Consulting and
       Clinical Psychology, 59*(1), 12-19.
    """
    low, high = instrument.total_range()
    fig = Figure(figsize=(6.2, 5.6), layout="constrained")
    ax = fig.add_subplot()
    line = np.array([low, high])
    ax.fill_between(line, line - threshold, line + threshold, color="0.85",
                    label=f"no reliable change (+/-{threshold:g})")
    ax.plot(line, line, color="0.4", linewidth=0.8)
    if cutoff is not None:
        ax.axhline(cutoff, color="0.3", linestyle="--", linewidth=0.8)
        ax.axvline(cutoff, color="0.3", linestyle="--", linewidth=0.8,
                   label=f"clinical cut-off ({cutoff:g})")
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, (2, len(table)))
    for category, colour in CATEGORY_COLOURS.items():
        rows = (table["category"] == category).to_numpy()
        if rows.any():
            ax.scatter(table.loc[rows, "pre"] + jitter[0, rows],
                       table.loc[rows, "post"] + jitter[1, rows], s=12, color=colour,
                       alpha=0.8, label=f"{category} ({rows.sum()})")
    ax.set(xlim=(low, high), ylim=(low, high), xlabel=f"first: {axis_label(instrument)}",
           ylabel=f"last: {axis_label(instrument)}")
    ax.legend(loc="upper left", fontsize="x-small", frameon=True)
    return fig


@themed
def example_trajectories(sessions: pd.DataFrame, score: str, events: pd.DataFrame,
                         event_session: str, ylabel: str, title: str,
                         n_examples: int = 4) -> Figure:
    """A few clients' trajectories with their events marked (sudden gains, ruptures).

    Parameters
    ----------
    sessions
        The scored session table.
    score
        The score to draw.
    events
        One row per event with ``client_id`` and the column ``event_session``.
    event_session
        Column of ``events`` holding the session the event is marked at.
    ylabel, title
        Axis label and figure title.
    n_examples
        How many clients to draw: the first ones in client order that have an event.
    """
    clients = sorted(events["client_id"].drop_duplicates())[:n_examples]
    fig = Figure(figsize=(7.5, 2.2 * max(1, (len(clients) + 1) // 2) + 0.6),
                 layout="constrained")
    axes = fig.subplots(max(1, (len(clients) + 1) // 2), 2, squeeze=False, sharey=True)
    for ax, client in zip(axes.flat, clients, strict=False):
        one = sessions[sessions["client_id"] == client].dropna(subset=[score])
        ax.plot(one["session"], one[score], marker="o", markersize=3, color=PALETTE[0])
        marks = events.loc[events["client_id"] == client, event_session].dropna()
        ax.scatter(marks, one.set_index("session").reindex(marks.astype(int))[score],
                   s=60, facecolors="none", edgecolors=PALETTE[3], linewidths=1.5)
        ax.set_title(client, fontsize="small")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.flat[len(clients):]:
        ax.set_visible(False)
    fig.supxlabel("session", fontsize="small")
    fig.supylabel(ylabel, fontsize="small")
    fig.suptitle(title, fontsize="medium")
    return fig


def change_figures(report: Any, sessions: pd.DataFrame, symptoms: Instrument,
                   alliance: Instrument) -> dict[str, Figure]:
    """The figures of ``05_change`` by stable name, from a change report.

    ``change_reliable`` (pre-post scatter), ``change_sudden_gains`` and
    ``change_ruptures_<criterion>`` (example trajectories; only when such events exist), and
    ``change_coefficients_<model>`` (a coefficient plot of each model).
    """
    tables = report.tables
    figures = {"change_reliable": reliable_change(
        tables["change_reliable"], symptoms, report.criteria.threshold, report.criteria.cutoff)}
    gains = tables["change_sudden_gains"]
    if len(gains):
        figures["change_sudden_gains"] = example_trajectories(
            sessions, symptoms.score_column(), gains, "postgain_session",
            axis_label(symptoms), "Sudden gains (circled: the first post-gain session)")
    ruptures = tables["change_ruptures"]
    for criterion in sorted(ruptures["criterion"].unique()):
        events = ruptures[ruptures["criterion"] == criterion]
        figures[f"change_ruptures_{criterion}"] = example_trajectories(
            sessions, alliance.score_column(), events, "rupture_session", axis_label(alliance),
            f"Alliance ruptures, criterion {criterion} (circled: rupture sessions)")
    for name, model in report.models.items():
        figures[f"change_coefficients_{name}"] = coefficients(model)
    return figures


@themed
def panel_path_diagram(lagged: pd.DataFrame, model: str, x: str, x_label: str,
                       y_label: str, title: str = "") -> Figure:
    """Path diagram of a cross-lagged panel model with its standardized lagged paths.

    Drawn with matplotlib (no graphviz binary): one row of within-person variables per
    construct (top: ``x``, e.g. alliance; bottom: ``y``, e.g. symptoms), one column per wave,
    autoregressive arrows along the rows and cross-lagged arrows between them, each labelled
    with its standardized estimate; significant paths (p < .05) are solid, others dashed.

    Parameters
    ----------
    lagged
        :meth:`alliance_analysis.sem.panel.PanelComparison.lagged`.
    model
        ``"riclpm"`` (within-person paths) or ``"clpm"``.
    x
        The short name of the top-row variable in ``lagged["path"]`` (e.g. ``"wai"``).
    x_label, y_label
        Names of the two constructs.
    title
        Figure title.

    References
    ----------
    .. [1] Hamaker, E. L., Kuiper, R. M., & Grasman, R. P. P. P. (2015). A critique of the
       cross-lagged panel model. *Psychological Methods, 20*(1), 102-116.
    """
    paths = lagged[lagged["model"] == model]
    waves = sorted(set(paths["from_session"]) | set(paths["to_session"]))
    column = {wave: i for i, wave in enumerate(waves)}
    fig = Figure(figsize=(2.3 * len(waves) + 1.2, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    rows = {"x": 1.0, "y": 0.0}
    prefix = "w" if model == "riclpm" else ""
    for wave, i in column.items():
        for key, row in rows.items():
            ax.text(i, row, f"{prefix}{'A' if key == 'x' else 'S'}{wave}", ha="center",
                    va="center", fontsize="small",
                    bbox={"boxstyle": "circle,pad=0.45" if prefix else "square,pad=0.5",
                          "facecolor": PALETTE[0] if key == "x" else PALETTE[1],
                          "alpha": 0.25, "edgecolor": "0.3"})
    for path in paths.itertuples():
        source, target = path.path.split(" -> ")
        start = (column[path.from_session], rows["x" if source == x else "y"])
        end = (column[path.to_session], rows["x" if target == x else "y"])
        significant = bool(path.p < 0.05)
        ax.annotate("", xy=(end[0] - 0.17, end[1] + (0.12 if end[1] < start[1] else
                                                      -0.12 if end[1] > start[1] else 0)),
                    xytext=(start[0] + 0.17, start[1] + (-0.12 if end[1] < start[1] else
                                                         0.12 if end[1] > start[1] else 0)),
                    arrowprops={"arrowstyle": "->", "color": "0.2", "lw": 1.4,
                                "linestyle": "-" if significant else "--"})
        share = 0.5 if start[1] == end[1] else (0.3 if start[1] > end[1] else 0.7)
        label_x = start[0] + share * (end[0] - start[0])
        label_y = start[1] + share * (end[1] - start[1]) + (0.09 if start[1] == end[1] else 0)
        ax.text(label_x, label_y, f"{path.std_estimate:.2f}".replace("-0.00", "0.00"),
                ha="center", va="center",
                fontsize="x-small", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax.text(-0.55, 1.0, x_label, ha="right", va="center", fontsize="small")
    ax.text(-0.55, 0.0, y_label, ha="right", va="center", fontsize="small")
    ax.set_xlim(-1.9, len(waves) - 0.5)
    ax.set_ylim(-0.45, 1.45)
    note = ("within-person paths; random intercepts not shown" if model == "riclpm"
            else "observed scores")
    ax.set_title(title or f"{model.upper()} ({note}); standardized, dashed: p >= .05",
                 fontsize="small")
    return fig


def sem_figures(panel: Any, alliance: Instrument, symptoms: Instrument) -> dict[str, Figure]:
    """The path diagrams of ``04_sem`` by stable name: the RI-CLPM and the CLPM
    (``sem_riclpm_paths``, ``sem_clpm_paths``)."""
    lagged = panel.lagged()
    labels = (f"{alliance.abbreviation()} alliance", f"{symptoms.abbreviation()} symptoms")
    return {f"sem_{model}_paths": panel_path_diagram(lagged, model, panel.x, *labels)
            for model in ("riclpm", "clpm")}


def sem_coefficients(result: ModelResult, ops: Sequence[str] = ("~", "~1")) -> Figure:
    """Coefficient plot of an SEM's free structural paths and means (default), from its
    tidy parameters (``op`` column: ``~`` regressions, ``~1`` means, ``=~`` loadings)."""
    from dataclasses import replace

    keep = result.params["op"].isin(ops) & result.params["free"].astype(bool)
    return coefficients(replace(result, params=result.params[keep]), exclude=())


def _choice_label(value: Any, width: int = 56) -> str:
    """A dashboard row label: ``(none)`` for an empty choice, long values cut in the middle."""
    text = " ".join(str(value).split()) or "(none)"
    half = (width - 1) // 2
    return text if len(text) <= width else f"{text[:half]}…{text[-half:]}"


@themed
def specification_curve(curve: pd.DataFrame, choices: Mapping[str, Sequence[str]],
                        target_label: str, alpha: float = 0.05,
                        ci_level: float = 0.95) -> Figure:
    """The specification curve: every specification's estimate, sorted, above the choices it made.

    Top panel: the target coefficient of each specification with its confidence interval,
    sorted from the smallest estimate to the largest, coloured by sign and significance
    (p < ``alpha``); an open marker is a flagged fit (not converged or singular), the
    preregistered specification is ringed by a black diamond in a shaded column, and
    specifications that could not be estimated stand in a grey band at the right. Bottom
    panel (the "dashboard"): one row per value of every choice, grouped by choice (the row
    filters ``where`` as one more choice when the curve has them), with a mark in each
    specification's column on the value it used. Above ~60 specifications the marks and
    intervals become thin lines so that up to about 1,000 stay readable.

    Parameters
    ----------
    curve
        One row per specification (:func:`alliance_analysis.robustness.curve.run_curve`):
        ``spec_id``, a column per choice, ``where``, ``estimate, ci_low, ci_high, p,
        converged, singular, preregistered``.
    choices
        Each choice's values in the order to list them (``RobustnessSpec.choices``).
    target_label
        What the estimates are, in words, for the axis label.
    alpha
        Significance level of the colouring.
    ci_level
        Level of the intervals (for the axis label).

    References
    ----------
    .. [1] Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020). Specification curve
       analysis. *Nature Human Behaviour, 4*, 1208-1214.
    """
    groups = {name: list(values) for name, values in choices.items()}
    if "where" not in groups and "where" in curve and curve["where"].fillna("").astype(bool).any():
        groups["where"] = list(dict.fromkeys(curve["where"]))
    order = curve.sort_values(["estimate", "spec_id"], na_position="last", kind="stable")
    n = len(order)
    x = np.arange(1, n + 1)
    est = order["estimate"].to_numpy(dtype=float)
    estimated = np.isfinite(est)
    significant = estimated & (order["p"].to_numpy(dtype=float) < alpha)
    flagged = estimated & ~(order["converged"].astype(bool).to_numpy()
                            & ~order["singular"].astype(bool).to_numpy())
    categories = [(f"p < {alpha:g}, negative", significant & (est < 0), PALETTE[0]),
                  (f"p < {alpha:g}, positive", significant & (est > 0), PALETTE[3]),
                  ("not significant", estimated & ~significant, "0.55")]
    colours = np.tile(mpl.colors.to_rgba("0.75"), (n, 1))  # RGBA: grey when not estimable
    for _, mask, colour in categories:
        colours[mask] = mpl.colors.to_rgba(colour)
    size, line, shade = (22, 1.2, 1.0) if n <= 60 else (6, 0.7, 0.6) if n <= 250 else (2, 0.4,
                                                                                         0.4)
    rows: list[tuple[str, str | None, Any]] = []  # (label, choice name or None, value)
    for name, values in groups.items():
        rows.append(("filter (where)" if name == "where" else name, None, None))
        rows += [(_choice_label(value), name, value) for value in values]
    top_height, dash_height = 3.2, 0.19 * len(rows) + 0.5
    fig = Figure(figsize=(7.5, top_height + dash_height + 0.9), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True,
                               gridspec_kw={"height_ratios": [top_height, dash_height]})
    for label, mask, colour in categories:
        if not mask.any():
            continue
        top.vlines(x[mask], order["ci_low"].to_numpy()[mask], order["ci_high"].to_numpy()[mask],
                   colors=[colour], linewidth=line, alpha=shade)
        top.scatter(x[mask & ~flagged], est[mask & ~flagged], s=size, color=colour, zorder=3,
                    label=label)
        top.scatter(x[mask & flagged], est[mask & flagged], s=size, facecolors="white",
                    edgecolors=[colour], linewidths=0.9, zorder=3)
    if flagged.any():
        top.scatter([], [], s=size, facecolors="white", edgecolors="0.3",
                    label="flagged fit (not converged or singular)")
    top.axhline(0, color="0.3", linewidth=0.8, linestyle="--")
    if (~estimated).any():
        first = int(x[~estimated][0])
        top.axvspan(first - 0.5, n + 0.5, color="0.88", linewidth=0, zorder=0,
                    label=f"not estimable ({int((~estimated).sum())})")
        bottom.axvspan(first - 0.5, n + 0.5, color="0.88", linewidth=0, zorder=0)
    pre = order["preregistered"].astype(bool).to_numpy()
    if pre.any():
        at, half = int(x[pre][0]), max(0.5, n / 300)
        for ax in (top, bottom):
            ax.axvspan(at - half, at + half, color=PALETTE[8], alpha=0.35, linewidth=0,
                       zorder=0)
        top.scatter([at], [est[pre][0] if estimated[pre][0] else 0.0], marker="D",
                    s=max(3 * size, 45), facecolors="none", edgecolors="black",
                    linewidths=1.3, zorder=4, label="preregistered")
    top.set_ylabel(textwrap.fill(f"{target_label} (estimate, {100 * ci_level:g}% CI)", 42),
                   fontsize="small")
    top.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=3, fontsize="x-small",
               frameon=False, borderaxespad=0, handletextpad=0.3, columnspacing=1.0)
    top.tick_params(labelbottom=False)
    marker = {"marker": "s", "s": 16} if n <= 60 else {"marker": "|", "s": 30,
                                                        "linewidths": 0.7 if n <= 250 else 0.4}
    for row, (_, name, value) in enumerate(rows):
        if name is None:
            if row:
                bottom.axhline(-row + 0.5, color="0.6", linewidth=0.8)
            continue
        used = (order[name].fillna("") == value).to_numpy()
        bottom.scatter(x[used], np.full(int(used.sum()), -row), c=colours[used],
                       zorder=3, **marker)
    bottom.set_yticks(-np.arange(len(rows)), [label for label, _, _ in rows],
                      fontsize="x-small" if len(rows) > 12 else "small")
    for tick, (_, name, _) in zip(bottom.get_yticklabels(), rows, strict=True):
        tick.set_fontweight("bold" if name is None else "normal")
    bottom.set_ylim(-len(rows) + 0.4, 0.6)
    bottom.grid(axis="x", visible=False)
    bottom.set_xlim(0.5, n + 0.5)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlabel(f"specifications, ranked by estimate (n = {n})", fontsize="small")
    return fig
