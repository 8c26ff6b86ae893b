"""Helpers for the student tutorials (``notebooks/tutorials/``): recovering known truths.

Each tutorial simulates data whose true parameters are known, runs the workbench's own
methods on it, and sets the truth beside the estimates. What the tutorials need beyond the
rest of the package lives here, so that a notebook cell is one call a test can reach:

* :func:`scored_sessions`: :func:`alliance_analysis.data.simulate.simulate` taken through the
  realistic route (raw items -> :func:`alliance_analysis.data.prepare.prepare` -> scored table) in
  a temporary folder that is removed afterwards;
* :func:`truth_table`: the tidy ``parameter, true_value, estimate, ci_low, ci_high, covered``
  table every tutorial ends its analysis with, fed by :func:`estimate` (a model term) and
  :func:`icc_estimate` (a level of an ICC table);
* tutorial 1 (within or between): :func:`naive_pooled`, :func:`pooled_blend`,
  :func:`within_between_picture`;
* tutorial 2 (therapist effects): :func:`therapist_sd_for_icc`, :func:`design_iccs`,
  :func:`icc_meaning` (with :func:`design_effect`, :func:`therapist_mean_reliability`),
  :func:`therapist_client_model`, :func:`compare_designs`;
* tutorial 3 (RI-CLPM vs CLPM): :func:`panel_truth_table`, :func:`clpm_limits` (the panel
  itself comes from :func:`alliance_analysis.data.simulate.simulate` with a
  :class:`~alliance_analysis.data.simulate.PanelDesign`);
* tutorial 4 (change markers): :func:`plant_events`, :func:`planted_vs_detected`,
  :func:`chance_events`, :func:`chance_reliable_change`.

References
----------
.. [1] Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
   between-person effects in longitudinal models of change. Annual Review of Psychology, 62,
   583-619.
.. [2] Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling alliance-outcome
   correlations: Exploring the relative importance of therapist and patient variability in
   the alliance. Journal of Consulting and Clinical Psychology, 75(6), 842-852.
.. [3] Hamaker, E. L., Kuiper, R. M., & Grasman, R. P. P. P. (2015). A critique of the
   cross-lagged panel model. Psychological Methods, 20(1), 102-116.
.. [4] Tang, T. Z., & DeRubeis, R. J. (1999). Sudden gains and critical sessions in
   cognitive-behavioral therapy for depression. Journal of Consulting and Clinical
   Psychology, 67(6), 894-904.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats
from statsmodels.regression.linear_model import OLS

from alliance_analysis.multilevel import derive
from alliance_analysis.multilevel.derive import CLIENT, THERAPIST, score_column
from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.multilevel.icc import null_model_iccs
from alliance_analysis.multilevel.mixedfit import fit_mixed
from alliance_analysis.multilevel.models import fixed_effect_difference, random_part
from alliance_analysis.options import MultilevelOptions
from alliance_analysis.params import parse_params
from alliance_analysis.report.plots import PALETTE, themed
from alliance_analysis.data.prepare import prepare
from alliance_analysis.results import ModelResult
from alliance_analysis.sem.panel import PanelComparison
from alliance_analysis.data.simulate import PanelDesign, SimulationDesign, simulate, write
from alliance_analysis.data.simulate_panel import panel_covariances

#: Columns of :func:`truth_table`.
TRUTH_COLUMNS = ("parameter", "true_value", "estimate", "ci_low", "ci_high", "covered")


# --- shared --------------------------------------------------------------------------------

def scored_sessions(design: SimulationDesign, seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Simulate a study and clean and score it as a real run would; nothing is left on disk.

    :func:`~alliance_analysis.data.simulate.simulate` writes raw items with three planted
    data-entry faults; :func:`~alliance_analysis.data.prepare.prepare` reads them, cleans them
    (the faults are fixed or excluded, as the ledger would show), pseudonymises the IDs and
    scores ``wai_total`` and ``phq9_total``, all inside a temporary folder.

    Returns
    -------
    (sessions, truth)
        The canonical scored session table and the simulation's ``truth`` dictionary.
    """
    sim = simulate(design, seed)
    with tempfile.TemporaryDirectory(prefix="alliance-tutorial-") as tmp:
        raw = write(sim, Path(tmp) / "raw")["sessions"]
        params = parse_params({"name": "tutorial", "data": {"path": str(raw)},
                               "instruments": ["wai", "phq9"], "seed": seed}, Path(tmp),
                              source="tutorial")
        sessions = prepare(params, Path(tmp) / "processed").sessions
    return sessions, sim.truth


