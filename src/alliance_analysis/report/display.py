"""What a notebook cell shows: tables and headline numbers formatted once, the APA way.

A notebook that ends a cell with a bare DataFrame shows six-decimal floats, ``1.3e-40`` p values
and text cut at 50 characters; a dictionary of results shows ``np.float64(...)`` reprs. The
notebooks and tutorials show their results through the three functions here instead:

* :func:`show` for a table (the numbers as :func:`alliance_analysis.report.tables.format_apa`
  formats them in the run folder's tables: two decimals, APA p values, ``[low, high]``
  confidence intervals; text is never cut);
* :func:`show_values` for a mapping of named numbers or settings (``results.json`` keys, a
  model comparison, the options of a run) as a two-column table;
* :func:`show_notes` for a list of remarks.

Each returns a :class:`Shown`, which Jupyter renders as an HTML table (with its caption above
and its note below, ready to paste into a manuscript) and which prints as plain text. The
numbers themselves are not changed: the CSV files of the run folder keep full precision.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from alliance_analysis.report.tables import format_apa, format_column

#: Rows shown of a longer table (the rest is summarised in a line under it).
MAX_ROWS = 200


class Shown:
    """A formatted table for a notebook: HTML in Jupyter, plain text elsewhere.

    Attributes
    ----------
    table
        The formatted table (text cells), as shown.
    caption, note
        Shown above and below the table ("" for none).
    index
        Whether the row labels are shown (they are unless they are the default 0, 1, 2, ...).
    """

    def __init__(self, table: pd.DataFrame, caption: str = "", note: str = "",
                 index: bool = False) -> None:
        self.table = table
        self.caption = caption
        self.note = note
        self.index = index

    def _repr_html_(self) -> str:
        body = self.table.to_html(index=self.index, border=0, classes="apa", escape=True,
                                  na_rep="")
        caption = (f"<figcaption><strong>{html.escape(self.caption)}</strong></figcaption>"
                   if self.caption else "")
        note = f"<p class='note'><em>Note.</em> {html.escape(self.note)}</p>" if self.note \
            else ""
        return f"<figure class='table'>{caption}{body}{note}</figure>"

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", None, "display.max_rows", None,
                               "display.max_columns", None, "display.width", 120):
            text = self.table.to_string(index=self.index)
        parts = [self.caption, text, f"Note. {self.note}" if self.note else ""]
        return "\n\n".join(part for part in parts if part)

    def to_markdown(self) -> str:
        """The table as Markdown (caption in bold above, note below)."""
        text = self.table.to_markdown(index=self.index, disable_numparse=True)
        return "\n\n".join(part for part in (f"**{self.caption}**" if self.caption else "",
                                              text, f"*Note.* {self.note}" if self.note else "")
                           if part)


def show(table: pd.DataFrame | pd.Series, caption: Any = None, note: str | None = None,
         ci_level: float = 0.95, max_rows: int = MAX_ROWS) -> Shown:
    """Show a table in a notebook with APA-formatted numbers, never cutting its text.

    Parameters
    ----------
    table
        A tidy table (a Series is shown as a one-column table).
    caption, note
        Shown above and below the table. ``caption`` may also be a caption object with a
        ``title`` and a ``note`` (such as the change stage's), shown as both.
    ci_level
        The level named in the heading of the merged ``ci_low``/``ci_high`` column.
    max_rows
        Longer tables show their first ``max_rows`` rows and say how many were left out.

    Returns
    -------
    Shown
        Rendered by Jupyter as an HTML table.

    Notes
    -----
    Numbers are formatted by :func:`alliance_analysis.report.tables.format_apa`, as in the run
    folder's ``.md``/``.html`` tables; lists in a cell (e.g. a fit's warnings) are joined with
    "; ". Row labels are shown when they mean something (a named or non-default index, such
    as the variables of a correlation matrix).
    """
    if hasattr(caption, "title") and hasattr(caption, "note"):
        caption, note = caption.title, " ".join(filter(None, (caption.note, note)))
    frame = table.to_frame() if isinstance(table, pd.Series) else table
    index = not _default_index(frame.index)
    note_text = note or ""
    if len(frame) > max_rows:
        left = f"{len(frame) - max_rows} more rows not shown."
        note_text = f"{note_text} {left}".strip()
        frame = frame.iloc[:max_rows]
    frame = frame.assign(**{str(c): frame[c].map(_cell) for c in frame.columns
                            if frame[c].dtype == object})
    formatted = format_apa(frame, ci_level=ci_level)
    if index:
        formatted.index = [_label(v) for v in formatted.index]
    formatted.columns = [_label(c) for c in formatted.columns]
    return Shown(formatted, caption or "", note_text, index=index)


def show_values(values: Mapping[Any, Any] | pd.Series, caption: str | None = None,
                note: str | None = None, like: str | None = None,
                names: tuple[str, str] = ("quantity", "value")) -> Shown:
    """Show named numbers or settings as a two-column table, each value formatted.

    Parameters
    ----------
    values
        A mapping (or Series) such as the ``results.json`` numbers a stage recorded, a model
        comparison or the options of a run.
    caption, note
        Shown above and below the table.
    like
        Format every value as :func:`~alliance_analysis.report.tables.format_apa` formats the
        column of that name (e.g. ``"icc"``: no leading zero; ``"percent"``: one decimal).
        By default each value is formatted by the last part of its own name: ``p`` and
        ``p_...`` as p values, names containing ``percent`` to one decimal, names of values
        bounded by 1 (``alpha``, ``cfi``, ``rmsea``, ...) without the leading zero.
    names
        The two column headings.

    Returns
    -------
    Shown
        Rendered by Jupyter as an HTML table.

    Notes
    -----
    Lists and tuples are shown as their formatted elements separated by commas, nested
    mappings as ``key: value`` pairs, and None or an empty list as "none".
    """
    rows = [(_label(key), _value(value, like or _kind(key))) for key, value in values.items()]
    table = pd.DataFrame(rows, columns=list(names))
    return Shown(table, caption or "", note or "")


def show_notes(notes: Iterable[str], none: str = "Nothing to note.") -> Any:
    """Show remarks as a bulleted Markdown list (``none`` when there are none)."""
    from IPython.display import Markdown

    items = [str(note) for note in notes]
    return Markdown("\n".join(f"* {item}" for item in items) if items else none)


def _default_index(index: pd.Index) -> bool:
    return (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
            and index.name is None)


def _label(value: object) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def _cell(value: object) -> object:
    """A cell as format_apa can format it: sequences joined, everything else unchanged."""
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return "; ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return value


def _kind(key: object) -> str:
    """The column name whose formatting a value named ``key`` follows."""
    last = str(key).rsplit(".", 1)[-1]
    if last in ("p", "p_value", "pvalue") or last.startswith("p_"):
        return "p"
    return last


def _one(value: object, kind: str) -> str:
    if value is None:
        return "none"
    if isinstance(value, np.generic):
        value = value.item()
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    column = kind if (kind != "p" or number) else "value"
    column = "value" if column in ("ci_low", "ci_high") else column
    # format_apa of a one-column table is format_column of that column
    return str(format_column(column, pd.Series([value], dtype=None if number else object))
               .iloc[0])


def _value(value: object, kind: str) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_value(v, _kind(k))}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return ", ".join(_one(v, kind) for v in value) or "none"
    return _one(value, kind)
