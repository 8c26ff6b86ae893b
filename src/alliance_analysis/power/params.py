"""The parameters of a Monte Carlo power study: a pydantic model loaded from YAML.

A power study is described by one YAML file (see ``params/power.yaml``)::

    name: power-demo
    model: within_between          # or therapist_alliance
    engine: engine                 # or statsmodels
    design:                        # any SimulationDesign field: one value, or a list (a grid)
      therapists: 10
      clients_per_therapist: [4, 8]
      within_effect: [0.0, -1.5]
    replicates: 40
    seed: 20261122
    dask:
      scheduler: local             # none | local | tcp://host:8786
    out: ../reports/power          # relative to this file

Every design field listed with several values is crossed with every other: the *design
points* are the Cartesian product, in the order of the fields of
:class:`~alliance_analysis.data.simulate.SimulationDesign` and of the values as listed. Any
unknown key, wrong type or impossible design raises :class:`AllianceParamsError` naming the
key, the value given and what is allowed.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.multilevel.models import random_part
from alliance_analysis.options import MultilevelOptions
from alliance_analysis.params import read_yaml, validate_mapping
from alliance_analysis.options import relative_path
from alliance_analysis.specs import DaskSettings  # re-exported: power.params.DaskSettings
from alliance_analysis.data.simulate import DEFAULT_SEED, SimulationDesign

#: The target terms of each model; the first is the default.
TARGETS: dict[str, tuple[str, ...]] = {
    "within_between": ("wai_within_lag1", "wai_between"),
    "therapist_alliance": ("therapist_variance",),
}

#: Each target in words, for titles and tables.
TARGET_LABELS = {"wai_within_lag1": "within-client alliance effect",
                 "wai_between": "between-client alliance effect",
                 "therapist_variance": "therapist variance of alliance"}

#: Design fields that set the size of a study (the rest describe the population studied).
SIZE_FIELDS = ("therapists", "clients_per_therapist", "max_sessions")


# DaskSettings lives with the other strict settings (alliance_analysis.specs): the robustness
# stage uses it too; it is re-exported here for the power study.
class PowerParams(BaseModel):
    """Every parameter of one Monte Carlo power study.

    Attributes
    ----------
    name
        Name of the study (letters, digits, ``-``, ``_``); the default output folder is
        ``reports/<name>`` under the current folder.
    model
        ``within_between``: next-session PHQ-9 on the person-mean-centred, lagged WAI-SR
        (:func:`alliance_analysis.multilevel.models.within_between_model`); ``therapist_alliance``:
        is there therapist variance in alliance (random-intercept models of the WAI-SR with
        and without a therapist level, compared by a likelihood-ratio test).
    target
        The term whose power is studied: ``wai_within_lag1`` (default) or ``wai_between``
        for ``within_between``; ``therapist_variance`` for ``therapist_alliance``.
    engine
        ``engine`` (:func:`alliance_analysis.multilevel.engine.nested.fit_nested`, fast) or ``statsmodels``
        (the fits of :mod:`alliance_analysis.multilevel.models`, as the pipeline runs them).
    design
        :class:`~alliance_analysis.data.simulate.SimulationDesign` fields: a single value (the
        same in every design point) or a list of values (crossed with the other lists).
        Fields not given keep the simulation's defaults.
    replicates
        Simulated studies per design point.
    chunk_size
        Replicates per stored chunk and per Dask task: an interrupted run loses at most the
        chunks in flight.
    seed
        Root seed; replicate ``r`` of design point ``i`` uses the ``SeedSequence`` child with
        spawn key ``(i, r)``.
    alpha
        Significance level of every test (power is the share of replicates with p < alpha).
    target_power
        Power a design must reach to count as adequate.
    mc_ci_level
        Confidence level of the Monte Carlo (Wilson) interval of power.
    multilevel
        Model options (REML/ML, levels, slopes, time, lagged outcome, detrending,
        ``ci_level`` of the intervals whose coverage is reported, optimizers); see
        :class:`~alliance_analysis.options.MultilevelOptions`. ``therapist_alliance``
        uses only ``reml``, ``ci_level``, ``optimizers`` and ``max_iter`` (its two models
        are fixed by the question asked).
    dask
        Where the replicates run.
    out
        Output folder, relative to the parameters file; ``None``: ``reports/<name>``.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field("power", pattern=r"^[A-Za-z0-9_-]+$", description="study name")
    model: Literal["within_between", "therapist_alliance"] = Field(
        "within_between", description="the model fitted to each replicate")
    target: Literal["wai_within_lag1", "wai_between", "therapist_variance"] | None = Field(
        None, description="the term whose power is studied; null = the model's first target")
    engine: Literal["engine", "statsmodels"] = Field("engine", description="model fitter")
    design: dict[str, Any] = Field({}, description="SimulationDesign field: value or list")
    replicates: int = Field(100, ge=2, description="simulated studies per design point")
    chunk_size: int = Field(10, ge=1, description="replicates per stored chunk and task")
    seed: int = Field(DEFAULT_SEED, ge=0, description="root seed of every replicate")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level")
    target_power: float = Field(0.8, gt=0, lt=1, description="power a design must reach")
    mc_ci_level: float = Field(0.95, gt=0, lt=1, description="level of power's Monte Carlo CI")
    multilevel: MultilevelOptions = MultilevelOptions()
    dask: DaskSettings = DaskSettings()
    out: Path | None = Field(None, description="output folder, relative to this file")

    @field_validator("design")
    @classmethod
    def _design_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        allowed = SimulationDesign.model_fields
        for key, values in value.items():
            if key not in allowed:
                raise ValueError(f"unknown design field '{key}'. Allowed: {', '.join(allowed)}")
            listed = values if isinstance(values, list) else [values]
            if not listed:
                raise ValueError(f"design field '{key}' has an empty list; give at least one "
                                 "value")
            if any(isinstance(v, bool) or not isinstance(v, int | float) for v in listed):
                raise ValueError(f"design field '{key}' must be a number or a list of "
                                 f"numbers; got {values!r}")
            if len(set(listed)) < len(listed):
                raise ValueError(f"design field '{key}' lists a value twice: {values!r}")
        return value

    @field_validator("out", mode="before")
    @classmethod
    def _resolve_out(cls, value: Any, info: ValidationInfo) -> Any:
        return relative_path(value, info, "folder path")

    @model_validator(mode="after")
    def _consistent(self) -> PowerParams:
        if self.target is not None and self.target not in TARGETS[self.model]:
            raise ValueError(f"target '{self.target}' is not a target of model "
                             f"'{self.model}'; allowed: {', '.join(TARGETS[self.model])}")
        for index, point in enumerate(_grid(self.design)):
            try:
                SimulationDesign(**point)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'design'}: "
                                     + e["msg"].removeprefix("Value error, ")
                                     for e in exc.errors())
                raise ValueError(f"design point {index + 1} ({_point_text(point)}) is not a "
                                 f"valid design: {problems}") from None
        if self.engine == "statsmodels" and self.model == "within_between":
            try:
                random_part(self.multilevel, self.multilevel.time)
            except AllianceParamsError as exc:
                raise ValueError(f"engine statsmodels: {exc}; or use engine: engine") from None
        return self

    def target_term(self) -> str:
        """The target term: ``target``, or the model's default."""
        return self.target or TARGETS[self.model][0]

    def design_points(self) -> list[SimulationDesign]:
        """The design points: the Cartesian product of the listed values (see module notes)."""
        return [SimulationDesign(**point) for point in _grid(self.design)]

    def varying_fields(self) -> list[str]:
        """Design fields listed with more than one value, in SimulationDesign's order."""
        return [key for key in SimulationDesign.model_fields
                if isinstance(self.design.get(key), list) and len(self.design[key]) > 1]

    def output_dir(self) -> Path:
        """The study's folder: ``out`` if set, else ``reports/<name>`` under the cwd."""
        return self.out if self.out is not None else Path.cwd() / "reports" / self.name