def truth_table(rows: Iterable[tuple[str, float, float, float, float]]) -> pd.DataFrame:
    """Truth beside estimate: ``parameter, true_value, estimate, ci_low, ci_high, covered``.

    ``rows`` are ``(parameter, true_value, estimate, ci_low, ci_high)``; ``covered`` says
    whether the interval contains the true value (missing when there is no interval). Over
    many simulated datasets a 95% interval should cover the truth in about 95 of 100.
    """
    table = pd.DataFrame(list(rows), columns=list(TRUTH_COLUMNS[:-1]))
    has_ci = table["ci_low"].notna() & table["ci_high"].notna()
    inside = (table["ci_low"] <= table["true_value"]) & (table["true_value"] <= table["ci_high"])
    return table.assign(covered=inside.astype("boolean").where(has_ci))


def estimate(result: ModelResult, term: str) -> tuple[float, float, float]:
    """``(estimate, ci_low, ci_high)`` of one term of a model result."""
    row = result.params.set_index("term").loc[term]
    return float(row["estimate"]), float(row["ci_low"]), float(row["ci_high"])


# --- tutorial 1: within or between? -------------------------------------------------------

def _lagged(sessions: pd.DataFrame, alliance: str) -> pd.DataFrame:
    """Sessions in order with ``<alliance>_between``, ``_within`` and their lags."""
    frame = derive.person_mean_centre(derive.in_session_order(sessions), alliance)
    return derive.add_lag(frame, [score_column(alliance), f"{alliance}_within"])


def naive_pooled(sessions: pd.DataFrame, alliance: str, symptoms: str,
                 ci_level: float = 0.95) -> ModelResult:
    """The naive pooled regression: symptoms on last session's alliance, clients ignored.

    Ordinary least squares of ``<symptoms>_total ~ session + <alliance>_lag1`` over all
    sessions with a previous alliance score, as if every session came from a different
    person. The slope of ``<alliance>_lag1`` (the raw score, not split into a client mean
    and a deviation) blends the within-client and between-client effects (see
    :func:`pooled_blend`), and its standard error is too small because sessions of one
    client are not independent. It is shown to be taken apart, not to be used.

    Returns
    -------
    ModelResult
        Named ``naive_pooled``; terms ``(Intercept)``, ``session`` (coded 0 at session 1)
        and ``<alliance>_lag1``; ``fit`` holds ``n_obs``, ``n_clients``, ``r2``.
    """
    lag, outcome = f"{alliance}_lag1", score_column(symptoms)
    frame = _lagged(sessions, alliance).dropna(subset=[lag, outcome])
    x = pd.DataFrame({"(Intercept)": 1.0, "session": frame["session"] - 1.0,
                      lag: frame[lag].astype(float)})
    fitted = OLS(frame[outcome].astype(float), x).fit()
    ci = fitted.conf_int(alpha=1 - ci_level)
    params = pd.DataFrame({"term": x.columns, "estimate": fitted.params.to_numpy(),
                           "se": fitted.bse.to_numpy(), "ci_low": ci[0].to_numpy(),
                           "ci_high": ci[1].to_numpy(), "p": fitted.pvalues.to_numpy()})
    fit = {"n_obs": int(fitted.nobs), "n_clients": int(frame[CLIENT].nunique()),
           "n_therapists": int(frame[THERAPIST].nunique()), "r2": float(fitted.rsquared),
           "converged": True,
           "warnings": ["naive: sessions treated as independent; the SE is too small"]}
    return ModelResult("naive_pooled", params, fit,
                       f"{outcome} ~ session + {lag} [OLS, sessions pooled over clients]")


