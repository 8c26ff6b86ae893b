"""The run's ``index.html``: the page a reviewer opens first.

It is self-contained and readable offline: run summary (status, data SHA-256, parameters,
package versions, dates), then links to every executed notebook, table and figure of the run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .75rem; text-align: left;
         vertical-align: top; }
code { font-size: .85rem; word-break: break-all; }
.status { padding: .5rem 1rem; border-radius: .3rem; margin: 1rem 0; }
.complete { background: #e6f4ea; } .incomplete, .running { background: #fde8e8; }
img { max-width: 100%; }
"""


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def _links(run_dir: Path, pattern: str) -> list[Path]:
    return sorted(path.relative_to(run_dir) for path in run_dir.glob(pattern))


def write_index(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``index.html`` for a run folder from its manifest and files.

    Parameters
    ----------
    run_dir
        The run folder.
    manifest
        The run's manifest (as written to ``manifest.json``).

    Returns
    -------
    Path
        The page written.
    """
    status = manifest.get("status", "unknown")
    banner = {
        "complete": "The run finished: every notebook ran.",
        "incomplete": "The run did NOT finish: " + manifest.get("error", ""),
        "running": "The run was interrupted before it finished.",
    }.get(status, status)
    summary = [
        ("Run", html.escape(str(manifest.get("run", "")))),
        ("Parameters file", f"<code>{html.escape(str(manifest.get('parameters_file')))}</code>"),
        ("Seed", html.escape(str(manifest.get("seed")))),
        ("Started / finished", html.escape(
            f"{manifest.get('started', '')} / {manifest.get('finished', '')}")),
    ]
    for path, digest in manifest.get("inputs", {}).items():
        summary.append(("Input data", f"<code>{html.escape(path)}</code><br>SHA-256 "
                                      f"<code>{html.escape(digest)}</code>"))
    git = manifest.get("git")
    if git:
        summary.append(("Git commit", html.escape(
            git["commit"] + (" (with uncommitted changes)" if git["dirty"] else ""))))
    seconds = manifest.get("seconds", {})
    notebooks = "".join(
        f"<tr><td>{html.escape(nb.stem)}</td><td><a href='{html.escape(nb.as_posix())}'>"
        f"HTML</a></td><td><a href='{html.escape(nb.with_suffix('.ipynb').as_posix())}'>"
        f"notebook</a></td><td>{seconds.get(nb.stem, '')} s</td></tr>"
        for nb in _links(run_dir, "notebooks/*.html")
    )
    tables = "".join(f"<li><a href='{html.escape(p.as_posix())}'>{html.escape(p.name)}</a></li>"
                     for p in _links(run_dir, "tables/*.csv"))
    figures = "".join(f"<figure><img src='{html.escape(p.as_posix())}' alt='{html.escape(p.stem)}'>"
                      f"<figcaption>{html.escape(p.stem)}</figcaption></figure>"
                      for p in _links(run_dir, "figures/*.png"))
    versions = _rows([(k, html.escape(v)) for k, v in manifest.get("packages", {}).items()])
    params = html.escape(json.dumps(manifest.get("parameters", {}), indent=2, sort_keys=True))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>alliance-analysis: {html.escape(str(manifest.get('run')))}</title>
<style>{_STYLE}</style></head>
<body>
<h1>alliance-analysis run: {html.escape(str(manifest.get('run')))}</h1>
<p class="status {html.escape(status)}"><strong>{html.escape(status)}</strong>: {html.escape(banner)}</p>
<h2>Run summary</h2>
<table>{_rows(summary)}</table>
<h2>Notebooks</h2>
<table><tr><th>notebook</th><th></th><th></th><th>time</th></tr>{notebooks}</table>
<h2>Tables</h2>
<ul>{tables or '<li>none yet</li>'}</ul>
<h2>Figures</h2>
{figures or '<p>none yet</p>'}
<h2>Results and provenance</h2>
<ul><li><a href="results.json">results.json</a>: headline numbers by stable key</li>
<li><a href="manifest.json">manifest.json</a>: parameters, input and output SHA-256, versions</li>
<li><a href="params.yaml">params.yaml</a>: the validated parameters of this run</li></ul>
<h2>Parameters</h2>
<pre>{params}</pre>
<h2>Software</h2>
<table>{versions}</table>
</body>
</html>
"""
    index = run_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


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
    :meth:`alliance_analysis.runfolder.RunFolder.write_table`.
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
