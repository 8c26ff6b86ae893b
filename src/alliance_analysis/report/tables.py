"""Tables in APA style: numbers formatted as APA 7 asks, written as Markdown, LaTeX and HTML."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


#: Columns whose values cannot exceed 1 in absolute value: printed without a leading zero (APA).
BOUNDED = {"p", "alpha", "std_alpha", "omega_total", "omega_h", "cfi", "tli", "rmsea",
           "rmsea_ci_low", "rmsea_ci_high", "srmr", "icc", "r", "correlation", "std_estimate",
           "cfi_scaled", "tli_scaled", "rmsea_scaled", "cfi_robust", "tli_robust",
           "rmsea_robust", "r2_marginal", "r2_conditional", "power", "share", "std_all",
           "pvalue", "pvalue_scaled", "p_diff", "p_value"}

#: Columns holding counts: printed as integers whenever every value is whole.
COUNT_PREFIXES = ("n_", "n.", "count", "clients", "therapists", "sessions", "rows", "k_")


def format_p(p: float) -> str:
    """A p value in APA style: ``< .001``, else three decimals without the leading zero."""
    if p is None or pd.isna(p):
        return ""
    if p < 0.001:
        return "< .001"
    return f"{p:.3f}".lstrip("0")


def _numbers(values: pd.Series) -> np.ndarray:
    """``pd.to_numeric(values, errors="coerce")`` as a float array (missing as NaN), without
    pandas' conversion for the columns that are numbers already (most of them)."""
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iuf":
        return values.to_numpy(dtype=float)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def is_count(column: str, values: pd.Series) -> bool:
    """Whether a column holds counts: a count-like name (``n``, ``n_*``, ``*_n``, ``count``,
    ``clients`` ...) or an integer type, and every value whole."""
    name = column.lower()
    named = (name in ("n", "df", "k", "npar", "n_obs") or name.startswith(COUNT_PREFIXES)
             or name.endswith(("_n", "_count", "_clients", "_sessions", "_therapists")))
    if pd.api.types.is_bool_dtype(values):
        return False
    numbers = _numbers(values)
    numbers = numbers[~np.isnan(numbers)]
    if not len(numbers):
        return False
    whole = bool(np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)))
    return whole and (named or pd.api.types.is_integer_dtype(values))


def is_se(column: str) -> bool:
    """Whether a column holds standard errors (``se``, ``*_se``, ``se_*``, ``std_error``)."""
    name = column.lower()
    return name in ("se", "std_error", "sd_error") or name.endswith("_se") or \
        name.startswith("se_")


def decimals_for(values: pd.Series, decimals: int = 2, significant: int = 0) -> int:
    """Decimals to print a column with: ``decimals``, or more when its values are small.

    With ``significant`` > 0 (standard errors), the smallest non-zero absolute value gets
    at least that many significant digits (0.0042 -> ``0.0042``); otherwise the largest
    absolute value gets two, so that a column of small estimates does not print as 0.00
    (an estimate of 0.004 with CI [0.002, 0.006] stays readable). At most 6 decimals.
    """
    numbers = np.abs(_numbers(values))
    numbers = numbers[np.isfinite(numbers) & (numbers > 0)]
    if not len(numbers):
        return decimals
    want = significant or 2
    anchor = numbers.min() if significant else numbers.max()
    needed = want - 1 - int(np.floor(np.log10(anchor)))
    return int(min(6, max(decimals, needed)))