def pooled_blend(sessions: pd.DataFrame, alliance: str, within: float,
                 between: float) -> dict[str, float]:
    """What the naive pooled slope should be, given the true within and between effects.

    Last session's alliance is the client's mean plus last session's deviation from it,
    ``x = B + W``. If symptoms depend on them as ``within * W + between * B``, the
    least-squares slope of symptoms on ``x`` is

        ``slope = (1 - s) * within + s * between``,  ``s = cov(B, x) / var(x)``,

    the share of the variance of ``x`` that lies between clients (close to the alliance's
    client-level ICC). Computed over the rows the naive regression uses.

    Returns
    -------
    dict
        ``between_share`` (s) and ``expected_slope``.
    """
    lag, between_col = f"{alliance}_lag1", f"{alliance}_between"
    frame = _lagged(sessions, alliance).dropna(subset=[lag])
    x, b = frame[lag].astype(float), frame[between_col].astype(float)
    share = float(np.cov(b, x)[0, 1] / x.var())
    return {"between_share": share, "expected_slope": (1 - share) * within + share * between}


@themed
def within_between_picture(sessions: pd.DataFrame, result: ModelResult, naive: ModelResult,
                           alliance: str, symptoms: str, n_clients: int = 6,
                           seed: int = 0) -> Figure:
    """Curran & Bauer's picture: one slope between clients, another within each client.

    Grey dots are clients' means (last session's alliance, symptoms); the thick line has the
    estimated between-client slope through them. A few clients' own sessions are drawn in
    colour with the estimated within-client slope through each client's mean, and the
    dashed line is the naive pooled slope.
    """
    lag, outcome = f"{alliance}_lag1", score_column(symptoms)
    data = _lagged(sessions, alliance).dropna(subset=[lag, outcome])
    means = data.groupby(CLIENT)[[lag, outcome]].mean()
    between = estimate(result, f"{alliance}_between")[0]
    within = estimate(result, f"{alliance}_within_lag1")[0]
    pooled = estimate(naive, lag)[0]
    fig = Figure(figsize=(7.5, 5.4), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(means[lag], means[outcome], s=12, color="0.65", label="client means")
    centre = means.mean()
    xs = np.array([means[lag].min(), means[lag].max()])
    ax.plot(xs, centre[outcome] + between * (xs - centre[lag]), color=PALETTE[1],
            linewidth=3, label=f"between clients: {between:+.2f} per point")
    ax.plot(xs, centre[outcome] + pooled * (xs - centre[lag]), color="0.1", linestyle="--",
            linewidth=1.5, label=f"naive pooled: {pooled:+.2f} per point")
    rng = np.random.default_rng(seed)
    shown = sorted(rng.choice(means.index.to_numpy(), min(n_clients, len(means)),
                              replace=False))
    colours = [c for i, c in enumerate(PALETTE) if i not in (1, 3, 7)]  # not orange or grey
    for colour, client in zip(colours, shown, strict=False):
        one = data[data[CLIENT] == client]
        ax.scatter(one[lag], one[outcome], s=14, color=colour, alpha=0.7)
        span = np.array([one[lag].min(), one[lag].max()])
        ax.plot(span, means.loc[client, outcome] + within * (span - means.loc[client, lag]),
                color=colour, linewidth=2)
    ax.plot([], [], color=colours[0], linewidth=2,
            label=f"within a client: {within:+.2f} per point ({len(shown)} clients shown)")
    ax.set(xlabel=f"{alliance} at the previous session", ylabel=f"{outcome} this session")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, fontsize="small",
              frameon=False)
    return fig


# --- tutorial 2: therapist effects --------------------------------------------------------

def therapist_sd_for_icc(icc: float, client_sd: float, session_sd: float) -> float:
    """The therapist SD that gives a therapist ICC of ``icc`` with the other two SDs.

    Solves ``t^2 / (t^2 + client_sd^2 + session_sd^2) = icc`` for ``t``.

    Raises
    ------
    AllianceParamsError
        When ``icc`` is not in [0, 1).
    """
    if not 0 <= icc < 1:
        raise AllianceParamsError(f"the therapist ICC must be in [0, 1); got {icc!r}")
    return float(np.sqrt(icc / (1 - icc) * (client_sd ** 2 + session_sd ** 2)))


