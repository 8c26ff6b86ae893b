"""The researcher's specifications in the parameters file, and the base of every options model.

:class:`Options` is the base of every section of the parameters file: an unknown key is an
error and values are not coerced (pydantic's strict mode). This module holds the sections
that state analyses rather than settings: ``scoring:`` (:class:`ScoringRule`), ``models:``
(:class:`ModelSpec`), ``sem_models:`` (:class:`SemModelSpec`) and ``robustness:``
(:class:`RobustnessSpec`, with :class:`DaskSettings`), and :class:`SemOptions`, the
settings of the built-in SEM analyses that ``sem_models:`` entries name; the settings sections are in
:mod:`alliance_analysis.options`, which re-exports everything here.

This module imports nothing of the package but :mod:`alliance_analysis.formulas` (the syntax
of researchers' formulas and lavaan models).
"""

from __future__ import annotations

import itertools
import string
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alliance_analysis.formulas import (
    FormulaError,
    MixedFormula,
    lavaan_observed,
    parse_formula,
    parse_lavaan,
)


def _holds_tuple(annotation: Any) -> bool:
    """Whether a field's annotation is a tuple (or an optional tuple)."""
    if get_origin(annotation) is tuple:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_holds_tuple(arg) for arg in get_args(annotation))
    return False


