"""The parameters of a run: one pydantic model, loaded from a YAML file.

This module is the single source of defaults for the command line, the notebooks and the
tests. A run is described by one YAML file (see ``params/demo.yaml``)::

    name: demo
    data:
      path: ../data/demo/sessions.csv   # relative to this file
    columns:
      client_id: client_id
      therapist_id: therapist_id
      session: session
    instruments: [wai, wai_t, phq9, gad7]
    alliance: wai
    symptoms: phq9
    seed: 20261122

Any unknown key, wrong type or missing file raises :class:`AllianceParamsError` naming the
key, the value given and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, get_args, get_origin

import yaml
from pydantic import (BaseModel, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.instruments import Instrument, get_instrument
from alliance_analysis.options import (ChangeOptions, CleaningOptions, Columns, DataSource,
                                       ItemMapping, MultilevelOptions, Options, PrivacyOptions,
                                       ModelSpec, ScoringRule, SemModelSpec, SemOptions,
                                       relative_path)
from alliance_analysis.specs import BUILTIN_SEM, RobustnessSpec


M = TypeVar("M", bound=BaseModel)

#: Default seed of every random step of a run (simulation, bootstraps), for reproducibility.
DEFAULT_SEED = 20261122


class BuiltinSem(NamedTuple):
    """The built-in SEM analyses of a run (notebook ``04_sem``), each ``None`` when not fitted.

    Attributes
    ----------
    cfa, panel, growth
        The settings of the alliance CFAs, the RI-CLPM beside the CLPM and the symptom growth
        model (:class:`~alliance_analysis.options.SemOptions`).
    names
        The ``sem_models:`` entry of each analysis fitted (``cfa``, ``panel``, ``growth``).
    """

    cfa: SemOptions | None
    panel: SemOptions | None
    growth: SemOptions | None
    names: dict[str, str]

    def absent(self, kind: str) -> str:
        """What a notebook shows in place of an analysis the parameters do not list."""
        generate = {v: k for k, v in BUILTIN_SEM.items()}[kind]
        return (f"Not fitted: no sem_models entry has generate: {generate} (add one to fit "
                "this part).")


#: Entry names of the built-in SEM analyses when they come from the older ``sem:`` section.
_OLDER_SEM_NAMES = {"cfa": "alliance_cfa", "panel": "alliance_symptoms",
                    "growth": "symptom_growth"}


class RunParams(Options):
    """Every parameter of one run of the pipeline.

    Attributes
    ----------
    name
        Name of the run (letters, digits, ``-`` and ``_``); the default output folder is
        ``reports/<name>``.
    data
        The data file and how to read it.
    columns
        Which columns of the file hold the client, therapist and session.
    instruments
        Keys of the questionnaires in the data (see :mod:`alliance_analysis.instruments`).
    alliance, symptoms
        Which instrument is the alliance measure and which the symptom outcome.
    labels
        Readable names of model terms and grouping columns (term as the tables name it:
        ``I(session - 1)``, ``C(arm)[T.PDT]``, ``client_id``) for the APA model tables and
        the coefficient figures; an interaction whose whole name is not listed is labelled
        part by part (``a:b`` -> ``A × B``). Keys and labels are text; a label may not be
        empty.
    seed
        Seed of every random step of the run.
    output
        Output folder; relative to the parameters file. ``None`` means ``reports/<name>``
        in the current working directory.
    """

    name: str = Field(description="run name", pattern=r"^[A-Za-z0-9_-]+$")
    data: DataSource
    columns: Columns = Columns()
    instruments: tuple[str, ...] = Field(("wai", "wai_t", "phq9", "gad7"))
    alliance: str = Field("wai", description="the alliance instrument")
    symptoms: str = Field("phq9", description="the symptom instrument (outcome)")
    items: dict[str, ItemMapping] = Field(
        {}, description="instrument: where its items are, when not named <key>_<n>")
    custom_instruments: dict[str, dict[str, Any]] = Field(
        {}, description="instrument definitions beyond the shipped ones (see instruments.py)")
    scoring: dict[str, ScoringRule] = Field(
        {}, description="instrument: changes to its scoring rule (min_items, rounding, decimals)")
    models: dict[str, ModelSpec] = Field(
        {}, description="name: a model in lme4's formula syntax, fitted in the multilevel stage "
        "in the order given (see ModelSpec)")
    sem_models: dict[str, SemModelSpec] = Field(
        {}, description="name: a structural equation model (lavaan syntax or generated), "
        "fitted in the SEM stage in the order given (see SemModelSpec)")
    labels: dict[str, str] = Field(
        {}, description="term or column: the readable label the model tables and coefficient "
        "figures print for it, e.g. {'I(session - 1)': Session, wai_within_lag1: 'Alliance "
        "(within, previous session)'}")
    comparisons: tuple[tuple[str, str], ...] = Field(
        (), description="pairs of model names compared by a likelihood-ratio test, e.g. "
        "[[growth, growth_covariates]]")
    robustness: RobustnessSpec | None = Field(
        None, description="a specification curve over the analyst's choices, fitted in the "
        "robustness stage (see RobustnessSpec)")
    privacy: PrivacyOptions = PrivacyOptions()
    cleaning: CleaningOptions = CleaningOptions()
    multilevel: MultilevelOptions = MultilevelOptions()
    sem: SemOptions | None = Field(
        None, description="the older form of the built-in SEM analyses' settings, used only "
        "when sem_models is empty; list them under sem_models instead (generate: "
        "alliance_cfa, panel, symptom_growth)")
    change: ChangeOptions = ChangeOptions()
    seed: int = Field(DEFAULT_SEED, ge=0)
    output: Path | None = Field(None, description="output folder, relative to this file")


    @field_validator("output", mode="before")
    @classmethod
    def _resolve_output(cls, value: Any, info: ValidationInfo) -> Any:
        return relative_path(value, info, "folder path")

    @field_validator("alliance", "symptoms")
    @classmethod
    def _listed_instrument(cls, value: str, info: ValidationInfo) -> str:
        listed = info.data.get("instruments")
        if listed is not None and value not in listed:
            raise ValueError(f"must be one of the listed instruments {list(listed)}")
        return value

    @model_validator(mode="after")
    def _known_instruments(self) -> RunParams:
        """Every listed instrument is shipped or defined under ``custom_instruments``, and
        every ``scoring:`` rule names a listed instrument and gives it a valid rule."""
        for key in self.instruments:
            try:
                get_instrument(key, self.custom_instruments)
            except AllianceParamsError as exc:
                raise ValueError(f"instruments: {exc}") from None
        unknown = sorted(set(self.scoring) - set(self.instruments))
        if unknown:
            raise ValueError(f"scoring: {unknown} are not among the run's instruments "
                             f"{list(self.instruments)}")
        for key in self.scoring:
            try:
                self._instrument(key)
            except ValidationError as exc:
                message = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
                raise ValueError(f"scoring.{key}: {message}") from None
        return self

    def _instrument(self, key: str) -> Instrument:
        """One instrument with the run's ``scoring:`` changes applied."""
        instrument = get_instrument(key, self.custom_instruments)
        rule = self.scoring.get(key)
        if rule is None or not rule.overrides():
            return instrument
        return Instrument.model_validate({**instrument.model_dump(), **rule.overrides()})

    @field_validator("models", "sem_models")
    @classmethod
    def _model_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [name for name in value if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name)]
        if bad:
            raise ValueError(f"model names {bad} must be letters, digits and '_', starting "
                             "with a letter (they name the tables model_<name>_*.csv)")
        return value

    @model_validator(mode="after")
    def _builtin_sem_once(self) -> RunParams:
        """At most one ``sem_models:`` entry per built-in analysis, and ``sem:`` (the older
        form of their settings) only in a file without ``sem_models:``."""
        for generate in BUILTIN_SEM:
            names = [n for n, spec in self.sem_models.items() if spec.generate == generate]
            if len(names) > 1:
                raise ValueError(f"sem_models: {names} all have generate: {generate}; list the "
                                 "built-in analysis once (for more models write their syntax, "
                                 "or use generate: riclpm, clpm or growth)")
        if self.sem is not None and self.sem_models:
            raise ValueError("sem: (the settings of the built-in SEM analyses in older "
                             "parameter files) cannot be combined with sem_models:; list the "
                             "built-in analyses there instead: generate: alliance_cfa "
                             "(session, estimator, missing), panel (waves, missing, "
                             "constrain_autoregressive, constrain_crosslagged) and "
                             "symptom_growth (waves, early_sessions, missing)")
        return self

    def builtin_sem(self) -> BuiltinSem:
        """The built-in SEM analyses this run fits, and their settings.

        Those listed under ``sem_models:`` (``generate: alliance_cfa``, ``panel``,
        ``symptom_growth``), none of them when the entries list only the researcher's own
        models; a file without ``sem_models:`` fits all three with the ``sem:`` settings
        (the older form, or the defaults), as it always did.
        """
        if not self.sem_models:
            options = self.sem or SemOptions()
            return BuiltinSem(options, options, options, dict(_OLDER_SEM_NAMES))
        found = {BUILTIN_SEM[spec.generate]: (name, spec.sem_options())
                 for name, spec in self.sem_models.items() if spec.generate in BUILTIN_SEM}
        return BuiltinSem(*(found[k][1] if k in found else None
                            for k in ("cfa", "panel", "growth")),
                          {kind: name for kind, (name, _) in found.items()})

    def own_sem_models(self) -> dict[str, SemModelSpec]:
        """The ``sem_models:`` entries other than the built-in analyses, in order."""
        return {name: spec for name, spec in self.sem_models.items()
                if spec.generate not in BUILTIN_SEM}

    @field_validator("labels", mode="before")
    @classmethod
    def _label_mapping(cls, value: Any) -> Any:
        """``labels:`` is a mapping of text to non-empty text, said plainly when it is not."""
        example = "e.g. labels: {'I(session - 1)': Session, wai_between: 'Alliance (between)'}"
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping of a term to its readable label, {example}")
        bad = [f"{key!r}: {label!r}" for key, label in value.items()
               if not isinstance(key, str) or not isinstance(label, str) or not label.strip()]
        if bad:
            raise ValueError(f"every term and label must be text and no label empty (quote "
                             f"numbers and yes/no in YAML), {example}; not so for "
                             f"{', '.join(bad)}")
        return value

    @field_validator("comparisons", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return tuple(tuple(pair) if isinstance(pair, list) else pair for pair in value)
        return value

    @model_validator(mode="after")
    def _compared_models_exist(self) -> RunParams:
        """Every model named in ``comparisons`` is listed under ``models`` and linear."""
        for first, second in self.comparisons:
            for name in (first, second):
                if name not in self.models:
                    raise ValueError(f"comparisons: model {name!r} is not under models "
                                     f"(models: {list(self.models)})")
                if self.models[name].family != "gaussian":
                    raise ValueError(f"comparisons: model {name!r} is {self.models[name].family}"
                                     "; likelihood-ratio tests compare linear mixed models")
            if first == second:
                raise ValueError(f"comparisons: [{first}, {second}] compares a model with itself")
        return self

    @model_validator(mode="after")
    def _early_alliance_before_dropout(self) -> RunParams:
        """The multilevel dropout model's early alliance is measured before dropout counts.

        ``multilevel.early_sessions`` (the window of the multilevel stage's early alliance)
        must be below ``change.dropout_sessions`` when dropout is defined by the number of
        sessions, as ``change.early_sessions`` must (checked in :class:`ChangeOptions`).
        """
        if (self.change.dropout == "sessions"
                and self.multilevel.early_sessions >= self.change.dropout_sessions):
            raise ValueError(
                f"multilevel.early_sessions ({self.multilevel.early_sessions}) must be below "
                f"change.dropout_sessions ({self.change.dropout_sessions}): early alliance must "
                "be measured before the dropout it predicts")
        return self

    def instrument_definitions(self) -> list[Instrument]:
        """The run's instruments, in the order listed."""
        return [self._instrument(key) for key in self.instruments]

    def measures(self) -> tuple[Instrument, Instrument]:
        """The run's alliance and symptom instruments, ``(alliance, symptoms)``.

        The one way every stage and notebook looks them up (shipped or custom).
        """
        return self._instrument(self.alliance), self._instrument(self.symptoms)

    def output_dir(self) -> Path:
        """The run folder: ``output`` if set, else ``reports/<name>`` under the cwd."""
        return self.output if self.output is not None else (Path.cwd() / "reports" / self.name)

    def processed_dir(self) -> Path:
        """Where the processed (pseudonymised) session table goes: ``data/processed/<name>``."""
        return Path.cwd() / "data" / "processed" / self.name

    def to_plain(self) -> dict[str, Any]:
        """The parameters as plain YAML/JSON-able values (paths as text)."""
        return self.model_dump(mode="json")


def _describe_error(err: dict[str, Any], model: type[BaseModel]) -> str:
    """One readable line for one pydantic error: key, value given, what is allowed."""
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc) or "(top level)"
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        section: type[BaseModel] = model
        for part in loc[:-1]:
            if part not in section.model_fields:  # a key of a dict-valued field, e.g. items.wai
                continue
            annotation = section.model_fields[part].annotation
            if get_origin(annotation) is dict:
                annotation = get_args(annotation)[1]
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                section = annotation
        allowed = ", ".join(section.model_fields)
        return f"unknown key '{key}'. Allowed keys here: {allowed}"
    if err["type"] == "missing":
        return f"missing required key '{key}'"
    message = err["msg"].removeprefix("Value error, ")
    if not loc:  # a check across sections names its keys itself; never echo the whole file
        return message
    if "\n" in message:  # it shows the value itself (a formula with a caret under the problem)
        return f"key '{key}': {message}"
    return f"key '{key}': {message}; got {value!r}"