def design_iccs(design: SimulationDesign) -> dict[str, float]:
    """True ICCs of the latent session alliance in a simulation design.

    ``therapist = t^2 / (t^2 + c^2 + s^2)`` and ``client = c^2 / (...)`` with the design's
    ``alliance_therapist_sd``, ``alliance_client_sd`` and ``alliance_session_sd``. These are
    ICCs of the *error-free* alliance; the questionnaire score adds item noise and a ceiling
    at 5 at the session level, so the ICCs of ``wai_total`` are somewhat lower (about a
    tenth lower with the default item noise).
    """
    t2, c2 = design.alliance_therapist_sd ** 2, design.alliance_client_sd ** 2
    total = t2 + c2 + design.alliance_session_sd ** 2
    return {"therapist": t2 / total, "client": c2 / total}


def design_effect(icc: float, cluster_size: float) -> float:
    """Kish's design effect ``1 + (m - 1) * icc`` of clusters of ``m`` (e.g. clients per
    therapist): how much larger the sampling variance of a mean is than if all observations
    were independent, so ``n / deff`` is the effective sample size."""
    return 1 + (cluster_size - 1) * icc


def therapist_mean_reliability(icc: float, n_clients: float) -> float:
    """Spearman-Brown reliability of a therapist's mean over ``n_clients`` clients,
    ``m * icc / (1 + (m - 1) * icc)``, where ``icc`` is the therapist share of the variance
    of client-level scores: how well the mean of a caseload ranks therapists."""
    return n_clients * icc / (1 + (n_clients - 1) * icc)


def icc_estimate(iccs: pd.DataFrame, level: str) -> tuple[float, float, float]:
    """``(icc, ci_low, ci_high)`` of one level of an ICC table
    (:func:`alliance_analysis.multilevel.icc.null_model_iccs`)."""
    row = iccs.set_index("level").loc[level]
    return float(row["icc"]), float(row["ci_low"]), float(row["ci_high"])


def icc_meaning(icc: float, clients_per_therapist: int) -> pd.DataFrame:
    """What a therapist ICC means, in numbers a student can picture.

    Treats each client as contributing one score whose variance is ``icc`` between
    therapists and ``1 - icc`` within them.

    Returns
    -------
    pandas.DataFrame
        ``quantity, value`` rows: the therapist SD in SDs of the score (``sqrt(icc)``); the
        gap between therapists at the 90th and 10th percentiles (``2 * 1.2816 * sqrt(icc)``
        SDs); the correlation of two clients of one therapist (``icc``); the design effect
        and the effective number of independent clients per therapist
        (:func:`design_effect`); and the reliability of one therapist's caseload mean
        (:func:`therapist_mean_reliability`).
    """
    m = clients_per_therapist
    deff = design_effect(icc, m)
    return pd.DataFrame([
        ("share of the variance between therapists", icc),
        ("correlation of two clients of the same therapist", icc),
        ("therapist SD, in SDs of the score", float(np.sqrt(icc))),
        ("gap between the 90th- and 10th-percentile therapist, in SDs",
         float(2 * stats.norm.ppf(0.9) * np.sqrt(icc))),
        (f"design effect with {m} clients per therapist", deff),
        (f"{m} clients of one therapist are worth this many independent clients", m / deff),
        (f"reliability of a therapist's mean over {m} clients",
         therapist_mean_reliability(icc, m)),
    ], columns=["quantity", "value"])


