"""Alliance-symptom dynamics over sessions: RI-CLPM, CLPM and latent growth.

The session table is long (one row per client and session); panel models need it wide (one
row per client, one column per variable and wave). :func:`wide_panel` reshapes it, with a
missed session left missing for FIML. :func:`fit_panel` fits the random-intercept
cross-lagged panel model (RI-CLPM) and the traditional CLPM to the same data, and
:meth:`PanelComparison.reading` says in plain words what they show. :func:`fit_growth`
fits a linear latent growth model of symptoms with early alliance predicting the slope.

Why two panel models: the CLPM's lagged paths mix two questions, "do clients with better
alliances have fewer symptoms later?" (between clients) and "when a client's alliance is
better than usual, are their symptoms lower than usual next session?" (within a client).
The RI-CLPM separates them by giving each client a stable level of each variable (the
random intercepts), so its lagged paths answer only the within-client question
(Hamaker, Kuiper & Grasman 2015).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from alliance_analysis.data.clients import early_alliance
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.instruments import Instrument
from alliance_analysis.results import ModelResult
from alliance_analysis.sem.models import fit_sem, fit_table
from alliance_analysis.options import SemOptions
from alliance_analysis.sem.models import CfaComparison
from alliance_analysis.sem.syntax import growth_syntax, riclpm_syntax


def wide_panel(sessions: pd.DataFrame, columns: Mapping[str, str], waves: Sequence[int]
               ) -> pd.DataFrame:
    """One row per client, one column per variable and wave.

    Parameters
    ----------
    sessions
        The canonical session table (``client_id``, ``session`` and the score columns).
    columns
        Short name -> score column, e.g. ``{"wai": "wai_total", "phq9": "phq9_total"}``.
    waves
        The sessions used as waves, in order.

    Returns
    -------
    pandas.DataFrame
        Index ``client_id`` (every client in the table, sorted); columns
        ``<short>_s<session>`` for each variable then wave; NaN where a client missed the
        session or the score is missing.

    Raises
    ------
    AllianceDataError
        When a column is absent or a client has two rows for one session.
    """
    absent = [c for c in columns.values() if c not in sessions.columns]
    if absent:
        raise AllianceDataError(f"the session table lacks the score columns {absent}; "
                                f"columns present: {list(sessions.columns)}")
    dup = sessions.duplicated(["client_id", "session"])
    if dup.any():
        first = sessions.loc[dup, ["client_id", "session"]].iloc[0].tolist()
        raise AllianceDataError(
            f"{int(dup.sum())} duplicated client-session rows (first: client {first[0]}, "
            f"session {first[1]}); the clean stage should have resolved them")
    rows = sessions.loc[sessions["session"].isin(list(waves))]
    clients = pd.Index(sorted(sessions["client_id"].unique()), name="client_id")
    out = pd.DataFrame(index=clients)
    for short, column in columns.items():
        table = rows.pivot(index="client_id", columns="session", values=column)
        for wave in waves:
            values = table[wave] if wave in table.columns else pd.Series(dtype=float)
            out[f"{short}_s{wave}"] = values.reindex(clients).astype(float)
    return out


@dataclass(frozen=True)
class PanelComparison:
    """An RI-CLPM and a CLPM of the same panel.

    Attributes
    ----------
    riclpm, clpm
        The two fits.
    x, y
        Short names of the two variables (alliance, symptoms).
    waves
        The sessions used as waves.
    """

    riclpm: ModelResult
    clpm: ModelResult
    x: str
    y: str
    waves: tuple[int, ...]

    def fit_table(self) -> pd.DataFrame:
        """The two models' fit statistics side by side."""
        return fit_table({"riclpm": self.riclpm, "clpm": self.clpm})

    def lagged(self) -> pd.DataFrame:
        """The lagged paths of both models.

        Columns: ``model, path, kind, from_session, to_session, term, estimate, se, ci_low,
        ci_high, p, std_estimate``; ``path`` like ``"wai -> phq9"``, ``kind``
        autoregressive or cross-lagged. In the RI-CLPM these are within-person effects.
        """
        frames = []
        for name, result in (("riclpm", self.riclpm), ("clpm", self.clpm)):
            rows = result.params.loc[(result.params["op"] == "~")
                                     & result.params["lhs"].str.startswith("w_")].copy()
            source = rows["rhs"].map(self._parse)
            target = rows["lhs"].map(self._parse)
            frames.append(pd.DataFrame({
                "model": name,
                "path": [f"{s[0]} -> {t[0]}" for s, t in zip(source, target)],
                "kind": ["autoregressive" if s[0] == t[0] else "cross-lagged"
                         for s, t in zip(source, target)],
                "from_session": [s[1] for s in source], "to_session": [t[1] for t in target],
                **{c: rows[c].to_numpy() for c in ("term", "estimate", "se", "ci_low",
                                                   "ci_high", "p", "std_estimate")}}))
        return pd.concat(frames, ignore_index=True).sort_values(
            ["model", "kind", "path", "from_session"], ascending=[False, True, True, True],
            ignore_index=True)

    def summary(self) -> pd.DataFrame:
        """Each model's lagged paths averaged over the lags.

        Columns ``model, path, kind, n_lags, mean_estimate, mean_std_estimate,
        n_significant`` (p < .05). With equality constraints every lag has the same raw
        estimate; the standardized ones still differ with the waves' variances.
        """
        table = self.lagged()
        return (table.assign(significant=table["p"] < 0.05)
                .groupby(["model", "path", "kind"], sort=False)
                .agg(n_lags=("estimate", "size"), mean_estimate=("estimate", "mean"),
                     mean_std_estimate=("std_estimate", "mean"),
                     n_significant=("significant", "sum"))
                .reset_index())

    def side_by_side(self) -> pd.DataFrame:
        """The two models' lagged paths next to each other, averaged over the lags.

        Columns ``path, kind, riclpm_std, riclpm_significant, clpm_std,
        clpm_significant``: mean standardized path and the number of lags with p < .05
        (``"2/3"``).
        """
        summary = self.summary()
        out = None
        for name in ("riclpm", "clpm"):
            part = summary.loc[summary["model"] == name].set_index(["path", "kind"])
            columns = pd.DataFrame({
                f"{name}_std": part["mean_std_estimate"],
                f"{name}_significant": [f"{s}/{n}" for s, n in zip(part["n_significant"],
                                                                  part["n_lags"])]},
                index=part.index)
            out = columns if out is None else out.join(columns)
        return out.reset_index()

    def comparison(self) -> dict[str, float]:
        """Likelihood-ratio test of the CLPM against the RI-CLPM it is nested in.

        The CLPM fixes the random-intercept variances (and covariance) at 0, on the boundary
        of their range, so the usual chi-square reference is conservative (Stoel et al.
        2006); a small p still favours the RI-CLPM. Also returns the two AICs and BICs.

        References
        ----------
        Stoel, R. D., Garre, F. G., Dolan, C., & van den Wittenboer, G. (2006). On the
        likelihood ratio test in structural equation modeling when parameters are subject
        to boundary constraints. *Psychological Methods*, 11, 439-455.
        """
        r, c = self.riclpm.fit, self.clpm.fit
        diff, df = c["chi2"] - r["chi2"], c["df"] - r["df"]
        return {"chi2_diff": diff, "df_diff": df, "p_diff": float(stats.chi2.sf(diff, df)),
                "aic_riclpm": r["aic"], "aic_clpm": c["aic"],
                "bic_riclpm": r["bic"], "bic_clpm": c["bic"]}

    def reading(self) -> str:
        """A plain-language reading of the two models for a report or a student."""
        summary = self.summary().set_index(["model", "path"])
        cmp = self.comparison()
        lags = len(self.waves) - 1
        x_to_y, y_to_x = f"{self.x} -> {self.y}", f"{self.y} -> {self.x}"
        handling = {"fiml": "full-information ML (FIML)", "listwise": "listwise deletion"}
        parts = [
            f"Panel of sessions {', '.join(str(w) for w in self.waves)}: "
            f"{self.riclpm.fit['n_obs']} clients ({self.riclpm.fit['n_dropped']} dropped); "
            f"missed sessions handled by {handling[self.riclpm.fit['missing']]}.",
            self._sentence(summary.loc[("riclpm", x_to_y)], "RI-CLPM", self.x, self.y, lags,
                           within=True),
            self._sentence(summary.loc[("riclpm", y_to_x)], "RI-CLPM", self.y, self.x, lags,
                           within=True),
            self._sentence(summary.loc[("clpm", x_to_y)], "CLPM", self.x, self.y, lags,
                           within=False),
            self._sentence(summary.loc[("clpm", y_to_x)], "CLPM", self.y, self.x, lags,
                           within=False),
            f"Model comparison: the CLPM fits worse by chi-square {cmp['chi2_diff']:.1f} on "
            f"{cmp['df_diff']:.0f} df (p {_p_text(cmp['p_diff'])}; conservative because the "
            f"random-intercept variances are tested at their boundary of 0); BIC "
            f"{cmp['bic_riclpm']:.1f} (RI-CLPM) vs {cmp['bic_clpm']:.1f} (CLPM). "
            + ("The stable between-client differences matter, so the CLPM's lagged paths "
               "should not be read as within-client effects."
               if cmp["p_diff"] < 0.05 and cmp["bic_riclpm"] < cmp["bic_clpm"] else
               "The data do not clearly need the random intercepts; the two models' "
               "lagged paths can be compared directly."),
        ]
        if not (self.riclpm.fit["converged"] and self.clpm.fit["converged"]):
            parts.insert(0, "WARNING: a model did not converge; do not interpret it.")
        return "\n\n".join(parts)

    def _sentence(self, row: pd.Series, model: str, source: str, target: str, lags: int,
                  within: bool) -> str:
        """One sentence on the lagged effect of ``source`` on the next ``target``."""
        signs = {np.sign(row["mean_estimate"]), np.sign(row["mean_std_estimate"])}
        direction = ("no consistently higher or lower" if len(signs) > 1
                     else "lower" if row["mean_estimate"] < 0 else "higher")
        subject = (f"when a client's {source} is above their own usual level, their "
                   f"{target} at the next session is {direction} than usual"
                   if within else
                   f"clients with a higher {source} than others have a {direction} "
                   f"{target} at the next session, relative to their previous {target}")
        caution = (" - not distinguishable from no effect" if row["n_significant"] == 0
                   else "")
        return (f"{model}: {subject} (mean standardized path {row['mean_std_estimate']:.3f}; "
                f"{row['mean_estimate']:.3f} {target} points per {source} point), "
                f"significant (p < .05) at {int(row['n_significant'])} of {lags} lag(s)"
                f"{caution}.")

    def _parse(self, latent: str) -> tuple[str, int]:
        """``w_<short>_s<session>`` -> (short, session)."""
        short, session = latent.removeprefix("w_").rsplit("_s", 1)
        return short, int(session)


