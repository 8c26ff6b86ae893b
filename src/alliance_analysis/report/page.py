"""The run's ``index.html``: the page a reviewer opens first.

The page is self-contained and readable offline: run summary (status, data SHA-256,
parameters, package versions, dates) and the run's warnings at the top, then each section's
figures and tables, and links to every executed notebook.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any


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

#: The report's sections: (stage, title); each shows the outputs its stage recorded.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("01_clean", "Data, anonymisation and cleaning"),
    ("02_describe", "Description"),
    ("03_multilevel", "Multilevel models"),
    ("04_sem", "Structural equation models"),
    ("05_change", "Change and process markers"),
    ("06_robustness", "Robustness: specification curve"),
)

#: Tables longer than this are linked rather than shown in the page.
MAX_EMBEDDED_ROWS = 40


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def _outputs(run_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The run folder's index of outputs (``outputs.json``, see ``RunFolder.outputs``)."""
    index = run_dir / "outputs.json"
    return json.loads(index.read_text(encoding="utf-8")) if index.exists() else {}


def run_warnings(run_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Everything a reader must see first: failure, excluded rows, unconverged or singular fits.

    The models come from the run folder's index (``outputs.json``): every model that a table
    or figure shows with ``converged`` false, ``singular`` true or warnings contributes one
    line naming the model and the tables that show it.
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
    models: dict[str, dict[str, Any]] = {}
    for name, entry in sorted(_outputs(run_dir).get("tables", {}).items()):
        for flag in entry.get("flags", []):
            model = models.setdefault(flag["model"], {"items": [], "tables": []})
            if not flag["converged"]:
                model["items"].insert(0, "did NOT converge")
            if flag["singular"] and not any("SINGULAR" in w for w in flag["warnings"]):
                model["items"].append("singular fit (a variance at zero or a correlation at "
                                      "+/-1)")
            model["items"].extend(flag["warnings"])
            model["tables"].append(name)
    for name, model in models.items():
        items = list(dict.fromkeys(model["items"]))
        if items:
            shown = ", ".join(f"tables/{t}" for t in model["tables"][:3]) + (
                ", ..." if len(model["tables"]) > 3 else "")
            found.append(f"{name}: {'; '.join(items)} (in {shown})")
    return list(dict.fromkeys(found))


def _table_block(run_dir: Path, csv: Path) -> str:
    fragment = csv.with_suffix(".html")
    rows = sum(1 for _ in csv.open(encoding="utf-8")) - 1
    link = f"<a href='{html.escape(csv.relative_to(run_dir).as_posix())}'>{csv.name}</a>"
    if fragment.exists() and rows <= MAX_EMBEDDED_ROWS:
        return f"<div class='scroll'>{fragment.read_text(encoding='utf-8')}</div><p>{link}</p>"
    return f"<p>Table <strong>{html.escape(csv.stem)}</strong> ({rows} rows): {link}</p>"


def _section(run_dir: Path, notebook: str, title: str, seconds: Any,
             outputs: dict[str, dict[str, dict[str, Any]]]) -> str:
    parts = [f"<h2 id='{notebook}'>{html.escape(title)}</h2>"]
    executed = run_dir / "notebooks" / f"{notebook}.html"
    if executed.exists():
        parts.append(f"<p>Executed notebook: <a href='notebooks/{notebook}.html'>{notebook}"
                     f"</a> (<a href='notebooks/{notebook}.ipynb'>.ipynb</a>, "
                     f"{seconds if seconds is not None else '?'} s)</p>")
    else:
        parts.append("<p>This notebook did not run.</p>")
    for name, entry in sorted(outputs.get("figures", {}).items()):
        if entry.get("stage") == notebook:
            caption = html.escape(entry.get("title") or name)
            parts.append(f"<figure><figcaption>{caption}</figcaption>"
                         f"<img src='figures/{html.escape(name)}.png' alt='{caption}'"
                         f" width='720'><p><a href='figures/{html.escape(name)}.svg'>SVG</a>"
                         "</p></figure>")
    for name, entry in sorted(outputs.get("tables", {}).items()):
        if entry.get("stage") == notebook:
            parts.append(_table_block(run_dir, run_dir / "tables" / f"{name}.csv"))
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
    outputs = _outputs(run_dir)
    sections = "\n".join(_section(run_dir, nb, title, seconds.get(nb), outputs)
                         for nb, title in SECTIONS)
    nav = "".join(f"<a href='#{nb}'>{html.escape(title)}</a>" for nb, title in SECTIONS)
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