def therapist_client_model(sessions: pd.DataFrame, alliance: str, symptoms: str,
                           options: MultilevelOptions | None = None) -> ModelResult:
    """Baldwin et al.'s decomposition of the alliance, at the session level.

    Each client's mean alliance is split into their therapist's mean (the mean over the
    therapist's clients, each counted once: ``<alliance>_therapist_mean``) and the client's
    deviation from it (``<alliance>_client_deviation``); last session's deviation from the
    client's own mean (``<alliance>_within_lag1``) stays in the model, as in
    :func:`alliance_analysis.multilevel.models.within_between_model`::

        <symptoms>_total ~ session + <alliance>_within_lag1 + <alliance>_therapist_mean
                           + <alliance>_client_deviation
                           + (1 | therapist) + (1 | client) [+ (0 + session | client)]

    The row ``therapist_minus_client`` is the difference of the two between coefficients
    with its Wald interval (the contextual effect): Baldwin et al. (2007) found the therapist
    part of the alliance related to outcome and the client part not. The pipeline's
    client-level version (post-treatment score adjusted for baseline) is
    :func:`alliance_analysis.multilevel.models.therapist_effects`.

    Parameters
    ----------
    options
        Random part, REML/ML, optimizers and CI level (time is always the session number);
        ``therapist_level`` must be true.
    """
    options = options or MultilevelOptions()
    if not options.therapist_level:
        raise AllianceParamsError("therapist_client_model needs therapist_level: true (a "
                                  "therapist-level predictor needs a therapist intercept)")
    frame = _lagged(sessions, alliance)
    clients = frame.groupby(CLIENT)[[THERAPIST, f"{alliance}_between"]].first()
    therapist_mean = clients.groupby(THERAPIST)[f"{alliance}_between"].mean()
    names = [f"{alliance}_therapist_mean", f"{alliance}_client_deviation"]
    frame = frame.assign(**{names[0]: frame[THERAPIST].map(therapist_mean)})
    frame = frame.assign(**{names[1]: frame[f"{alliance}_between"] - frame[names[0]],
                            "session": frame["session"] - 1.0})
    terms = ["session", f"{alliance}_within_lag1", *names]
    result, fitted = fit_mixed(
        "therapist_client", frame, score_column(symptoms), terms,
        random_part(options, "session"), options.reml, options.optimizers, options.max_iter,
        options.ci_level, "session coded 0 at session 1; therapist mean = mean of its "
        "clients' means")
    difference = fixed_effect_difference(fitted, names[0], names[1], options.ci_level)
    return replace(result, params=pd.concat([result.params, difference], ignore_index=True))


def parse_designs(text: str) -> list[tuple[int, int]]:
    """``"60x4, 20x12"`` -> ``[(60, 4), (20, 12)]`` (therapists x clients per therapist).

    Raises
    ------
    AllianceParamsError
        When an item is not two positive whole numbers joined by ``x``.
    """
    designs = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise AllianceParamsError(f"designs: {item.strip()!r} is not 'THERAPISTSxCLIENTS' "
                                      "(e.g. '30x8'); give a comma-separated list")
        designs.append((int(parts[0]), int(parts[1])))
    return designs


def compare_designs(designs: str, base: SimulationDesign, seed: int,
                    options: MultilevelOptions | None = None) -> pd.DataFrame:
    """Simulate each design, fit :func:`therapist_client_model` and the alliance ICCs.

    Parameters
    ----------
    designs
        Designs as in :func:`parse_designs`, e.g. ``"60x4, 20x12, 8x30"`` (same number of
        clients, shared out differently).
    base
        Every other parameter of the simulation.
    seed
        The same seed for every design.

    Returns
    -------
    pandas.DataFrame
        One row per design: ``therapists, clients_per_therapist, clients, icc_therapist,
        icc_ci_low, icc_ci_high`` (alliance, null model), ``therapist_part`` and
        ``client_part`` (estimates) with their CI widths ``therapist_part_ci_width``,
        ``client_part_ci_width``, ``therapist_part_covered`` and ``client_part_covered``
        (true value: ``between_effect``), and ``reliability_of_therapist_mean``
        (:func:`therapist_mean_reliability` at the true ICC of client means).
    """
    options = options or MultilevelOptions()
    rows = []
    for therapists, per in parse_designs(designs):
        design = base.model_copy(update={"therapists": therapists,
                                         "clients_per_therapist": per})
        sessions, _ = scored_sessions(design, seed)
        icc = null_model_iccs(sessions, "wai", options, seed).set_index("level")
        model = therapist_client_model(sessions, "wai", "phq9", options)
        row: dict[str, Any] = {
            "therapists": therapists, "clients_per_therapist": per,
            "clients": therapists * per, "icc_therapist": icc.loc["therapist", "icc"],
            "icc_ci_low": icc.loc["therapist", "ci_low"],
            "icc_ci_high": icc.loc["therapist", "ci_high"]}
        for part, term in (("therapist", "wai_therapist_mean"),
                           ("client", "wai_client_deviation")):
            value, low, high = estimate(model, term)
            row.update({f"{part}_part": value, f"{part}_part_ci_width": high - low,
                        f"{part}_part_covered": low <= design.between_effect <= high})
        t2, c2 = design.alliance_therapist_sd ** 2, design.alliance_client_sd ** 2
        row["reliability_of_therapist_mean"] = therapist_mean_reliability(t2 / (t2 + c2), per)
        rows.append(row)
    return pd.DataFrame(rows)


