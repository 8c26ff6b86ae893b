"""Tables in APA style, and the run's ``index.html``: the page a reviewer opens first.

The page is self-contained and readable offline: run summary (status, data SHA-256,
parameters, package versions, dates) and the run's warnings at the top, then each section's
figures and tables, and links to every executed notebook.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The stylesheet of the run and reproduce pages.
STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 64rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2.5rem;
     border-bottom: 2px solid #0173b2; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-top: 1.5rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .85rem; }
th, td { border-bottom: 1px solid #ddd; padding: .2rem .6rem; text-align: left;
         vertical-align: top; }
table.apa td { text-align: right; } table.apa td:first-child { text-align: left; }
figure { margin: 1rem 0; } figcaption { font-weight: 600; margin-bottom: .3rem; }
p.note { font-size: .85rem; margin-top: .2rem; }
.scroll { overflow-x: auto; }
code { font-size: .85rem; word-break: break-all; }
.status { padding: .6rem 1rem; border-radius: .3rem; margin: 1rem 0; }
.complete { background: #e6f4ea; } .incomplete, .running { background: #fde8e8; }
.warnings { background: #fff4e5; border-left: 4px solid #de8f05; padding: .4rem 1rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
nav a { margin-right: 1rem; }
"""

#: The report's sections: (notebook, title, prefixes of the tables and figures it shows).
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("01_clean", "Data, anonymisation and cleaning", ("cleaning", "codebook")),
    ("02_describe", "Description", ("describe", "reliability", "attendance", "score",
                                    "trajectories")),
    ("03_multilevel", "Multilevel models", ("multilevel",)),
    ("04_sem", "Structural equation models", ("sem",)),
    ("05_change", "Change and process markers", ("change",)),
)

#: Tables longer than this are linked rather than shown in the page.
MAX_EMBEDDED_ROWS = 40


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def _section_of(name: str) -> str:
    for notebook, _, prefixes in SECTIONS:
        if name.startswith(prefixes):
            return notebook
    return "02_describe" if "_by_therapist" in name else "01_clean"


#: Per-attempt optimizer messages kept in the fit tables but not repeated at the top of the page.
_OPTIMIZER_CHATTER = re.compile(r"^((lbfgs|bfgs|cg|powell|nm|newton)\b.*:|optimizer )")