def _p_text(p: float) -> str:
    """A p-value as reported: '< .001' or '= .023'."""
    return "< .001" if p < 0.001 else f"= {p:.3f}".replace("0.", ".")


def fit_panel(sessions: pd.DataFrame, alliance: Instrument, symptoms: Instrument,
              options: SemOptions) -> PanelComparison:
    """RI-CLPM and CLPM of alliance and symptom scores over the chosen sessions.

    Parameters
    ----------
    sessions
        The canonical session table.
    alliance, symptoms
        The two instruments; their total scores (``<key>_total``) are the panel variables.
    options
        ``waves``, ``missing``, ``constrain_autoregressive``, ``constrain_crosslagged``.

    Returns
    -------
    PanelComparison

    References
    ----------
    Hamaker, E. L., Kuiper, R. M., & Grasman, R. P. P. P. (2015). A critique of the
    cross-lagged panel model. *Psychological Methods*, 20, 102-116.
    Mulder, J. D., & Hamaker, E. L. (2021). Three extensions of the random intercept
    cross-lagged panel model. *Structural Equation Modeling*, 28, 638-648.
    """
    x, y = alliance.key, symptoms.key
    data = wide_panel(sessions, {x: alliance.score_column(), y: symptoms.score_column()},
                      options.waves)
    x_cols = [f"{x}_s{w}" for w in options.waves]
    y_cols = [f"{y}_s{w}" for w in options.waves]
    results = {}
    for name, intercepts in (("riclpm", True), ("clpm", False)):
        syntax = riclpm_syntax(
            x_cols, y_cols, x_name=x, y_name=y, random_intercepts=intercepts,
            constrain_autoregressive=options.constrain_autoregressive,
            constrain_crosslagged=options.constrain_crosslagged)
        results[name] = fit_sem(syntax, data, name, missing=options.missing,
                                meanstructure=True)
    return PanelComparison(riclpm=results["riclpm"], clpm=results["clpm"], x=x, y=y,
                           waves=tuple(options.waves))