# --- tutorial 3: RI-CLPM vs CLPM ----------------------------------------------------------

#: Model names of :class:`PanelComparison` as printed.
MODEL_NAMES = {"riclpm": "RI-CLPM", "clpm": "CLPM"}
#: Lagged paths of :meth:`PanelComparison.lagged` -> field of :class:`PanelDesign`.
PANEL_PATHS = {"wai -> phq9": "cl_alliance_to_symptoms", "phq9 -> wai": "cl_symptoms_to_alliance",
               "wai -> wai": "ar_alliance", "phq9 -> phq9": "ar_symptoms"}


def clpm_limits(design: PanelDesign) -> pd.DataFrame:
    """What the CLPM's lagged paths converge to in an infinitely large sample.

    With stable client levels (covariance ``R``) and stationary within-client parts
    (covariance ``S``, lagged matrix ``B``), the observed scores have covariance ``R + S`` at
    one session and ``R + B S`` with the next session. The CLPM regresses each session's
    scores on the previous session's, so its paths converge to
    ``A = (R + B S)(R + S)^-1``, not to ``B``: with ``R = 0`` they agree; otherwise the
    stable differences leak into every path (Hamaker, Kuiper & Grasman, 2015).

    Returns
    -------
    pandas.DataFrame
        ``path, within_truth, clpm_limit`` for the four lagged paths (``from -> to``).
    """
    ri_cov, _, b, stationary = panel_covariances(design)
    limit = (ri_cov + b @ stationary) @ np.linalg.inv(ri_cov + stationary)
    cells = {"wai -> wai": (0, 0), "phq9 -> wai": (0, 1), "wai -> phq9": (1, 0),
             "phq9 -> phq9": (1, 1)}
    return pd.DataFrame([(path, b[i, j], limit[i, j]) for path, (i, j) in cells.items()],
                        columns=["path", "within_truth", "clpm_limit"])


def panel_truth_table(panel: PanelComparison, truth: Mapping[str, Any]) -> pd.DataFrame:
    """The lagged paths of both models beside the true within-client paths.

    The truth of every lagged path is the *within-client* effect of :class:`PanelDesign`:
    it is what a researcher asking "does a better alliance than usual lower this client's
    next symptoms?" wants to know. The RI-CLPM estimates it; the CLPM's paths also carry the
    stable differences between clients. Paths constrained equal over waves give one row;
    free paths give one row per lag. The RI-CLPM's random-intercept (co)variances follow.

    Returns
    -------
    pandas.DataFrame
        ``model`` then the columns of :func:`truth_table`.
    """
    design = truth["design"]
    lagged = panel.lagged().drop_duplicates(["model", "path", "estimate", "se"])
    per_lag = lagged.groupby(["model", "path"])["path"].transform("size") > 1
    rows = []
    for row, several in zip(lagged.itertuples(index=False), per_lag, strict=True):
        name = row.path + (f" (sessions {row.from_session}->{row.to_session})" if several else "")
        rows.append((MODEL_NAMES[row.model], name, design[PANEL_PATHS[row.path]],
                     row.estimate, row.ci_low, row.ci_high))
    ri = truth["random_intercept_covariance"]
    for a, b, value, name in (("ri_wai", "ri_wai", ri[0][0], "random intercept variance, wai"),
                              ("ri_phq9", "ri_phq9", ri[1][1], "random intercept variance, phq9"),
                              ("ri_wai", "ri_phq9", ri[0][1], "random intercept covariance")):
        terms = set(panel.riclpm.params["term"])
        term = f"{a} ~~ {b}" if f"{a} ~~ {b}" in terms else f"{b} ~~ {a}"
        rows.append(("RI-CLPM", name, value, *estimate(panel.riclpm, term)))
    table = truth_table(row[1:] for row in rows)
    table.insert(0, "model", [row[0] for row in rows])
    return table