class Options(BaseModel):
    """Base of every parameters section: unknown keys are errors, values are not coerced.

    YAML has no tuples: a list given for a tuple-valued field is taken as that tuple (and
    then validated strictly, element by element).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _lists_as_tuples(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        converted = dict(data)
        for name, field in cls.model_fields.items():
            key = field.alias or name
            if isinstance(converted.get(key), list) and _holds_tuple(field.annotation):
                converted[key] = tuple(converted[key])
        return converted


class ScoringRule(Options):
    """A change to one instrument's scoring rule (``scoring: {<key>: ...}`` in the parameters).

    Overrides parts of a shipped or custom instrument without restating it, e.g. to match a
    service's export that prorated the PHQ-9 from 8 of 9 items and rounded half to even::

        scoring:
          phq9: {min_items: 8, rounding: half_even}
          wai:  {min_items: 10}

    Fields left out keep the instrument's own rule (:mod:`alliance_analysis.instruments`).
    """

    min_items: int | None = Field(
        None, ge=1, description="fewest answered items for a prorated total (the instrument's "
        "prorate_min_items); subscales scale it by their share of the items")
    rounding: Literal["none", "half_even", "half_up"] | None = Field(
        None, description="round every score: none, half_even (banker's rounding) or half_up")
    decimals: int | None = Field(
        None, ge=0, le=6, description="decimals kept by the rounding (default 0: whole points)")

    def overrides(self) -> dict[str, Any]:
        """The instrument fields this rule sets (``prorate_min_items``, ``rounding``, ...)."""
        fields = {"prorate_min_items": self.min_items, "rounding": self.rounding,
                  "rounding_decimals": self.decimals}
        return {key: value for key, value in fields.items() if value is not None}


class ModelSpec(Options):
    """One researcher-stated model (an entry of ``models:`` in the parameters).

    ::

        models:
          growth:
            formula: "phq9_total ~ I(session - 1) + C(arm) + (1 + I(session - 1) | client_id) + (1 | therapist_id)"
            reml: true              # default; false = ML
            where: "session <= 20"  # optional row filter
          dropout:
            formula: "dropout ~ wai_total_early + phq9_total_first"
            family: binomial
            level: client

    The formula is lme4's (:mod:`alliance_analysis.formulas`), parsed when the parameters
    load, so a typo stops the run before any data is read. Linear models (``family:
    gaussian``) are fitted by the nested engine with Satterthwaite df; ``family: binomial``
    fits a logistic regression of a client-level 0/1 outcome (``level: client``: one row per
    client), which has no random part.

    ``bootstrap_samples`` adds parametric-bootstrap intervals of the random part
    (:func:`alliance_analysis.multilevel.bootstrap.bootstrap_random`). Its refits run in this
    process unless ``dask`` says where else (:class:`DaskSettings`: ``local`` for a cluster
    on this machine, or a scheduler's address); the intervals are the same to the last digit
    either way, whatever the number of workers::

        models:
          growth:
            formula: "phq9_total ~ I(session - 1) + (1 + I(session - 1) | client_id)"
            bootstrap_samples: 1000
            dask: {scheduler: local, workers: 4}
    """

    formula: str = Field(description="lme4 formula, e.g. 'y ~ x + (1 | client_id)'")
    reml: bool = Field(True, description="REML (default) or ML (false)")
    where: str | None = Field(
        None, description="row filter as a pandas query, e.g. 'session <= 20'")
    family: Literal["gaussian", "binomial"] = Field(
        "gaussian", description="gaussian: linear mixed model; binomial: logistic regression")
    level: Literal["session", "client"] = Field(
        "session", description="rows of the model: sessions, or one row per client")
    label: str | None = Field(None, description="a title for the report (default: the name)")
    bootstrap_samples: int = Field(
        0, ge=0, description="parametric-bootstrap samples for percentile intervals of the "
        "variance components, SDs, correlations and ICCs (0: none; 1,000 for a paper)")
    inference: Literal["satterthwaite", "wald"] = Field(
        "satterthwaite", description="tests of the fixed effects: t with Satterthwaite df "
        "(lmerTest), or Wald z (normal)")
    dask: DaskSettings | None = Field(
        None, description="where the bootstrap refits run (needs bootstrap_samples): none "
        "(default: in this process), local, or a scheduler address")

    @field_validator("formula")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            parse_formula(value)
        except FormulaError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        parsed = self.parsed()
        if self.family == "binomial" and parsed.random:
            raise ValueError(
                f"a binomial model has no random part here (a client-level logistic "
                f"regression); remove {', '.join(b.text for b in parsed.random)}")
        if self.family == "binomial" and self.level != "client":
            raise ValueError("family binomial needs level: client (one 0/1 outcome per client)")
        if self.family == "gaussian" and self.level == "session" and not parsed.random:
            raise ValueError("a linear mixed model needs a random part, e.g. "
                             "'+ (1 | client_id)'")
        if self.dask is not None and not self.bootstrap_samples:
            raise ValueError("dask says where the parametric-bootstrap refits run; set "
                             "bootstrap_samples (e.g. 1000) or remove dask")
        return self

    def parsed(self) -> MixedFormula:
        """The formula parsed into outcome, fixed part and random bars."""
        return parse_formula(self.formula)


class SemOptions(Options):
    """Settings of the three built-in SEM analyses of notebook ``04_sem``.

    The form the built-in fitters take (:func:`~alliance_analysis.sem.models.fit_cfa`,
    :func:`~alliance_analysis.sem.panel.fit_panel`, :func:`~alliance_analysis.sem.panel.
    fit_growth`). A parameters file states them as ``sem_models:`` entries (``generate:
    alliance_cfa``, ``panel``, ``symptom_growth``; :meth:`SemModelSpec.sem_options`); the
    ``sem:`` section of older parameter files, which gives them all at once, is still read
    (:meth:`alliance_analysis.params.RunParams.builtin_sem`). The defaults are the demo's.
    Sessions are the session numbers of the canonical table.
    """


    cfa_session: int = Field(
        1, ge=1, description="session whose alliance items the CFA models")
    estimator: Literal["ML", "DWLS"] = Field(
        "ML", description="CFA estimator: 'ML' treats the Likert items as continuous; 'DWLS' "
        "fits their polychoric correlations as ordinal items (lavaan's WLSMV: robust SEs, "
        "scaled-shifted chi-square; listwise)")
    waves: tuple[int, ...] = Field(
        (1, 2, 3, 4), description="sessions used as the panel waves of the RI-CLPM and CLPM "
        "(at least 3, increasing)")
    constrain_autoregressive: bool = Field(
        False, description="constrain each variable's autoregressive path equal over waves")
    constrain_crosslagged: bool = Field(
        False, description="constrain each cross-lagged path equal over waves")
    missing: Literal["fiml", "listwise"] = Field(
        "fiml", description="missing waves: full-information ML, or drop incomplete clients")
    growth_sessions: tuple[int, ...] = Field(
        (1, 2, 3, 4, 5, 6), description="sessions of the symptom latent growth model "
        "(at least 3, increasing); the slope loading is the session number minus the first")
    early_sessions: int = Field(
        3, ge=1, description="early alliance = the client's mean alliance over sessions "
        "1..early_sessions; it predicts the growth slope")


    @field_validator("waves", "growth_sessions")
    @classmethod
    def _increasing_sessions(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) < 3:
            raise ValueError("needs at least 3 sessions (fewer cannot identify the model)")
        if value[0] < 1 or any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError("must be session numbers >= 1 in increasing order, e.g. [1, 2, 3]")
        return value


#: The built-in SEM analyses a ``sem_models:`` entry can name (``generate:``), with the part
#: of notebook ``04_sem`` each one is: the alliance CFAs (one factor, three factors,
#: bifactor; omega), the RI-CLPM beside the CLPM, and the symptom growth model.
BUILTIN_SEM = {"alliance_cfa": "cfa", "panel": "panel", "symptom_growth": "growth"}

#: Per built-in analysis, the settings it takes and those it needs.
_BUILTIN_FIELDS = {
    "alliance_cfa": (("session", "estimator", "missing"), ("session",)),
    "panel": (("waves", "missing", "constrain_autoregressive", "constrain_crosslagged",
               "estimator"), ("waves",)),
    "symptom_growth": (("waves", "early_sessions", "missing", "estimator"), ("waves",)),
}


class SemModelSpec(Options):
    """One structural equation model of ``sem_models:`` in the parameters.

    Either lavaan syntax on the canonical item and score columns, fitted to one row per client
    at ``session``::

        sem_models:
          cfa_s3:
            syntax: |
              Goal =~ wai_4 + wai_6 + wai_8 + wai_11
              Task =~ wai_1 + wai_2 + wai_10 + wai_12
              Bond =~ wai_3 + wai_5 + wai_7 + wai_9
            session: 3
            estimator: ML          # ML, or WLSMV (the observed items treated as ordered)
            missing: fiml          # fiml or listwise

    or a generated panel model of two scores over sessions (``generate: riclpm`` or ``clpm``,
    with ``x``, ``y`` and ``waves``), or the latent growth of one score (``generate:
    growth``, with ``y`` and ``waves``), or one of the three built-in analyses of notebook
    ``04_sem`` on the run's alliance and symptom instruments (:data:`BUILTIN_SEM`; at most
    one entry of each)::

          alliance_cfa:
            generate: alliance_cfa   # one factor, Goal/Task/Bond, bifactor; omega
            session: 1
            estimator: ML            # ML or WLSMV
          alliance_symptoms:
            generate: panel          # RI-CLPM beside the CLPM, with path diagrams
            waves: [1, 2, 3, 4]
          symptom_growth:
            generate: symptom_growth # latent growth, early alliance predicting the slope
            waves: [1, 2, 3, 4, 5, 6]
            early_sessions: 3


          riclpm5:
            generate: riclpm
            x: wai_total
            y: phq9_total
            waves: [1, 2, 3, 4, 5]
            covariates: [gender]   # optional: predictors of the random intercepts
            group: arm             # optional: per arm, and a test of equal lagged paths

    ``group`` fits a model in each group of a client-level column; with ``invariance:``
    (a syntax model) the levels of measurement invariance over the groups are compared, as
    ``sessions:`` compares them over sessions.
    """

    syntax: str | None = Field(None, description="lavaan model syntax")
    generate: Literal["riclpm", "clpm", "growth", "alliance_cfa", "panel",
                      "symptom_growth"] | None = Field(
        None, description="a generated model instead of syntax: riclpm, clpm or growth of "
        "named scores, or a built-in analysis of the run's alliance and symptom instruments "
        "(alliance_cfa, panel, symptom_growth)")
    session: int | None = Field(None, ge=1, description="syntax models: the session whose "
                                "rows (one per client) the model is fitted to")
    sessions: tuple[int, ...] | None = Field(
        None, description="longitudinal models: a one-factor syntax measured at each of these "
        "sessions (wide data, one row per client); with invariance:, the levels are tested")
    invariance: tuple[Literal["configural", "metric", "scalar", "strict"], ...] | None = Field(
        None, description="longitudinal measurement invariance levels to fit and compare, "
        "e.g. [configural, metric, scalar]")
    group: str | None = Field(
        None, description="a client-level column: fit the model in each of its groups "
        "(multigroup; with invariance:, measurement invariance over the groups; with "
        "generate: riclpm or clpm, a test of equal lagged paths over the groups)")
    covariates: tuple[str, ...] | None = Field(
        None, description="riclpm/clpm: time-invariant client-level columns predicting the "
        "random intercepts (Mulder & Hamaker 2021, extension 1); a text column is coded "
        "0/1 per level (the first level in sorted order the reference)")
    x: str | None = Field(None, description="riclpm/clpm: the first score (e.g. wai_total)")
    y: str | None = Field(None, description="riclpm/clpm/growth: the (second) score")
    waves: tuple[int, ...] | None = Field(None, description="generated models: the sessions")
    estimator: Literal["ML", "MLR", "WLSMV"] = Field(
        "ML", description="ML (FIML with missing values); MLR: ML estimates with Huber-White "
        "SEs, the Yuan-Bentler scaled chi-square and robust fit indices (complete data or "
        "FIML); or WLSMV: DWLS on polychoric correlations of the syntax's observed items, "
        "robust SEs, scaled-shifted test")
    missing: Literal["fiml", "listwise"] = Field("fiml", description="missing values")
    constrain_autoregressive: bool = Field(False, description="riclpm/clpm: equal "
                                           "autoregressive paths over waves")
    constrain_crosslagged: bool = Field(False, description="riclpm/clpm: equal cross-lagged "
                                        "paths over waves")
    early_sessions: int | None = Field(
        None, ge=1, description="symptom_growth: early alliance = the client's mean alliance "
        "over sessions 1..early_sessions (default 3); it predicts level and slope")
    label: str | None = Field(None, description="a title for the report (default: the name)")

    @field_validator("syntax")
    @classmethod
    def _syntax_shape(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_lavaan(value)
            except FormulaError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> SemModelSpec:
        if (self.syntax is None) == (self.generate is None):
            raise ValueError("give either syntax (lavaan model syntax) or generate "
                             "(riclpm, clpm, growth, alliance_cfa, panel or "
                             "symptom_growth), not both or neither")
        if self.generate in BUILTIN_SEM:
            return self._builtin_fields()
        if self.early_sessions is not None:
            raise ValueError("early_sessions applies to generate: symptom_growth")
        if self.syntax is not None and (self.session is None) == (self.sessions is None):
            raise ValueError("a syntax model needs session (the session whose rows, one per "
                             "client, it is fitted to) or sessions (a longitudinal model), "
                             "not both")
        if self.sessions is not None:
            statements = parse_lavaan(self.syntax or "")
            if len(statements) != 1 or statements[0].op != "=~":
                raise ValueError("sessions: the syntax must be one factor, 'F =~ item + item + "
                                 "item', measured at each session")
            if len(self.sessions) < 2 or any(b <= a for a, b in
                                              zip(self.sessions, self.sessions[1:])):
                raise ValueError("sessions must be at least 2 session numbers in increasing "
                                 "order")
            if self.estimator == "WLSMV":
                raise ValueError("longitudinal models are fitted by ML or MLR")
        if self.invariance is not None and self.sessions is None and self.group is None:
            raise ValueError("invariance: needs sessions (longitudinal invariance) or group "
                             "(invariance over the groups of a column)")
        if self.group is not None and self.sessions is not None:
            raise ValueError("give sessions (invariance over sessions) or group (over groups), "
                             "not both")
        if self.group is not None and self.estimator == "WLSMV":
            raise ValueError("multigroup models are fitted by ML or MLR (FIML with missing "
                             "values); WLSMV over groups is not available")
        if self.invariance is not None and self.generate is not None:
            raise ValueError("invariance: applies to a syntax model (a measurement model); "
                             "generated models test equal lagged paths over a group instead")
        if self.covariates is not None and self.generate not in ("riclpm", "clpm"):
            raise ValueError("covariates: applies to generate: riclpm or clpm; in syntax "
                             "models write the regressions yourself")
        if self.generate is not None:
            needed = ["y", "waves"] + (["x"] if self.generate != "growth" else [])
            missing = [k for k in needed if getattr(self, k) is None]
            if missing:
                raise ValueError(f"generate: {self.generate} needs {', '.join(missing)}")
            waves = self.waves or ()
            if len(waves) < 3 or any(b <= a for a, b in zip(waves, waves[1:])):
                raise ValueError("waves must be at least 3 session numbers in increasing "
                                 "order, e.g. [1, 2, 3, 4, 5]")
            if self.estimator == "WLSMV":
                raise ValueError("generated models are fitted by ML or MLR (FIML with missing "
                                 "waves), not WLSMV")
        return self

    def _builtin_fields(self) -> SemModelSpec:
        """A built-in analysis takes only its own settings (:data:`BUILTIN_SEM`)."""
        allowed, needed = _BUILTIN_FIELDS[self.generate or ""]
        # fields set away from their defaults (a dumped and reloaded entry lists them all)
        extra = sorted(k for k, field in type(self).model_fields.items()
                       if k not in (*allowed, "generate", "label")
                       and getattr(self, k) != field.default)
        if extra:
            raise ValueError(f"generate: {self.generate} takes {', '.join(allowed)}, not "
                             f"{', '.join(extra)} (it models the run's alliance and symptom "
                             "instruments)")
        absent = [k for k in needed if getattr(self, k) is None]
        if absent:
            raise ValueError(f"generate: {self.generate} needs {', '.join(absent)}")
        if self.generate == "alliance_cfa" and self.estimator == "MLR":
            raise ValueError("generate: alliance_cfa is fitted by ML or WLSMV; for MLR write "
                             "the CFA as syntax")
        if self.generate != "alliance_cfa" and self.estimator != "ML":
            raise ValueError(f"generate: {self.generate} is fitted by ML (FIML with missing "
                             "waves)")
        if self.waves is not None:
            waves = self.waves
            if len(waves) < 3 or waves[0] < 1 or any(b <= a for a, b in zip(waves, waves[1:])):
                raise ValueError("waves must be at least 3 session numbers in increasing "
                                 "order, e.g. [1, 2, 3, 4, 5]")
        return self

    def sem_options(self) -> SemOptions:
        """A built-in entry's settings in the form the built-in fitters take."""
        if self.generate not in BUILTIN_SEM:
            raise ValueError(f"generate: {self.generate} is not a built-in analysis")
        values: dict[str, Any] = {"missing": self.missing}
        if self.generate == "alliance_cfa":
            values.update(cfa_session=self.session,
                          estimator="DWLS" if self.estimator == "WLSMV" else "ML")
        elif self.generate == "panel":
            values.update(waves=self.waves,
                          constrain_autoregressive=self.constrain_autoregressive,
                          constrain_crosslagged=self.constrain_crosslagged)
        else:
            values.update(growth_sessions=self.waves, early_sessions=self.early_sessions or 3)
        return SemOptions(**values)

    def observed(self) -> set[str]:
        """The observed variables of a syntax model (empty for generated ones)."""
        return lavaan_observed(parse_lavaan(self.syntax)) if self.syntax else set()

    def client_columns(self) -> set[str]:
        """The client-level columns the model needs: ``group`` and ``covariates``."""
        return set(self.covariates or ()) | ({self.group} if self.group else set())

    def factor_items(self) -> tuple[str, list[str]]:
        """A longitudinal model's factor name and its items, from its one-line syntax."""
        statement = parse_lavaan(self.syntax or "")[0]
        return statement.lhs, [t.strip().rsplit("*", 1)[-1].strip()
                               for t in statement.rhs.split("+")]