def _grid(design: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the design's values, fields in SimulationDesign's order."""
    keys = [key for key in SimulationDesign.model_fields if key in design]
    values = [design[k] if isinstance(design[k], list) else [design[k]] for k in keys]
    return [dict(zip(keys, combination, strict=True))
            for combination in itertools.product(*values)]


def _point_text(point: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in point.items())


def parse_power_params(raw: Any, base_dir: Path, source: str = "power parameters"
                       ) -> PowerParams:
    """Validate a parsed YAML mapping into :class:`PowerParams`.

    See :func:`alliance_analysis.params.validate_mapping`: errors name each offending key,
    the value given and what is allowed (:class:`AllianceParamsError`).
    """
    return validate_mapping(PowerParams, raw, base_dir, source)


def load_power_params(path: str | Path, out: str | Path | None = None) -> PowerParams:
    """Read and validate a power parameters file (``out`` relative to the file's folder).

    Parameters
    ----------
    path
        The YAML file, e.g. ``params/power.yaml``.
    out
        Output folder instead of the file's ``out`` (relative to the current folder), as
        ``alliance power --out`` and the notebook's ``out_dir`` give it.

    Raises
    ------
    AllianceParamsError
        When the file is missing, is not valid YAML, or fails validation.
    """
    raw, folder = read_yaml(path, example="params/power.yaml")
    params = parse_power_params(raw, base_dir=folder, source=str(path))
    if out is not None:
        params = params.model_copy(update={"out": Path(out).resolve()})
    return params