def growth_data(sessions: pd.DataFrame, symptoms: Instrument, alliance: Instrument,
                options: SemOptions) -> pd.DataFrame:
    """Wide symptom scores at the growth sessions and centred early alliance.

    Returns one row per client: ``<symptoms>_s<session>`` for each growth session and
    ``<alliance>_early``, the client's mean alliance score over sessions
    ``1..early_sessions`` (over the sessions rated; see
    :func:`alliance_analysis.data.clients.early_alliance`), minus its mean over clients; NaN
    for a client with no early rating.
    """
    wide = wide_panel(sessions, {symptoms.key: symptoms.score_column()},
                      options.growth_sessions)
    early = early_alliance(sessions, alliance.score_column(), options.early_sessions
                           ).set_index("client_id")["early_alliance"]
    wide[f"{alliance.key}_early"] = (early - early.mean()).reindex(wide.index)
    return wide


def fit_growth(sessions: pd.DataFrame, symptoms: Instrument, alliance: Instrument,
               options: SemOptions) -> ModelResult:
    """Linear latent growth of symptoms, with early alliance predicting level and slope.

    Parameters
    ----------
    sessions
        The canonical session table.
    symptoms, alliance
        The outcome and the predictor instruments (their total scores).
    options
        ``growth_sessions`` (time scores are the session numbers minus the first, so the
        intercept is the level at the first growth session and the slope the change per
        session), ``early_sessions`` and ``missing``.

    Returns
    -------
    ModelResult
        The growth model; its ``slope ~ <alliance>_early_lv`` row is the change in the
        per-session slope for one point more early alliance. Early alliance is centred, so
        ``slope ~1`` is the slope of a client with average early alliance.

    Notes
    -----
    Early alliance is measured during the first sessions, which may overlap the growth
    sessions; it then describes the alliance formed while early change happens, not a
    cause measured before it.

    References
    ----------
    Bollen, K. A., & Curran, P. J. (2006). *Latent curve models: A structural equation
    perspective*. Wiley.
    """
    data = growth_data(sessions, symptoms, alliance, options)
    first = options.growth_sessions[0]
    outcomes = [f"{symptoms.key}_s{s}" for s in options.growth_sessions]
    syntax = growth_syntax(outcomes, [s - first for s in options.growth_sessions],
                           predictor=f"{alliance.key}_early")
    if data[outcomes].notna().sum().min() == 0:
        raise AllianceDataError(
            f"no client has a {symptoms.key} score at one of the growth sessions "
            f"{list(options.growth_sessions)}; choose sessions that clients attended")
    return fit_sem(syntax, data, "growth", missing=options.missing, meanstructure=True)


@dataclass(frozen=True)
class SemResults:
    """The models of the SEM stage (``04_sem``), as the report writes them.

    Attributes
    ----------
    cfa
        The CFAs of the alliance items (:func:`alliance_analysis.sem.models.fit_cfa`).
    panel
        The RI-CLPM and CLPM side by side (:func:`fit_panel`).
    growth
        The symptom latent growth model (:func:`fit_growth`).

    Each is ``None`` when the parameters do not list that analysis.
    alliance, symptoms
        The run's alliance and symptom instruments (labels of the figures).
    """

    cfa: CfaComparison | None
    panel: PanelComparison | None
    growth: ModelResult | None
    alliance: Instrument
    symptoms: Instrument