class DaskSettings(BaseModel):
    """Where the replicates run (``dask:`` in the power parameters).

    ``scheduler`` is ``none`` (serially, in this process: for tests and small runs), ``local``
    (a :class:`distributed.LocalCluster` of ``workers`` single-threaded processes on this
    machine, started and closed by the run) or the address of a running Dask scheduler such
    as ``tcp://10.0.0.5:8786`` (its workers need this package installed).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    scheduler: str = Field("local", description="none, local, or a scheduler address "
                           "such as tcp://host:8786")
    workers: int | None = Field(None, ge=1, description="worker processes of the local "
                                "cluster; null = one per CPU core")

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if value not in ("none", "local") and "://" not in value:
            raise ValueError("must be 'none', 'local' or a scheduler address such as "
                             "'tcp://host:8786'")
        return value

    @model_validator(mode="after")
    def _workers_only_local(self) -> DaskSettings:
        if self.workers is not None and self.scheduler != "local":
            raise ValueError(f"workers applies to scheduler 'local' only (got scheduler "
                             f"{self.scheduler!r}): an existing cluster has its own workers")
        return self


#: Largest number of specifications a robustness section may give without ``confirm: true``.
MAX_SPECIFICATIONS = 1000


class RobustnessSpec(Options):
    """A specification curve over the analyst's choices (``robustness:`` in the parameters).

    The formula has placeholders (``{name}``) whose values are listed under ``choices``;
    every combination of choices (crossed with the optional row filters ``where``) is one
    specification, fitted like a ``models:`` entry; ``target`` names the coefficient whose
    robustness is studied (with placeholders too)::

        robustness:
          formula: "phq9_total ~ I(session - 1) + {alliance}_within_lag1
                    + {alliance}_between {covariates} + {random}"
          target: "{alliance}_within_lag1"
          choices:
            alliance: [wai_total, wai_goal, wai_task, wai_bond]
            covariates: ["", "+ C(arm)"]
            random: ["(1 | client_id)", "(1 | client_id) + (1 | therapist_id)"]
          where: ["session <= 20", "session <= 12"]
          preregistered: {alliance: wai_total, covariates: "", random: "(1 | client_id)"}

    References
    ----------
    Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020). Specification curve analysis.
    *Nature Human Behaviour*, 4, 1208-1214.
    Steegen, S., Tuerlinckx, F., Gelman, A., & Vanpaemel, W. (2016). Increasing transparency
    through a multiverse analysis. *Perspectives on Psychological Science*, 11, 702-712.
    """

    formula: str = Field(description="lme4 formula with {placeholders}")
    target: str = Field(description="the coefficient studied, e.g. '{alliance}_within_lag1'")
    choices: dict[str, tuple[str, ...]] = Field(
        description="each placeholder's values; every combination is a specification")
    where: tuple[str, ...] | None = Field(
        None, description="optional row filters (pandas query), crossed with the choices")
    preregistered: dict[str, str] | None = Field(
        None, description="the planned specification: a value of every choice (and "
        "'where' when filters are given)")
    reml: bool = Field(True, description="REML (default) or ML (false)")
    max_specifications: int = Field(
        MAX_SPECIFICATIONS, ge=1, description="refuse more specifications than this unless "
        "confirm is true")
    confirm: bool = Field(False, description="fit more than max_specifications")
    joint_test: int = Field(
        0, ge=0, description="resamples of the joint test under the null (Simonsohn et al. "
        "2020); 0 = no test")
    chunk_size: int = Field(8, ge=1, description="specifications fitted (and stored) together")
    dask: DaskSettings = Field(default_factory=lambda: DaskSettings(scheduler="none"),
                               description="where the fits run: none, local or an address")

    @model_validator(mode="before")
    @classmethod
    def _choice_lists(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("choices"), dict):
            data = {**data, "choices": {key: tuple(value) if isinstance(value, list) else value
                                        for key, value in data["choices"].items()}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RobustnessSpec:
        problems = []
        used = _placeholders(self.formula) | _placeholders(self.target)
        without = sorted(used - set(self.choices))
        if without:
            problems.append(f"placeholder(s) {without} have no choices; list their values "
                            "under choices:")
        unused = sorted(set(self.choices) - used)
        if unused:
            problems.append(f"choices {unused} appear in neither formula nor target")
        empty = sorted(key for key, values in self.choices.items() if not values)
        if empty:
            problems.append(f"choices {empty} list no values")
        if self.preregistered is not None:
            keys = set(self.choices) | ({"where"} if self.where else set())
            missing_keys = sorted(keys - set(self.preregistered))
            extra_keys = sorted(set(self.preregistered) - keys)
            if missing_keys or extra_keys:
                problems.append(f"preregistered must give a value of every choice "
                                f"{sorted(keys)}; missing {missing_keys}, unknown {extra_keys}")
            else:
                options = {**self.choices, **({"where": self.where} if self.where else {})}
                wrong = {k: v for k, v in self.preregistered.items() if v not in options[k]}
                if wrong:
                    problems.append(f"preregistered values {wrong} are not among the choices")
        if problems:
            raise ValueError("; ".join(problems))
        count = self.n_specifications()
        if count > self.max_specifications and not self.confirm:
            raise ValueError(f"{count} specifications exceed max_specifications "
                             f"({self.max_specifications}); fit them all with confirm: true, "
                             "or list fewer choices")
        invalid = []
        for number, spec in enumerate(self.specifications(), start=1):
            try:
                parse_formula(spec["formula"])
            except FormulaError as exc:
                named = ", ".join(f"{k}={v!r}" for k, v in spec["choices"].items())
                invalid.append(f"specification {number} ({named}): {exc}")
        if invalid:
            raise ValueError("invalid formula in " + "; ".join(invalid[:5])
                             + (f"; and {len(invalid) - 5} more" if len(invalid) > 5 else ""))
        return self

    def n_specifications(self) -> int:
        """The number of specifications: the product of the numbers of choices (and filters)."""
        count = len(self.where) if self.where else 1
        for values in self.choices.values():
            count *= len(values)
        return count

    def specifications(self) -> list[dict[str, Any]]:
        """Every specification, in a fixed order (the choices as listed, the last varying
        fastest; filters outermost): ``{"choices", "where", "formula", "target"}``."""
        keys = list(self.choices)
        out = []
        for where in (self.where or (None,)):
            for values in itertools.product(*(self.choices[k] for k in keys)):
                chosen = dict(zip(keys, values, strict=True))
                out.append({"choices": chosen, "where": where,
                            "formula": " ".join(self.formula.format_map(chosen).split()),
                            "target": self.target.format_map(chosen).strip()})
        return out

    def is_preregistered(self, spec: dict[str, Any]) -> bool:
        """Whether a specification is the preregistered one."""
        if self.preregistered is None:
            return False
        wanted = dict(self.preregistered)
        where = wanted.pop("where", None)
        return spec["choices"] == wanted and (not self.where or spec["where"] == where)


def _placeholders(text: str) -> set[str]:
    """The ``{name}`` placeholders of a formula or target."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}
