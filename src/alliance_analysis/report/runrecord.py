"""What a run folder says was done: :class:`RunRecord` reads its headline numbers
(``results.json``), its index of outputs (``outputs.json``) and its tables, for the methods
text and the manuscript to describe what was actually fitted."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


#: The stage that writes each family of ``results.json`` keys (for runs without an index).
_STAGE_OF_KEY = {"clean": "01_clean", "describe": "02_describe", "models": "03_multilevel",
                 "multilevel": "03_multilevel", "sem": "04_sem", "change": "05_change",
                 "robustness": "06_robustness"}


@dataclass(frozen=True)
class RunRecord:
    """What a run folder says was done: its headline numbers, its output index, its tables.

    Attributes
    ----------
    folder
        The run folder.
    results
        ``results.json``: headline numbers by key (``models.<name>.n_obs``, ...).
    outputs
        ``outputs.json``: ``{"tables": {name: entry}, "figures": {name: entry}}``, each entry
        with ``stage``, ``title``, ``note``, ``files`` and ``flags`` (one
        ``{model, converged, singular, warnings}`` per model shown).
    """

    folder: Path
    results: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: str | Path) -> RunRecord:
        """Read ``results.json`` and ``outputs.json`` of ``folder`` (absent files: empty)."""
        folder = Path(folder)

        def load(name: str) -> dict[str, Any]:
            path = folder / name
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

        outputs = load("outputs.json")
        return cls(folder, load("results.json"),
                   {"tables": outputs.get("tables", {}), "figures": outputs.get("figures", {})})

    def stages(self) -> set[str]:
        """The stages that wrote something (``01_clean``, ...)."""
        stages = {entry.get("stage") for kind in self.outputs.values()
                  for entry in kind.values()}
        stages |= {_STAGE_OF_KEY[key.split(".")[0]] for key in self.results
                   if key.split(".")[0] in _STAGE_OF_KEY}
        return {s for s in stages if s}

    def ran(self, stage: str) -> bool:
        """Whether ``stage`` wrote any table, figure or headline number."""
        return stage in self.stages()

    def entry(self, name: str, kind: str = "tables") -> dict[str, Any] | None:
        """The index entry of a table (or figure), None if the run did not write it."""
        return self.outputs.get(kind, {}).get(name)

    def table(self, name: str) -> pd.DataFrame | None:
        """``tables/<name>.csv`` (full precision), None if absent or empty."""
        path = self.folder / "tables" / f"{name}.csv"
        if not path.is_file():
            return None
        try:
            return pd.read_csv(path)
        except (ValueError, pd.errors.EmptyDataError):
            return None

    def flags(self, stage: str | None = None,
              exclude_prefix: str | None = None) -> dict[str, dict]:
        """The flags of every model a stage's outputs (every stage's, with ``stage`` None)
        show, by model name (first seen)."""
        seen: dict[str, dict] = {}
        for kind in ("tables", "figures"):
            for name, entry in sorted(self.outputs.get(kind, {}).items()):
                if (stage is not None and entry.get("stage") != stage) or (
                        exclude_prefix and name.startswith(exclude_prefix)):
                    continue
                for flag in entry.get("flags", []):
                    seen.setdefault(flag["model"], flag)
        return seen