def run_warnings(run_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Everything a reader must see first: failure, excluded rows, unconverged or singular fits.

    Model tables are found by their columns: any table with ``converged`` false, ``singular``
    true or a non-empty ``warnings`` cell contributes lines naming the table and model (the
    per-attempt messages of the optimizers stay in the tables and notebooks).
    """
    found: list[str] = []
    if manifest.get("status") != "complete":
        found.append(f"The run did not finish: {manifest.get('error', 'interrupted')}")
    differences = (manifest.get("lock") or {}).get("differences")
    if differences:
        listed = ", ".join(f"{name} {v['installed']} (locked {v['locked']})"
                           for name, v in sorted(differences.items()))
        found.append("Installed versions differ from requirements.lock, with which the tests "
                     f"passed: {listed}. Run `make install` to restore them.")
    elif differences is None and "lock" in manifest:
        found.append("No requirements.lock was found: the package versions are not pinned.")
    results = run_dir / "results.json"
    values = json.loads(results.read_text()) if results.exists() else {}
    if values.get("clean.rows_excluded"):
        found.append(f"{values['clean.rows_excluded']} of {values.get('clean.rows_input')} "
                     "input rows were excluded by cleaning (see tables/ledger_rows.csv).")
    for path in sorted((run_dir / "tables").glob("*.csv")):
        table = pd.read_csv(path, nrows=500)
        label = table["model"].astype(str) if "model" in table else pd.Series(
            [path.stem] * len(table))
        flagged: dict[str, list[str]] = {}
        if "warnings" in table:
            for model, text in zip(label, table["warnings"], strict=True):
                if isinstance(text, str):
                    kept = [w.strip() for w in text.split(";") if w.strip()
                            and not _OPTIMIZER_CHATTER.match(w.strip())]
                    flagged.setdefault(model, []).extend(kept)
        if "converged" in table:
            for model in sorted(set(label[table["converged"].astype(str) == "False"])):
                flagged.setdefault(model, []).insert(0, "did NOT converge")
        if "singular" in table:
            for model in sorted(set(label[table["singular"].astype(str) == "True"])):
                if not any("SINGULAR" in w for w in flagged.get(model, [])):
                    flagged.setdefault(model, []).append(
                        "singular fit (a variance at zero or a correlation at +/-1)")
        for model, items in flagged.items():
            if items:
                found.append(f"{path.stem}: {model}: {'; '.join(dict.fromkeys(items))}")
    return list(dict.fromkeys(found))


def _table_block(run_dir: Path, csv: Path) -> str:
    fragment = csv.with_suffix(".html")
    rows = sum(1 for _ in csv.open(encoding="utf-8")) - 1
    link = f"<a href='{html.escape(csv.relative_to(run_dir).as_posix())}'>{csv.name}</a>"
    if fragment.exists() and rows <= MAX_EMBEDDED_ROWS:
        return f"<div class='scroll'>{fragment.read_text(encoding='utf-8')}</div><p>{link}</p>"
    return f"<p>Table <strong>{html.escape(csv.stem)}</strong> ({rows} rows): {link}</p>"


def _section(run_dir: Path, notebook: str, title: str, seconds: Any) -> str:
    parts = [f"<h2 id='{notebook}'>{html.escape(title)}</h2>"]
    executed = run_dir / "notebooks" / f"{notebook}.html"
    if executed.exists():
        parts.append(f"<p>Executed notebook: <a href='notebooks/{notebook}.html'>{notebook}"
                     f"</a> (<a href='notebooks/{notebook}.ipynb'>.ipynb</a>, "
                     f"{seconds if seconds is not None else '?'} s)</p>")
    else:
        parts.append("<p>This notebook did not run.</p>")
    for png in sorted((run_dir / "figures").glob("*.png")):
        if _section_of(png.stem) == notebook:
            parts.append(f"<figure><figcaption>{html.escape(png.stem)}</figcaption>"
                         f"<img src='figures/{html.escape(png.name)}' alt='{html.escape(png.stem)}'"
                         f" width='720'><p><a href='figures/{html.escape(png.stem)}.svg'>SVG</a>"
                         "</p></figure>")
    for csv in sorted((run_dir / "tables").glob("*.csv")):
        if _section_of(csv.stem) == notebook:
            parts.append(_table_block(run_dir, csv))
    return "\n".join(parts)


def write_index(run_dir: Path, manifest: dict[str, Any], methods: str = "",
                results: str = "") -> Path:
    """Write ``index.html`` for a run folder from its manifest and files.

    Parameters
    ----------
    run_dir
        The run folder.
    manifest
        The run's manifest (as written to ``manifest.json``).
    methods
        The methods paragraph (plain text) to show, if any.
    results
        The results paragraph (plain text) to show, if any.

    Returns
    -------
    Path
        The page written: the run summary and its warnings first, then one section per
        notebook with its figures and tables (long tables linked), the methods paragraph,
        provenance links, parameters and software versions. Only relative links are used,
        so the folder can be moved or zipped and read offline.
    """
    status = manifest.get("status", "unknown")
    banner = {"complete": "The run finished: every notebook ran.",
              "incomplete": "The run did NOT finish.",
              "running": "The run was interrupted before it finished."}.get(status, status)
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
    warnings_found = run_warnings(run_dir, manifest)
    warning_block = ("<div class='warnings'><strong>Read these first:</strong><ul>"
                     + "".join(f"<li>{html.escape(w)}</li>" for w in warnings_found)
                     + "</ul></div>") if warnings_found else \
        "<p>No warnings: no rows excluded, every model converged.</p>"
    seconds = manifest.get("seconds", {})
    sections = "\n".join(_section(run_dir, nb, title, seconds.get(nb))
                         for nb, title, _ in SECTIONS)
    nav = "".join(f"<a href='#{nb}'>{html.escape(title)}</a>" for nb, title, _ in SECTIONS)
    versions = _rows([(k, html.escape(v)) for k, v in manifest.get("packages", {}).items()])
    params = html.escape(json.dumps(manifest.get("parameters", {}), indent=2, sort_keys=True))
    methods_block = ""
    if methods:
        paragraph, _, references = methods.partition("\n\nReferences\n")
        items = "".join(f"<li>{html.escape(r)}</li>" for r in references.splitlines() if r)
        methods_block = (f"<h2 id='methods'>Methods</h2><p>{html.escape(paragraph)}</p>"
                         f"<h3>References</h3><ul>{items}</ul>"
                         "<p>Also in <a href='methods.md'>methods.md</a>, ready to paste.</p>")
    if results:
        methods_block += (f"<h2 id='results'>Results in brief</h2><p>{html.escape(results)}"
                          "</p>")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>alliance-analysis: {html.escape(str(manifest.get('run')))}</title>
<style>{STYLE}</style></head>
<body>
<h1>alliance-analysis run: {html.escape(str(manifest.get('run')))}</h1>
<p class="status {html.escape(status)}"><strong>{html.escape(status)}</strong>: {html.escape(banner)}</p>
{warning_block}
<nav>{nav}<a href="#methods">Methods</a><a href="#provenance">Provenance</a></nav>
<h2>Run summary</h2>
<table>{_rows(summary)}</table>
{sections}
{methods_block}
<h2 id="provenance">Results and provenance</h2>
<ul><li><a href="results.json">results.json</a>: headline numbers by stable key</li>
<li><a href="manifest.json">manifest.json</a>: parameters, input and output SHA-256, versions</li>
<li><a href="params.yaml">params.yaml</a>: the validated parameters of this run</li></ul>
<h3>Parameters</h3>
<pre>{params}</pre>
<h3>Software</h3>
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
