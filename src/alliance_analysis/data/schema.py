"""The canonical session table: its pandera schema and its codebook.

Long format, one row per client and session (DESIGN.md): ``source_row``, ``therapist_id``,
``client_id`` (pseudonymised text), ``session`` (integer >= 1), ``day`` (days since the client's
first session, optional), client covariates, and per instrument the items ``<key>_<n>``, the
scores ``<key>_total`` / ``<key>_<subscale>``, the answered-item count ``<key>_n_items`` and,
where the instrument has severity bands, ``<key>_band``.

The schema is checked on every processed table before it is written, so a later notebook can
rely on it; a failure here is a bug in the workbench, not in the researcher's data (bad data
is caught, with a ledger entry, by :mod:`alliance_analysis.data.cleaning`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pandas as pd
import pandera.pandas as pa

from alliance_analysis.instruments import Instrument

#: Column holding each row's 1-based data row number in the source file (header not counted).
SOURCE_ROW = "source_row"

_MEANINGS = {
    "source_row": "data row number in the input file (1 = first row after the header)",
    "client_id": "client pseudonym (keyed hash of the original ID)",
    "therapist_id": "therapist pseudonym (keyed hash of the original ID)",
    "session": "session number (1 = first session)",
    "day": "days since the client's first session",
}


def session_schema(instruments: Sequence[Instrument]) -> pa.DataFrameSchema:
    """The pandera schema of the cleaned, scored session table.

    Parameters
    ----------
    instruments
        The run's instruments; their item and score columns get range checks.

    Returns
    -------
    pandera.DataFrameSchema
        Columns not named here (covariates) are allowed; ``(client_id, session)`` is unique.
    """
    columns: dict[str, pa.Column] = {
        "source_row": pa.Column(int, pa.Check.ge(1), unique=True),
        "client_id": pa.Column(str, nullable=False),
        "therapist_id": pa.Column(str, nullable=False),
        "session": pa.Column("Int64", pa.Check.ge(1), nullable=False),
        "day": pa.Column(checks=pa.Check.ge(0), nullable=True, required=False),
    }
    for instrument in instruments:
        for item in instrument.items():
            columns[item] = pa.Column(float, pa.Check.in_range(instrument.item_min,
                                                               instrument.item_max),
                                      nullable=True)
        low, high = instrument.total_range()
        columns[instrument.score_column()] = pa.Column(
            float, pa.Check.in_range(low, high), nullable=True, required=False)
    return pa.DataFrameSchema(columns, unique=["client_id", "session"], strict=False)


def _meaning(column: str, instruments: Sequence[Instrument]) -> str:
    if column in _MEANINGS:
        return _MEANINGS[column]
    for instrument in instruments:
        if column in instrument.items():
            number = instrument.items().index(column) + 1
            reverse = " (reverse-keyed)" if number in instrument.reverse else ""
            return (f"{instrument.name}: item {number}{reverse}, "
                    f"{instrument.item_min}-{instrument.item_max}")
        low, high = instrument.total_range()
        if column == instrument.score_column():
            return f"{instrument.name}: total ({instrument.scoring} of items, {low:g}-{high:g})"
        if column == f"{instrument.key}_n_items":
            return f"{instrument.name}: number of items answered"
        if column == f"{instrument.key}_band":
            return f"{instrument.name}: severity band of the total"
        for subscale in instrument.subscales:
            if column == instrument.score_column(subscale):
                return f"{instrument.name}: {subscale} subscale ({instrument.scoring} of items)"
    return "client covariate"


def codebook(sessions: pd.DataFrame, instruments: Sequence[Instrument],
             source_columns: Mapping[str, str], unused: Sequence[str] = (),
             value_labels: Mapping[str, Mapping[object, str]] | None = None,
             derived: Mapping[str, str] | None = None,
             column_labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Describe every column of the processed table, and every input column left out.

    Parameters
    ----------
    sessions
        The processed session table.
    instruments
        The run's instruments.
    source_columns
        ``{canonical column: column in the input file}``.
    unused
        Input columns the run did not use.
    value_labels
        SPSS/Stata value labels by input column.
    derived
        ``{column: how it was derived}`` for columns with no single source column.
    column_labels
        SPSS/Stata variable labels by input column.

    Returns
    -------
    pandas.DataFrame
        ``column, type, meaning, source_column, source_label, value_labels, labels_applied,
        status`` (status ``used`` or ``not used``); value labels as JSON text;
        ``labels_applied`` says, for a column whose source has value labels, whether the
        table holds the labels (``yes``: a covariate whose categories are named, see
        :func:`alliance_analysis.data.mapping.apply_labels`) or the numeric codes (``no``: items,
        IDs, sessions), and is empty for a column without value labels.
    """
    labels = value_labels or {}
    derived = derived or {}
    variable_labels = column_labels or {}
    rows = []
    for column in sessions.columns:
        source = source_columns.get(column, derived.get(column, "computed"))
        rows.append({
            "column": column, "type": str(sessions[column].dtype),
            "meaning": _meaning(column, instruments), "source_column": source,
            "source_label": variable_labels.get(source, ""),
            "value_labels": json.dumps({str(k): v for k, v in labels.get(source, {}).items()},
                                       ensure_ascii=False) if source in labels else "",
            "labels_applied": _labels_applied(sessions[column], labels.get(source)),
            "status": "used",
        })
    for column in unused:
        rows.append({"column": "", "type": "", "meaning": "input column not used by this run",
                     "source_column": column, "source_label": variable_labels.get(column, ""),
                     "value_labels": "", "labels_applied": "", "status": "not used"})
    return pd.DataFrame(rows)


def _labels_applied(values: pd.Series, labels: Mapping[object, str] | None) -> str:
    """``yes`` when the column holds its value labels, ``no`` when it holds the codes."""
    if not labels:
        return ""
    names = {str(label) for label in labels.values()}
    return "yes" if values.dropna().astype(str).isin(names).any() else "no"
