"""The run folder a pipeline run writes: tables, figures and headline results.

Notebooks never write files themselves; they hand results to a :class:`RunFolder`, which
writes them under stable names so that two runs with the same inputs give byte-identical
``tables/`` and ``results.json``::

    reports/<run>/
        tables/<name>.csv, <name>.md
        figures/<name>.png, <name>.svg
        results.json            headline numbers by stable key
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _plain(value: Any) -> Any:
    """A JSON-able Python value (numpy scalars to Python, NaN to None)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as deterministic JSON (sorted keys, 2-space indent, final newline)."""
    text = json.dumps(_plain(payload), indent=2, sort_keys=True, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


class RunFolder:
    """Writes one run's tables, figures and headline numbers under stable names.

    Parameters
    ----------
    path
        The run folder (created if missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def results_file(self) -> Path:
        """``results.json``: every headline number of the run, by stable key."""
        return self.path / "results.json"

    def results(self) -> dict[str, Any]:
        """The headline numbers recorded so far."""
        if not self.results_file.exists():
            return {}
        return json.loads(self.results_file.read_text(encoding="utf-8"))

    def record(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Add headline numbers to ``results.json`` (keys like ``clean.rows_read``).

        Returns the values as stored, so a notebook cell can show them.
        """
        stored = self.results()
        plain = _plain(dict(values))
        stored.update(plain)
        write_json(self.results_file, stored)
        return plain

    def write_figure(self, name: str, fig: Figure) -> list[Path]:
        """Save ``figures/<name>.png`` (300 dpi) and ``.svg``; see :func:`plots.save`."""
        from alliance_analysis.plots import save

        return save(fig, self.path / "figures", name)

    def write_table(self, name: str, table: pd.DataFrame, caption: str = "", note: str = "",
                    formatted: bool = True) -> Path:
        """Write ``tables/<name>.csv`` (tidy, full precision) and, unless ``formatted=False``
        (long listings such as the ledgers), the APA-formatted ``.md``, ``.tex`` and ``.html``
        with ``caption`` above and ``note`` below (:func:`report.write_apa_table`).

        Returns the CSV path.
        """
        from alliance_analysis.report import write_apa_table

        folder = self.path / "tables"
        folder.mkdir(exist_ok=True)
        csv_path = folder / f"{name}.csv"
        table.to_csv(csv_path, index=False, lineterminator="\n")
        if formatted:
            write_apa_table(folder, name, table, caption=caption, note=note)
        return csv_path
