"""Every options model of a run: the sections of the parameters file, strict pydantic models.

Each section of the YAML parameters file (``data:``, ``columns:``, ``privacy:``, ``cleaning:``,
``multilevel:``, ``sem:``, ``change:``) is one model here. All derive from :class:`Options`:
an unknown key is an error, and values are **not coerced**: ``reml: "no"`` or
``early_sessions: true`` are refused rather than read as ``False`` or ``1`` (pydantic's strict
mode); YAML lists are accepted where a field holds a tuple. The run parameters that combine
them, and the reading of the YAML file, are in :mod:`alliance_analysis.params`.

This module imports nothing of the package but :mod:`alliance_analysis.specs` (the base
class and the researcher's model specifications, re-exported here), so that every stage can
take its options without importing another stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

# The base class and the researcher's specifications (models:, scoring:, sem_models:) live in
# alliance_analysis.specs; they are re-exported here so that every section is importable
# from this module.
from alliance_analysis.specs import ModelSpec, Options, ScoringRule, SemModelSpec, SemOptions

__all__ = ["ChangeOptions", "CleaningOptions", "Columns", "DataSource", "ItemMapping",
           "ModelSpec", "MultilevelOptions", "Options", "PrivacyOptions", "ScoringRule",
           "SemModelSpec", "SemOptions", "relative_path"]



def relative_path(value: Any, info: ValidationInfo, what: str = "path") -> Path | None:
    """A path from a parameters file, resolved against that file's folder (None stays None).

    The folder comes from the validation context (``base_dir``), as set by
    :func:`validate_mapping`; without one, the current working directory.
    """
    if value is None:
        return None
    if not isinstance(value, (str, Path)):
        raise ValueError(f"must be a {what} (text)")
    base = (info.context or {}).get("base_dir", Path.cwd())
    return (Path(base) / Path(value).expanduser()).resolve()




class DataSource(Options):
    """Where the session data comes from, and how to read it.

    ``path`` is resolved relative to the directory of the parameters file and must be a file.
    ``skip_rows`` skips title lines above the header (CSV lines or Excel rows, blank ones
    included); ``decimal`` is the decimal mark of numbers written as text in item and day cells.
    """

    path: Path = Field(description="the session data file (csv, xlsx, sav, dta or parquet)")
    format: Literal["auto", "csv", "xlsx", "sav", "dta", "parquet"] = Field(
        "auto", description="file format; 'auto' reads it from the extension"
    )
    sheet: str | int | None = Field(None, description="Excel sheet name or 0-based index")
    delimiter: str | None = Field(None, description="CSV delimiter; None detects , ; or tab")
    encoding: str | None = Field(None, description="CSV encoding; None detects UTF-8, UTF-16, Windows-1252 or Latin-1")
    skip_rows: int = Field(0, ge=0, description="CSV lines or Excel rows above the header")
    decimal: Literal[".", ","] = Field(".", description="decimal mark: '.' (3.5) or ',' (3,5)")

    @field_validator("path", mode="before")
    @classmethod
    def _resolve_path(cls, value: Any, info: ValidationInfo) -> Path:
        path = relative_path(value, info, "file path")
        if path is not None and path.is_dir():
            files = ", ".join(sorted(p.name for p in path.iterdir() if p.is_file())[:4])
            raise ValueError(f"{path} is a folder, not a file (files in it: {files or 'none'})."
                             " Give the path of the data file itself")
        if path is None or not path.is_file():
            raise ValueError(f"file not found: {path}. Check the path; it is read relative to "
                             "the parameters file's folder")
        return path


class Columns(Options):
    """Mapping from the canonical column names to the names used in the researcher's file.

    One of ``day`` and ``date`` must name a column: the run needs the timing of sessions.
    """

    client_id: str = Field("client_id", description="client identifier column")
    therapist_id: str = Field("therapist_id", description="therapist identifier column")
    session: str = Field("session", description="session number column (1, 2, ...)")
    day: str | None = Field("day", description="days since the client's first session, if any")
    date: str | None = Field(
        None, description="calendar date of each session; turned into `day` and then dropped")
    covariates: tuple[str, ...] = Field(
        ("age_band", "gender", "arm"), description="client-level covariates to keep"
    )

    @model_validator(mode="after")
    def _day_or_date(self) -> Columns:
        if self.day is None and self.date is None:
            raise ValueError("neither columns.day nor columns.date is set, but the run needs "
                             "the timing of sessions. Map columns.day (days since the first "
                             "session) or columns.date (session dates) to a column of the file")
        return self



class ItemMapping(Options):
    """Where one instrument's items are in the researcher's file.

    Give either ``columns`` (the source column of item 1, 2, ... in order) or ``pattern``
    (a name with ``{n}`` standing for the item number, e.g. ``"WAI{n}"`` or ``"phq_{n:02d}"``).
    """

    columns: tuple[str, ...] | None = None
    pattern: str | None = None


    @field_validator("pattern")
    @classmethod
    def _pattern_has_n(cls, value: str | None) -> str | None:
        if value is not None and "{n" not in value:
            raise ValueError("must contain {n} where the item number goes, e.g. 'WAI{n}'")
        return value

    def source_columns(self, n_items: int) -> list[str]:
        """The source column of each item 1..n_items."""
        if self.columns is not None:
            return list(self.columns)
        if self.pattern is not None:
            return [self.pattern.format(n=n) for n in range(1, n_items + 1)]
        return []


class PrivacyOptions(Options):
    """The anonymisation gate (see :mod:`alliance_analysis.data.privacy`)."""

    drop: tuple[str, ...] = Field((), description="identifier columns to drop on reading")
    allow: dict[str, str] = Field(
        {}, description="column: reason it is not a direct identifier (recorded in the manifest)")
    key_file: Path | None = Field(
        None, description="secret key of the pseudonym hash; default <processed>/pseudonym.key")
    min_cell_size: int = Field(5, ge=1, description="smallest count shown in reported tables")


    @field_validator("key_file", mode="before")
    @classmethod
    def _resolve_key(cls, value: Any, info: ValidationInfo) -> Any:
        return relative_path(value, info, "file path")


class CleaningOptions(Options):
    """The cleaning rules that have choices (see :mod:`alliance_analysis.data.cleaning`)."""

    duplicates: Literal["keep_first", "keep_last", "exclude_both"] = Field(
        "keep_first", description="conflicting rows of the same client and session "
        "(identical rows always keep one)")
    multiple_therapists: Literal["flag", "split"] = Field(
        "flag", description="a client seen by more than one therapist: flag it, or split the "
        "client into one client per therapist")
    date_order: Literal["flag", "exclude"] = Field(
        "flag", description="sessions whose day goes backwards: flag them, or exclude them")
    min_sessions: int = Field(1, ge=1, description="clients with fewer kept sessions are excluded")
    fractional_items: Literal["missing", "round"] = Field(
        "missing", description="a fractional answer (2.5) on a whole-number item: set missing "
        "(default), or round it half to even; either way logged in the cell ledger")


#: Optimizers tried in order (see :mod:`alliance_analysis.multilevel.mixedfit` for why L-BFGS first).
DEFAULT_OPTIMIZERS = ("lbfgs", "bfgs", "powell", "nm")


class MultilevelOptions(Options):
    """Choices of the multilevel models (``multilevel:`` in the run parameters).

    The defaults run the demo: a three-level model (sessions in clients in therapists) with
    a client random slope of session independent of the client intercept, fitted by REML,
    time counted in sessions from session 1. Every field is a plain value, e.g.::

        multilevel:
          reml: false            # ML, to compare fixed effects by AIC/BIC
          therapist_level: false
          correlated_slope: true # lme4's (1 + session | client)

    Every linear mixed model of the analyses is fitted by the nested engine
    (:func:`alliance_analysis.multilevel.engine.nested.fit_nested`: lme4's profiled REML/ML,
    Satterthwaite df); statsmodels MixedLM is no longer used by the analyses (project issue 15).

    *Premature dropout* is defined once per run, under ``change:`` (``dropout``,
    ``dropout_sessions``, ``dropout_column``; see
    :func:`alliance_analysis.change.markers.dropout_status`). ``early_sessions`` must be below the
    dropout session, so that early alliance is measured before
    the dropout it predicts.
    """


    reml: bool = Field(
        True, description="REML (unbiased variance components; compare models with different "
        "random effects only) or ML (needed to compare models with different fixed effects "
        "by likelihood ratio, AIC or BIC)")
    time: Literal["session", "log_session", "day"] = Field(
        "session", description="time metric of growth: session number, log of session number "
        "(fast early change), or days since the client's first session")
    time_origin: int = Field(
        1, ge=1, description="session at which time is 0, so the intercept is the expected "
        "level at this session (for 'day': day 0 is the client's first session)")
    therapist_level: bool = Field(
        True, description="add a random therapist intercept (three levels: sessions in "
        "clients in therapists)")
    client_slope: bool = Field(
        True, description="random client slope of time (clients change at different rates)")
    correlated_slope: bool = Field(
        False, description="let the client intercept and slope correlate, as lme4's "
        "(1 + time | client), with or without a therapist level")
    lagged_outcome: bool = Field(
        False, description="within/between models: add the current symptom level (session "
        "t) as a covariate of symptoms at t+1 (see the Nickell-bias note in the docs)")
    detrend: bool = Field(
        False, description="within/between models: split alliance around each client's own "
        "linear trend instead of their mean (Falkenström et al. 2017)")
    early_sessions: int = Field(
        5, ge=1, description="early alliance is the client's mean alliance over sessions "
        "1..early_sessions")
    therapist_rater: str | None = Field(
        "wai_t", description="the therapist-rated alliance instrument for the client-therapist "
        "perspective models; None skips them")
    inference: Literal["satterthwaite", "wald"] = Field(
        "satterthwaite", description="tests and intervals of fixed effects: t with "
        "Satterthwaite df, as lmerTest (default), or Wald z (normal), only where asked")
    ci_level: float = Field(0.95, gt=0, lt=1, description="confidence level of every interval")
    icc_ci: Literal["delta", "bootstrap"] = Field(
        "delta", description="CI of intraclass correlations: delta method on the logit scale "
        "(fast; at the boundary, a variance estimated at ~0, it is uninformative and the "
        "parametric bootstrap is used instead, with a note) or seeded parametric bootstrap "
        "(slower, better in few therapists)")
    bootstrap_samples: int = Field(
        200, ge=10, description="parametric bootstrap replications of the ICC intervals")
    optimizers: tuple[Literal["lbfgs", "bfgs", "cg", "powell", "nm"], ...] = Field(
        DEFAULT_OPTIMIZERS, min_length=1, description="statsmodels MixedLM optimizers tried in "
        "order, for statsmodels fits outside the analyses only (tutorials, the power study's "
        "statsmodels check); the analyses' models are fitted by the nested engine")
    engine: Literal["engine"] = Field(
        "engine", description="fitter of every linear mixed model: the nested engine "
        "(alliance_analysis.multilevel.engine.nested, lme4's profiled REML/ML) is the only "
        "one; the key is kept so that older parameter files still read")
    max_iter: int = Field(
        1000, ge=1, description="maximum iterations of each optimizer run (the engine: "
        "deviance evaluations of each TNC run)")

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_retired(cls, value: Any) -> Any:
        if value == "statsmodels":
            raise ValueError(
                "statsmodels MixedLM is retired from the analyses (project issue 15: it "
                "missed lme4's optimum and singular fits while reporting convergence); every "
                "mixed model is fitted by the nested engine. Remove the key or write "
                "engine: engine")
        return value


class ChangeOptions(Options):
    """Choices of the change and process markers (``change:`` in the run parameters).

    The defaults run the demo: reliable change and caseness from the instrument's published
    thresholds (PHQ-9: 6 points and 10), sudden gains by Tang & DeRubeis (1999) with the
    reliable-change threshold as the absolute criterion, ruptures at 1 and 2 client SDs below
    the client's own mean alliance, repair within 3 sessions, dropout as fewer than 8 sessions
    without reliable improvement.

    Notes
    -----
    Where the defaults come from:

    - *Sudden gains, criterion 1.* Tang & DeRubeis (1999) used 7 points on the BDI. For other
      measures studies commonly set it at the measure's reliable change index, so that a
      sudden gain is at least a reliable change (the R package suddengains computes it so,
      ``define_crit1_cutoff``). None here takes the instrument's published reliable-change
      threshold: 6 points on the PHQ-9 and 4 on the GAD-7 (the IAPT thresholds of
      :mod:`alliance_analysis.instruments`); set ``sudden_gain_min`` to use another value.
    - *Criteria 2 and 3* (25%; 2.776, 3.182, 4.303) are Tang & DeRubeis's and Lutz et al.'s
      (2013) values; reversal at 50% of the gain follows Tang & DeRubeis.
    - *Ruptures* at 1 and 2 SD: the two thresholds of the session-report literature (Stiles
      et al. 2004 and later studies; Gumz et al. 2012 recommend reporting both).
    - *Repair within 3 sessions* and *dropout before session 8* are project choices, not
      taken from a paper: set them to the design of the study (e.g. the planned minimum dose).

    References
    ----------
    .. [1] Jacobson, N. S., & Truax, P. (1991). Journal of Consulting and Clinical Psychology,
       59(1), 12-19.
    .. [2] Tang, T. Z., & DeRubeis, R. J. (1999). Journal of Consulting and Clinical
       Psychology, 67(6), 894-904.
    .. [3] Lutz, W., et al. (2013). Psychotherapy Research, 23(1), 14-24.
    .. [4] Stiles, W. B., et al. (2004). Journal of Counseling Psychology, 51(1), 81-92.
    .. [5] Gumz, A., Brähler, E., Geyer, M., & Erices, R. (2012). BMC Medical Research
       Methodology, 12, 10.
    .. [6] Wiedemann, M., Thew, G. R., Stott, R., & Ehlers, A. (2020). suddengains: An R
       package to identify sudden gains in longitudinal data. PLOS ONE, 15(3), e0230276.
    """


    reliable_change: Literal["published", "jacobson_truax"] = Field(
        "published", description="reliable change from the instrument's published threshold "
        "in points ('published'), or the Jacobson & Truax (1991) index computed from the "
        "pre-treatment SD and the reliability ('jacobson_truax')")
    reliability: float | None = Field(
        None, gt=0, lt=1, description="reliability r_xx for 'jacobson_truax'; None uses the "
        "instrument's reliability")
    sd_pre: float | None = Field(
        None, gt=0, description="pre-treatment SD s_pre for 'jacobson_truax'; None uses the SD "
        "of the sample's pre scores")
    rc_z: float = Field(
        1.96, gt=0, description="|RC| must exceed this for reliable change (1.96: p < .05)")
    cutoff: Literal["published", "a", "b", "c"] = Field(
        "published", description="clinical cut-off: the instrument's published caseness "
        "threshold, or Jacobson & Truax's a (2 SD beyond the clinical mean), b (within 2 SD of "
        "the functional mean) or c (between the two distributions)")
    clinical_mean: float | None = Field(
        None, description="mean of the clinical population (cut-offs a, c); None uses the "
        "sample's pre scores")
    clinical_sd: float | None = Field(
        None, gt=0, description="SD of the clinical population (cut-offs a, c); None uses the "
        "sample's pre scores")
    functional_mean: float | None = Field(
        None, description="mean of the functional (non-clinical) population (cut-offs b, c)")
    functional_sd: float | None = Field(
        None, gt=0, description="SD of the functional population (cut-offs b, c)")
    pre_session: int | None = Field(
        None, ge=1, description="session of the pre score; None: each client's first scored "
        "session")
    post_session: int | None = Field(
        None, ge=1, description="session of the post score; None: each client's last scored "
        "session")
    sudden_gain_min: float | None = Field(
        None, gt=0, description="sudden gains criterion 1, the smallest gain in points; None "
        "uses the instrument's published reliable-change threshold (PHQ-9: 6)")
    sudden_gain_relative: float = Field(
        0.25, gt=0, lt=1, description="sudden gains criterion 2: the gain is at least this "
        "fraction of the pre-gain score")
    sudden_gain_critical: tuple[float, float, float] = Field(
        # The exact two-sided .05 t quantiles (2.7764..., 3.1824..., 4.3026...), which Tang &
        # DeRubeis (1999) and Lutz et al. (2013) print to three decimals; scipy's
        # stats.t.ppf(0.975, (4, 3, 2)), written out so this module needs no scipy.
        (2.7764451051977934, 3.1824463052837078, 4.302652729749462),
        description="sudden gains criterion 3: critical values with all 6 neighbouring "
        "scores (df 4), one missing (df 3) and two missing (df 2)")
    sudden_gain_reversal: float = Field(
        0.5, gt=0, le=1, description="a gain is reversed when a later score gives back at "
        "least this fraction of it")
    rupture_sd: tuple[float, ...] = Field(
        (1.0, 2.0), min_length=1, description="a rupture is a session whose alliance falls "
        "more than this many of the client's SDs below the client's mean; one count each")
    rupture_drop: float | None = Field(
        None, gt=0, description="also a rupture: alliance drops by at least this many points "
        "from the previous session; None: not used")
    rupture_min_scores: int = Field(
        3, ge=3, description="clients with fewer alliance scores are not assessed for "
        "ruptures (their own SD is too uncertain)")
    repair_within: int = Field(
        3, ge=1, description="a rupture is repaired when alliance returns to its pre-rupture "
        "level within this many sessions")
    early_sessions: int = Field(
        5, ge=2, description="early alliance: mean and slope over sessions 1..early_sessions")
    dropout: Literal["sessions", "column"] = Field(
        "sessions", description="dropout: fewer than dropout_sessions sessions without "
        "reliable improvement ('sessions'), or a 0/1 column of the data ('column')")
    dropout_sessions: int = Field(
        8, ge=2, description="'sessions' dropout: the client's last session is below this")
    dropout_column: str | None = Field(
        None, description="'column' dropout: the client-level 0/1 column")
    ci_level: float = Field(0.95, gt=0, lt=1, description="confidence level of the models")

    @model_validator(mode="after")
    def _consistent(self) -> ChangeOptions:
        problems = []
        if self.cutoff in ("b", "c") and (self.functional_mean is None
                                         or self.functional_sd is None):
            problems.append(f"cutoff {self.cutoff!r} needs functional_mean and functional_sd "
                            "(norms of a non-clinical population)")
        if (self.pre_session is not None and self.post_session is not None
                and self.post_session <= self.pre_session):
            problems.append(f"post_session ({self.post_session}) must come after pre_session "
                            f"({self.pre_session})")
        if self.dropout == "sessions" and self.early_sessions >= self.dropout_sessions:
            problems.append(f"early_sessions ({self.early_sessions}) must be below "
                            f"dropout_sessions ({self.dropout_sessions}): early alliance must be "
                            "measured before the dropout it predicts")
        if any(k <= 0 for k in self.rupture_sd) or any(c <= 0
                                                       for c in self.sudden_gain_critical):
            problems.append("rupture_sd and sudden_gain_critical must be positive numbers")
        if self.dropout == "column" and self.dropout_column is None:
            problems.append("dropout 'column' needs dropout_column (the 0/1 column's name)")
        if problems:
            raise ValueError("; ".join(problems))
        return self
