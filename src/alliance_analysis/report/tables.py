"""Tables in APA style: numbers formatted as APA 7 asks, written as Markdown, LaTeX and HTML."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd


#: Columns whose values cannot exceed 1 in absolute value: printed without a leading zero (APA).
BOUNDED = {"p", "alpha", "std_alpha", "omega_total", "omega_h", "cfi", "tli", "rmsea",
           "rmsea_ci_low", "rmsea_ci_high", "srmr", "icc", "r", "correlation", "std_estimate"}


def format_p(p: float) -> str:
    """A p value in APA style: ``< .001``, else three decimals without the leading zero."""
    if p is None or pd.isna(p):
        return ""
    if p < 0.001:
        return "< .001"
    return f"{p:.3f}".lstrip("0")


def _number(value: object, bounded: bool, decimals: int = 2) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:d}"
    if isinstance(value, (float, np.floating)):
        text = f"{value:.{decimals}f}"
        if bounded:
            text = text.replace("0.", ".", 1)
        return text.replace("-", "", 1) if set(text) <= set("-0.") else text
    return str(value)


def format_apa(table: pd.DataFrame, ci_level: float = 0.95) -> pd.DataFrame:
    """Format a tidy table for reading: two decimals, APA p values, CIs in brackets.

    Percentages (columns whose name contains ``percent``) get one decimal.

    ``ci_low``/``ci_high`` become one ``95% CI`` column (``[low, high]``); ``p`` follows
    :func:`format_p`; values that cannot exceed 1 (:data:`BOUNDED`) lose their leading zero;
    integers stay integers. The numbers themselves are not changed: the CSV beside the
    formatted table keeps full precision.

    References
    ----------
    .. [1] American Psychological Association (2020). *Publication Manual of the American
       Psychological Association* (7th ed.), sections 6.36 and 7.21.
    """
    out = pd.DataFrame(index=table.index)
    for column in table.columns:
        if column == "ci_high" and "ci_low" in table.columns:
            continue
        if column == "ci_low" and "ci_high" in table.columns:
            low = table["ci_low"].map(lambda v: _number(v, False))
            high = table["ci_high"].map(lambda v: _number(v, False))
            out[f"{ci_level:.0%} CI"] = ["" if not a else f"[{a}, {b}]"
                                         for a, b in zip(low, high, strict=True)]
        elif column == "p":
            out["p"] = table["p"].map(format_p)
        else:  # percentages to one decimal, everything else to two
            decimals = 1 if "percent" in column else 2
            out[column] = table[column].map(
                lambda v, c=column, d=decimals: _number(v, c in BOUNDED, d))
    return out


def write_apa_table(folder: Path, name: str, table: pd.DataFrame, caption: str = "",
                    note: str = "") -> list[Path]:
    """Write the APA-formatted ``<name>.md``, ``.tex`` and ``.html`` (caption above, note below).

    The tidy CSV with full precision is written beside it by
    :meth:`alliance_analysis.report.runfolder.RunFolder.write_table`.
    """
    shown = format_apa(table)
    md = (f"**{caption}**\n\n" if caption else "") + shown.to_markdown(index=False,
                                                                      disable_numparse=True)
    md += f"\n\n*Note.* {note}\n" if note else "\n"
    tex = shown.to_latex(index=False, caption=caption or None, label=f"tab:{name}",
                         escape=True)
    if note:
        tex = tex.replace("\\end{tabular}", "\\end{tabular}\n\\par\\small\\textit{Note.} "
                          + _tex_escape(note))
    body = shown.to_html(index=False, border=0, classes="apa", escape=True)
    html_text = (f"<figure class='table'><figcaption>{html.escape(caption)}</figcaption>"
                 f"{body}{'<p class=note><em>Note.</em> ' + html.escape(note) + '</p>' if note else ''}"
                 "</figure>\n")
    paths = [folder / f"{name}.md", folder / f"{name}.tex", folder / f"{name}.html"]
    for path, text in zip(paths, (md, tex, html_text), strict=True):
        path.write_text(text, encoding="utf-8")
    return paths


def _tex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"),
                          ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text