def validate_mapping(model: type[M], raw: Any, base_dir: Path, source: str) -> M:
    """Validate a parsed YAML mapping into ``model``, with readable errors.

    Parameters
    ----------
    model
        The pydantic model of the file (:class:`RunParams`, the power parameters, ...).
    raw
        The mapping read from YAML.
    base_dir
        Folder relative paths are resolved against (the parameters file's folder).
    source
        Name of the file, used in error messages.

    Raises
    ------
    AllianceParamsError
        Naming each offending key, the value given and what is allowed.
    """
    if not isinstance(raw, dict):
        raise AllianceParamsError(
            f"{source}: expected a mapping of keys to values (YAML 'key: value' lines), "
            f"got {type(raw).__name__}"
        )
    try:
        return model.model_validate(raw, context={"base_dir": Path(base_dir)})
    except ValidationError as exc:
        lines = [_describe_error(err, model) for err in exc.errors()]
        raise AllianceParamsError(
            f"{source}: {len(lines)} problem(s) in the parameters:\n  - " + "\n  - ".join(lines)
        ) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice (lines {seen[key]} and {line}); "
                    "YAML would keep only the last value. Remove one", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, example: str = "params/demo.yaml") -> tuple[Any, Path]:
    """Read a YAML parameters file; return its content and the file's folder.

    Raises
    ------
    AllianceParamsError
        When the file is missing or a folder, is not UTF-8 text, is not valid YAML (with the
        line and column), or gives a key twice in one mapping (YAML would silently keep the
        last value; we name the key and both lines).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise AllianceParamsError(f"{path} is a folder; give the path to a YAML parameters "
                                  f"file such as {example}")
    if not path.is_file():
        raise AllianceParamsError(
            f"parameters file not found: {path}. Give the path to a YAML file such as {example}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise AllianceParamsError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} on line {line}). Save "
            "the parameters file as UTF-8 (most editors: Save with encoding, UTF-8)") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # PyYAML's own text repeats the place as 'in "<unicode string>", line ...' with a
        # caret snippet; the problem (and its context) is what the reader needs.
        problem = " ".join(str(part) for part in (getattr(exc, "context", None),
                                                  getattr(exc, "problem", None)) if part)
        raise AllianceParamsError(f"{path}: not valid YAML{where}: {problem or exc}") from None
    return raw, path.resolve().parent


def parse_params(raw: Any, base_dir: Path, source: str = "parameters") -> RunParams:
    """Validate a parsed YAML mapping into :class:`RunParams` (see :func:`validate_mapping`)."""
    return validate_mapping(RunParams, raw, base_dir, source)


def load_params(path: str | Path) -> RunParams:
    """Read and validate a YAML parameters file.

    Relative paths inside the file are resolved against the file's own folder.

    Raises
    ------
    AllianceParamsError
        When the file is missing, is not valid YAML, or fails validation.
    """
    raw, folder = read_yaml(path)
    return parse_params(raw, base_dir=folder, source=str(path))


def notebook_parameters(params_file: Path, run_dir: Path, processed_dir: Path) -> dict[str, str]:
    """The papermill parameters every pipeline notebook receives.

    Notebooks take the parameters file itself (so they see exactly what the run sees) and the
    folders to write to; each notebook's ``parameters`` cell holds these names with defaults
    that run the demo from ``notebooks/``.
    """
    return {
        "params_file": str(params_file),
        "run_dir": str(run_dir),
        "processed_dir": str(processed_dir),
    }


#: Defaults of the notebooks' parameters cells (relative to ``notebooks/``): the demo run.
NOTEBOOK_DEFAULTS = notebook_parameters(
    Path("../params/demo.yaml"), Path("../reports/demo"), Path("../data/processed/demo")
)