def format_number(value: object, bounded: bool = False, decimals: int = 2) -> str:
    """One number as APA 7 prints it: ``decimals`` decimals, no leading zero when the
    quantity cannot exceed 1 (``bounded``), integers as integers, no ``-0.00``."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:d}"
    if isinstance(value, (float, np.floating)):
        if np.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = f"{value:.{decimals}f}"
        if bounded:
            text = text.replace("0.", ".", 1)
        return text.replace("-", "", 1) if set(text) <= set("-0.") else text
    return str(value)


def format_column(column: str, values: pd.Series) -> pd.Series:
    """A column of a tidy table as text, by the rules of :func:`format_apa`."""
    if column in ("p", "pvalue", "p_value", "p_diff", "pvalue_scaled", "p_median",
                  "p_share_significant"):
        return values.map(format_p)
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values.map(lambda v: format_number(v))
    if is_count(column, values):
        return values.map(lambda v: "" if pd.isna(v) else f"{int(round(float(v))):d}")
    if "percent" in column:
        places = decimals_for(values, 1)
    elif is_se(column):
        places = decimals_for(values, 2, significant=2)
    else:
        places = decimals_for(values, 2)
    bounded = column in BOUNDED or column.startswith(("std_", "p_"))
    return values.map(lambda v: format_number(v, bounded, places))


def _bounded_estimate(table: pd.DataFrame) -> str:
    """The column a table's ``ci_low``/``ci_high`` bound: ``estimate`` when there is one,
    else the last column before ``ci_low`` that cannot exceed 1 (``alpha``, ``icc``, ...),
    else the last numeric one before it; '' if none."""
    if "estimate" in table.columns:
        return "estimate"
    before = list(table.columns[:list(table.columns).index("ci_low")])
    numeric = [c for c in before if pd.api.types.is_numeric_dtype(table[c])
               and not pd.api.types.is_bool_dtype(table[c])]
    bounded = [c for c in numeric if c in BOUNDED]
    return (bounded or numeric or [""])[-1]


def format_apa(table: pd.DataFrame, ci_level: float = 0.95) -> pd.DataFrame:
    """Format a tidy table for reading as APA 7 asks.

    * estimates to two decimals, more when a column's values are all small (its largest
      absolute value keeps one significant digit: :func:`decimals_for`);
    * standard errors to at least two significant digits;
    * ``p`` as ``< .001`` or ``.012`` (:func:`format_p`);
    * no leading zero for quantities that cannot exceed 1 (:data:`BOUNDED`: p, r, ICC, CFI,
      ...); percentages to one decimal;
    * counts as integers (:func:`is_count`);
    * ``ci_low``/``ci_high`` as one ``95% CI`` column ``[low, high]``, both to the decimals
      of the estimate they bound, without the leading zero when that quantity is bounded
      (the interval of an ICC or an alpha).

    The numbers themselves are not changed: the CSV beside the formatted table keeps full
    precision.

    References
    ----------
    .. [1] American Psychological Association (2020). *Publication Manual of the American
       Psychological Association* (7th ed.), sections 6.36 and 7.21.
    """
    out: dict[Any, Any] = {}  # made into a frame at once (inserting column by column is slow)
    for column in table.columns:
        if column == "ci_high" and "ci_low" in table.columns:
            continue
        if column == "ci_low" and "ci_high" in table.columns:
            both = pd.concat([table["ci_low"], table["ci_high"]])
            bounds = _bounded_estimate(table)
            reference = table[bounds] if bounds else both
            places = max(decimals_for(reference), decimals_for(both)) if \
                pd.api.types.is_numeric_dtype(both) else 2
            bounded = bounds in BOUNDED
            low = table["ci_low"].map(lambda v: format_number(v, bounded, places))
            high = table["ci_high"].map(lambda v: format_number(v, bounded, places))
            out[f"{100 * ci_level:g}% CI"] = ["" if not a else f"[{a}, {b}]"
                                         for a, b in zip(low, high, strict=True)]
        else:
            out[column] = format_column(column, table[column])
    return pd.DataFrame(out, index=table.index)


#: Text columns whose longest value is longer than this go into the table's note.
LONG_TEXT = 60


def long_text_to_note(shown: pd.DataFrame, note: str = "") -> tuple[pd.DataFrame, str]:
    """Move long text columns (warnings, notes) out of a formatted table into its note, as
    APA puts them, so that no row grows hundreds of pixels high and no table runs off the
    page: each non-empty cell becomes ``column (first cell of its row): text``."""
    long_columns = [c for c in shown.columns[1:]  # plain Python: a pandas pass was 4 ms
                    if max((len(str(v)) for v in shown[c].tolist()), default=0) > LONG_TEXT]
    if not long_columns or not len(shown):
        return shown, note
    label = shown.columns[0]
    lines = [f"{column} ({key}): {str(text).strip()}"
             for column in long_columns
             for key, text in zip(shown[label], shown[column], strict=True)
             if str(text).strip() and str(text) != "nan"]
    return shown.drop(columns=long_columns), " ".join(p for p in (note, *lines) if p)


def write_apa_table(folder: Path, name: str, table: pd.DataFrame, caption: str = "",
                    note: str = "", shown: pd.DataFrame | None = None,
                    ci_level: float = 0.95) -> list[Path]:
    """Write the APA-formatted ``<name>.md``, ``.tex`` and ``.html`` (caption above, note below).

    ``shown`` is the table as text when the caller formatted it (e.g. models side by side,
    formatted block by block); by default :func:`format_apa` of ``table``, its CI column
    labelled by ``ci_level``. Long text columns
    go into the note (:func:`long_text_to_note`). The LaTeX table uses booktabs rules (its
    first line says ``\\usepackage{booktabs}`` is needed) and prints ``<`` and ``>`` in maths
    mode, so that "< .001" does not come out as "¡ .001" under LaTeX's default OT1 font
    encoding. The HTML is a ``<table>`` with its ``<caption>``. The tidy CSV with full
    precision is written beside it by
    :meth:`alliance_analysis.report.runfolder.RunFolder.write_table`.
    """
    shown, note = long_text_to_note(format_apa(table, ci_level) if shown is None else shown,
                                    note)
    md = (f"**{caption}**\n\n" if caption else "") + shown.to_markdown(index=False,
                                                                      disable_numparse=True)
    md += f"\n\n*Note.* {note}\n" if note else "\n"
    paths = [folder / f"{name}.md", folder / f"{name}.tex", folder / f"{name}.html"]
    texts = (md, latex_table(shown, name, caption, note), html_table(shown, caption, note))
    for path, text in zip(paths, texts, strict=True):
        path.write_text(text, encoding="utf-8")
    return paths


def html_table(shown: pd.DataFrame, caption: str = "", note: str = "",
               number: int | None = None, table_id: str = "") -> str:
    """An APA table as HTML: ``<table>`` with ``<caption>`` ("Table N." and the title in
    italics, as APA 7 sets them) and the note below it, from a :func:`format_apa` frame."""
    label = f"Table {number}. " if number is not None else ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in shown.itertuples(index=False))
    ident = f" id='{html.escape(table_id)}'" if table_id else ""
    strong = f"<strong>{label}</strong>" if label else ""
    title = (f"<caption>{strong}<em>{html.escape(caption)}</em></caption>"
             if caption or label else "")
    text = (f"<table class='apa'{ident}>{title}<thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table>")
    if note:
        text += f"<p class='note'><em>Note.</em> {html.escape(note)}</p>"
    return text + "\n"


def latex_table(shown: pd.DataFrame, name: str, caption: str = "", note: str = "") -> str:
    """An APA table as LaTeX (booktabs; ``<``/``>`` in maths mode), from :func:`format_apa`."""
    def cell(value: object) -> str:
        return (_tex_escape(str(value)).replace("<", "$<$").replace(">", "$>$"))

    columns = [cell(c) for c in shown.columns]
    title, label = (cell(caption) if caption else None), f"tab:{name}"
    if len(shown) and len(columns):  # cells as text, row by row (DataFrame.map: 5 ms more)
        tex = _tabular(columns, [[cell(v) for v in row]
                                 for row in shown.itertuples(index=False, name=None)],
                       title, label)
    else:
        body = shown.copy()
        body.columns = columns
        tex = _to_latex(body, title, label)
    if note:
        tex = tex.replace("\\end{tabular}", "\\end{tabular}\n\\par\\small\\textit{Note.} "
                          + cell(note))
    return "% needs \\usepackage{booktabs} in the preamble\n" + tex


def _to_latex(body: pd.DataFrame, caption: str | None, label: str) -> str:
    """``body.to_latex(index=False, caption=caption, label=label, escape=False)``.

    Written out here (:func:`_tabular`) for a table of text cells (every non-empty table
    :func:`latex_table` makes): pandas renders it through a Styler and its jinja2 templates,
    about 15 ms a table and a hundred tables a run. The same text, line for line
    (``tests/test_report.py``); an empty table goes to pandas.
    """
    if body.empty or not all(body[c].map(type).eq(str).all() for c in body.columns):
        return body.to_latex(index=False, caption=caption, label=label, escape=False)
    return _tabular([str(c) for c in body.columns],
                    [list(row) for row in body.itertuples(index=False, name=None)],
                    caption, label)


def _tabular(columns: list[str], rows: list[list[str]], caption: str | None,
             label: str) -> str:
    """The lines of pandas' ``to_latex`` for a non-empty table of text cells."""
    lines = ["\\begin{table}"] + ([f"\\caption{{{caption}}}"] if caption is not None else [])
    lines += [f"\\label{{{label}}}", "\\begin{tabular}{" + "l" * len(columns) + "}",
              "\\toprule", " & ".join(columns) + " \\\\", "\\midrule"]
    lines += [" & ".join(row) + " \\\\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"),
                          ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"),
                          ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}")):
        text = text.replace(char, escaped)
    return text
