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

from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.change import ChangeOptions
from alliance_analysis.instruments import Instrument, get_instrument
from alliance_analysis.multilevel import MultilevelOptions
from alliance_analysis.sem import SemOptions

#: File formats the readers understand; ``auto`` chooses from the file extension.
DATA_FORMATS = ("auto", "csv", "xlsx", "sav", "dta", "parquet")

M = TypeVar("M", bound=BaseModel)

#: Default seed of every random step of a run (simulation, bootstraps), for reproducibility.
DEFAULT_SEED = 20261122


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


class _Strict(BaseModel):
    """Base of every parameters section: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataSource(_Strict):
    """Where the session data comes from.

    ``path`` is resolved relative to the directory of the parameters file, and must exist.
    """

    path: Path = Field(description="the session data file (csv, xlsx, sav, dta or parquet)")
    format: Literal["auto", "csv", "xlsx", "sav", "dta", "parquet"] = Field(
        "auto", description="file format; 'auto' reads it from the extension"
    )
    sheet: str | int | None = Field(None, description="Excel sheet name or 0-based index")
    delimiter: str | None = Field(None, description="CSV delimiter; None detects , ; or tab")
    encoding: str | None = Field(None, description="CSV encoding; None detects UTF-8, UTF-16, Windows-1252 or Latin-1")

    @field_validator("path", mode="before")
    @classmethod
    def _resolve_path(cls, value: Any, info: ValidationInfo) -> Path:
        path = relative_path(value, info, "file path")
        if path is None or not path.is_file():
            raise ValueError(f"file not found: {path}. Check the path; it is read relative to "
                             "the parameters file's folder")
        return path


class Columns(_Strict):
    """Mapping from the canonical column names to the names used in the researcher's file."""

    client_id: str = Field("client_id", description="client identifier column")
    therapist_id: str = Field("therapist_id", description="therapist identifier column")
    session: str = Field("session", description="session number column (1, 2, ...)")
    day: str | None = Field("day", description="days since the client's first session, if any")
    date: str | None = Field(
        None, description="calendar date of each session; turned into `day` and then dropped")
    covariates: tuple[str, ...] = Field(
        ("age_band", "gender", "arm"), description="client-level covariates to keep"
    )

    @field_validator("covariates", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


class ItemMapping(_Strict):
    """Where one instrument's items are in the researcher's file.

    Give either ``columns`` (the source column of item 1, 2, ... in order) or ``pattern``
    (a name with ``{n}`` standing for the item number, e.g. ``"WAI{n}"`` or ``"phq_{n:02d}"``).
    """

    columns: tuple[str, ...] | None = None
    pattern: str | None = None

    @field_validator("columns", mode="before")
    @classmethod
    def _columns_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

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


class PrivacyOptions(_Strict):
    """The anonymisation gate (see :mod:`alliance_analysis.privacy`)."""

    drop: tuple[str, ...] = Field((), description="identifier columns to drop on reading")
    allow: dict[str, str] = Field(
        {}, description="column: reason it is not a direct identifier (recorded in the manifest)")
    key_file: Path | None = Field(
        None, description="secret key of the pseudonym hash; default <processed>/pseudonym.key")
    min_cell_size: int = Field(5, ge=1, description="smallest count shown in reported tables")

    @field_validator("drop", mode="before")
    @classmethod
    def _drop_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("key_file", mode="before")
    @classmethod
    def _resolve_key(cls, value: Any, info: ValidationInfo) -> Any:
        return relative_path(value, info, "file path")


class CleaningOptions(_Strict):
    """The cleaning rules that have choices (see :mod:`alliance_analysis.cleaning`)."""

    duplicates: Literal["keep_first", "keep_last", "exclude_both"] = Field(
        "keep_first", description="conflicting rows of the same client and session "
        "(identical rows always keep one)")
    multiple_therapists: Literal["flag", "split"] = Field(
        "flag", description="a client seen by more than one therapist: flag it, or split the "
        "client into one client per therapist")
    date_order: Literal["flag", "exclude"] = Field(
        "flag", description="sessions whose day goes backwards: flag them, or exclude them")
    min_sessions: int = Field(1, ge=1, description="clients with fewer kept sessions are excluded")


class RunParams(_Strict):
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
    privacy: PrivacyOptions = PrivacyOptions()
    cleaning: CleaningOptions = CleaningOptions()
    multilevel: MultilevelOptions = MultilevelOptions()
    sem: SemOptions = SemOptions()
    change: ChangeOptions = ChangeOptions()
    seed: int = Field(DEFAULT_SEED, ge=0)
    output: Path | None = Field(None, description="output folder, relative to this file")

    @field_validator("instruments", mode="before")
    @classmethod
    def _instruments_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

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
        """Every listed instrument is shipped or defined under ``custom_instruments``."""
        for key in self.instruments:
            try:
                get_instrument(key, self.custom_instruments)
            except AllianceParamsError as exc:
                raise ValueError(f"instruments: {exc}") from None
        return self

    def instrument_definitions(self) -> list[Instrument]:
        """The run's instruments, in the order listed."""
        return [get_instrument(key, self.custom_instruments) for key in self.instruments]

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


def read_yaml(path: str | Path, example: str = "params/demo.yaml") -> tuple[Any, Path]:
    """Read a YAML parameters file; return its content and the file's folder.

    Raises
    ------
    AllianceParamsError
        When the file is missing or is not valid YAML (with the line and column).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise AllianceParamsError(
            f"parameters file not found: {path}. Give the path to a YAML file such as {example}"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise AllianceParamsError(f"{path}: not valid YAML{where}: {exc}") from None
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
