"""The run's ``index.html``: the page a reviewer opens first.

It is self-contained and readable offline: run summary (status, data SHA-256, parameters,
package versions, dates), then links to every executed notebook, table and figure of the run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

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