# --- tutorial 4: reliable change, sudden gains and ruptures -------------------------------

#: Columns of :func:`plant_events`' table of planted events.
PLANTED_COLUMNS = ("client_id", "event", "session", "size")


def plant_events(sessions: pd.DataFrame, seed: int, gains: int = 3, gain_size: float = 8.0,
                 gain_session: int = 6, ruptures: int = 3, rupture_size: float = 1.0,
                 rupture_session: int = 6, repair_within: int = 3
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Plant sudden gains and alliance ruptures of known size and session in scored data.

    A *sudden gain* is planted as a step: ``phq9_total`` drops by ``gain_size`` from
    ``gain_session`` on (so the gain is between sessions ``gain_session - 1`` and
    ``gain_session``) in ``gains`` clients who have symptom scores at the three sessions
    before and after it and at least ``gain_size`` points to lose. A *rupture* is planted as
    a one-session dip: ``wai_total`` falls by ``rupture_size`` at ``rupture_session`` and is
    back the next session (repaired), in ``ruptures`` other clients with alliance scores
    from the session before to ``repair_within`` sessions after. Clients are drawn with
    ``numpy.random.default_rng(seed)``; scores are kept inside 0-27 and 1-5.

    Returns
    -------
    (sessions, planted)
        A changed copy of `sessions`, and one row per planted event
        (:data:`PLANTED_COLUMNS`; ``event`` is ``"sudden gain"`` or ``"rupture"``).

    Raises
    ------
    AllianceParamsError
        When too few clients qualify (fewer sessions than the events need).
    """
    rng = np.random.default_rng(seed)
    out = sessions.sort_values([CLIENT, "session"], kind="stable").reset_index(drop=True)
    wide = {key: out.pivot(index=CLIENT, columns="session", values=f"{key}_total")
            for key in ("phq9", "wai")}

    def eligible(key: str, sessions_needed: range, minimum: float) -> list[str]:
        table = wide[key].reindex(columns=list(sessions_needed))
        ok = table.notna().all(axis=1)
        if key == "phq9":
            ok &= table[[gain_session - 1, gain_session]].min(axis=1) >= minimum
        else:
            ok &= table[rupture_session] - minimum >= 1
        return sorted(table.index[ok])

    def draw(pool: list[str], n: int, what: str) -> list[str]:
        if len(pool) < n:
            raise AllianceParamsError(
                f"only {len(pool)} clients have the sessions needed to plant {n} {what}; "
                "plant fewer, move the session earlier, or simulate more clients or sessions")
        return sorted(rng.choice(pool, n, replace=False)) if n else []

    gain_clients = draw(eligible("phq9", range(gain_session - 3, gain_session + 3), gain_size),
                        gains, "sudden gains")
    pool = [c for c in eligible("wai", range(rupture_session - 1,
                                             rupture_session + repair_within + 1),
                                rupture_size) if c not in gain_clients]
    rupture_clients = draw(pool, ruptures, "ruptures")
    step = out[CLIENT].isin(gain_clients) & (out["session"] >= gain_session)
    dip = out[CLIENT].isin(rupture_clients) & (out["session"] == rupture_session)
    out.loc[step, "phq9_total"] = (out.loc[step, "phq9_total"] - gain_size).clip(0, 27)
    out.loc[dip, "wai_total"] = (out.loc[dip, "wai_total"] - rupture_size).clip(1, 5)
    planted = pd.DataFrame(
        [(c, "sudden gain", gain_session, gain_size) for c in gain_clients]
        + [(c, "rupture", rupture_session, rupture_size) for c in rupture_clients],
        columns=list(PLANTED_COLUMNS))
    return out, planted


def planted_vs_detected(planted: pd.DataFrame, tables: Mapping[str, pd.DataFrame]
                        ) -> pd.DataFrame:
    """Was each planted event found, by each criterion?

    A planted sudden gain is found when a gain of that client has its post-gain session at
    the planted session; a planted rupture when a rupture of that client, under a criterion
    (``sd1``, ``sd2``, ...), starts at the planted session.

    Parameters
    ----------
    planted
        From :func:`plant_events`.
    tables
        ``ChangeReport.tables`` of :func:`alliance_analysis.change.markers.analyse_change`.

    Returns
    -------
    pandas.DataFrame
        ``client_id, event, session, size, criterion, detected, detail``; one row per
        planted event and criterion.
    """
    gains, ruptures = tables["change_sudden_gains"], tables["change_ruptures"]
    criteria = list(dict.fromkeys(ruptures["criterion"])) or ["sd1"]
    rows = []
    for event in planted.itertuples(index=False):
        if event.event == "sudden gain":
            hit = gains[(gains[CLIENT] == event.client_id)
                        & (gains["postgain_session"] == event.session)]
            detail = (f"gain {hit['gain'].iloc[0]:g} points"
                      + ("; reversed" if bool(hit["reversal"].iloc[0]) else "")
                      if len(hit) else "no gain at this session")
            rows.append((*event, "Tang & DeRubeis", len(hit) > 0, detail))
            continue
        for criterion in criteria:
            hit = ruptures[(ruptures[CLIENT] == event.client_id)
                           & (ruptures["criterion"] == criterion)
                           & (ruptures["rupture_session"] == event.session)]
            detail = ((f"repaired at session {hit['repair_session'].iloc[0]}"
                       if bool(hit["repaired"].fillna(False).iloc[0]) else "not repaired")
                      if len(hit) else "not flagged at this session")
            rows.append((*event, criterion, len(hit) > 0, detail))
    return pd.DataFrame(rows, columns=[*PLANTED_COLUMNS, "criterion", "detected", "detail"])


def chance_events(planted: pd.DataFrame, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Events the criteria flag in clients where none was planted: chance, or real change.

    Returns
    -------
    pandas.DataFrame
        ``marker, criterion, clients_without_planted_event, clients_flagged, percent``:
        sudden gains among clients without a planted gain, and ruptures (per criterion)
        among clients without a planted rupture.
    """
    clients = set(tables["change_reliable"][CLIENT].astype(str))
    rows = []
    gains = tables["change_sudden_gains"]
    others = clients - set(planted.loc[planted["event"] == "sudden gain", CLIENT])
    flagged = set(gains[CLIENT]) & others
    rows.append(("sudden gain", "Tang & DeRubeis", len(others), len(flagged)))
    counts = tables["change_rupture_counts"]
    others = clients - set(planted.loc[planted["event"] == "rupture", CLIENT])
    for criterion, part in counts.groupby("criterion", sort=False):
        part = part[part[CLIENT].isin(others) & part["assessed"]]
        rows.append(("rupture", criterion, len(part), int(part["any_rupture"].sum())))
    table = pd.DataFrame(rows, columns=["marker", "criterion",
                                        "clients_without_planted_event", "clients_flagged"])
    return table.assign(percent=(100 * table["clients_flagged"]
                                 / table["clients_without_planted_event"]).round(1))


def chance_reliable_change(residual_sd: float, threshold: float) -> float:
    """Share of clients with *no* true change that a pre-post criterion calls changed.

    With independent session noise of SD ``residual_sd`` on the pre and the post score, the
    observed change of an unchanged client is normal with SD ``sqrt(2) * residual_sd``; the
    share with an absolute change of at least ``threshold`` is
    ``2 * (1 - Phi(threshold / (sqrt(2) * residual_sd)))`` (improvement and deterioration
    together; a normal approximation that ignores rounding to whole points). Jacobson &
    Truax (1991) set the threshold so that this share is 5% when ``residual_sd`` is the
    questionnaire's standard error of measurement.
    """
    return float(2 * stats.norm.sf(threshold / (np.sqrt(2) * residual_sd)))
