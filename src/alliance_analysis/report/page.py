"""The run's ``index.html``: the page a reviewer opens first.

The page is self-contained and readable offline. It opens with the run's status and its key
findings (:mod:`alliance_analysis.report.findings`: the questions the run answers, with
numbers and 95% CIs, each linked to its table), then the warnings to read first, the run
summary (data SHA-256, parameters, package versions, dates), each stage's figures and tables
numbered and captioned as APA 7 sets them ("Table N." above the table with its note below;
"Figure N." above the figure), the methods, and links to every executed notebook. It is
rendered from the jinja2 template ``templates/index.html.j2`` kept in the package.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from alliance_analysis.report.findings import key_findings, reading_flags


#: The stylesheet of the run and reproduce pages.
STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 64rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2.5rem;
     border-bottom: 2px solid #0173b2; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-top: 1.5rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .85rem; max-width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .2rem .5rem; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
table.apa { border-top: 2px solid #222; border-bottom: 2px solid #222; margin-top: 1.5rem; }
table.apa caption { text-align: left; padding-bottom: .4rem; caption-side: top; }
table.apa caption strong { display: block; }
table.apa thead th { border-bottom: 1px solid #222; }
table.apa td { text-align: right; white-space: nowrap; }
table.apa td:first-child { text-align: left; white-space: normal; }
table.apa.wide { font-size: .72rem; } table.apa.wide td { white-space: normal; }
figure { margin: 1.5rem 0; } figcaption { margin-bottom: .3rem; }
figcaption strong { display: block; }
p.note { font-size: .85rem; margin-top: .2rem; }
dl.findings dt { font-weight: 600; margin-top: .5rem; }
dl.findings dd { margin: .1rem 0 0 1rem; }
p.flags { background: #fff4e5; padding: .3rem .6rem; }
#key-findings h2 { margin-top: 1rem; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
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


#: Tables with more columns than this are printed in a smaller type.
WIDE_COLUMNS = 9


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("alliance_analysis.report", "templates"),
        autoescape=True, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined)


def render(template: str, **context: Any) -> str:
    """A page from one of the package's jinja2 templates (``report/templates/``); text is
    escaped unless passed as :class:`markupsafe.Markup`."""
    return _environment().get_template(template).render(**context)


class _Numbering:
    """Numbers tables and figures in the order the page shows them."""

    def __init__(self) -> None:
        self.tables = 0
        self.figures = 0
        self.anchors: dict[str, tuple[str, str]] = {}

    def table(self, run_dir: Path, name: str, entry: dict[str, Any]) -> str:
        csv = run_dir / "tables" / f"{name}.csv"
        link = (f"<a href='tables/{html.escape(csv.name)}'>{html.escape(csv.name)}</a>")
        title = entry.get("title") or name.replace("_", " ")
        rows = sum(1 for _ in csv.open(encoding="utf-8")) - 1 if csv.is_file() else 0
        formatted = csv.with_suffix(".html").is_file()
        if not csv.is_file() or not formatted or rows > MAX_EMBEDDED_ROWS or rows < 1:
            self.anchors[name] = (f"tables/{csv.name}", csv.name)
            return (f"<p class='linked'>{html.escape(title)} ({rows} rows, not shown): "
                    f"{link}</p>")
        self.tables += 1
        # the formatted table as written with it (tables.write_apa_table), numbered here
        body = csv.with_suffix(".html").read_text(encoding="utf-8").strip()
        wide = " wide" if body.split("</thead>")[0].count("<th>") > WIDE_COLUMNS else ""
        body = body.replace("<table class='apa'>", f"<table class='apa{wide}' "
                            f"id='table-{html.escape(name)}'>", 1)
        label = f"<strong>Table {self.tables}. </strong>"
        body = (body.replace("<caption>", f"<caption>{label}", 1) if "<caption>" in body
                else body.replace("<thead>", f"<caption>{label}<em>{html.escape(title)}</em>"
                                  "</caption><thead>", 1))
        self.anchors[name] = (f"#table-{name}", f"Table {self.tables}")
        return f"{body}<p class='source'>Full precision: {link}</p>"

    def figure(self, name: str, entry: dict[str, Any]) -> str:
        self.figures += 1
        caption = entry.get("title") or name.replace("_", " ")
        safe, label = html.escape(name), f"Figure {self.figures}"
        return (f"<figure id='figure-{safe}'><figcaption><strong>{label}.</strong> "
                f"<em>{html.escape(caption)}</em></figcaption>"
                f"<img src='figures/{safe}.png' alt='{label}: {html.escape(caption)}'"
                f" width='720'><p><a href='figures/{safe}.svg'>SVG</a></p></figure>")


def _sections(run_dir: Path, seconds: dict[str, Any], numbering: _Numbering
              ) -> list[dict[str, Any]]:
    outputs = _outputs(run_dir)
    sections = []
    for notebook, title in SECTIONS:
        items = [Markup(numbering.figure(name, entry))
                 for name, entry in sorted(outputs.get("figures", {}).items())
                 if entry.get("stage") == notebook]
        items += [Markup(numbering.table(run_dir, name, entry))
                  for name, entry in sorted(outputs.get("tables", {}).items())
                  if entry.get("stage") == notebook]
        sections.append({"id": notebook, "title": title, "items": items,
                         "notebook": (run_dir / "notebooks" / f"{notebook}.html").exists(),
                         "seconds": seconds.get(notebook, "?")})
    return sections


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
        The methods paragraph (plain text; paragraphs separated by blank lines, then
        ``References`` and one reference per line), if any.
    results
        The results paragraph (plain text) to show, if any.

    Returns
    -------
    Path
        The page written: status and key findings first (``id="key-findings"``), the
        warnings, the run summary, one section per notebook with its numbered figures and
        tables (long tables linked), the methods, provenance links, parameters and software
        versions. Only relative links are used, so the folder can be moved or zipped and
        read offline.
    """
    status = manifest.get("status", "unknown")
    banner = {"complete": "The run finished: every notebook ran.",
              "incomplete": "The run did NOT finish.",
              "running": "The run was interrupted before it finished."}.get(status, status)
    summary: list[tuple[str, Any]] = [
        ("Run", manifest.get("run", "")),
        ("Parameters file", Markup("<code>{}</code>").format(manifest.get("parameters_file"))),
        ("Seed", manifest.get("seed")),
        ("Started / finished", f"{manifest.get('started', '')} / {manifest.get('finished', '')}"),
    ]
    for path, digest in manifest.get("inputs", {}).items():
        summary.append(("Input data", Markup("<code>{}</code><br>SHA-256 <code>{}</code>")
                        .format(path, digest)))
    git = manifest.get("git")
    if git:
        summary.append(("Git commit", git["commit"] + (" (with uncommitted changes)"
                                                       if git["dirty"] else "")))
    numbering = _Numbering()
    sections = _sections(run_dir, manifest.get("seconds", {}), numbering)
    findings = []
    for finding in key_findings(run_dir, manifest.get("parameters", {})):
        href, label = numbering.anchors.get(finding.table, (f"tables/{finding.table}.csv",
                                                            f"{finding.table}.csv"))
        findings.append({"question": finding.question, "answer": finding.answer,
                         "href": href, "label": f"({label})"})
    paragraph, _, references = methods.partition("\n\nReferences\n")
    page = render(
        "index.html.j2", run=str(manifest.get("run")), style=Markup(STYLE), status=status,
        banner=banner, findings=findings, flags=reading_flags(run_dir),
        warnings=run_warnings(run_dir, manifest), summary=summary, sections=sections,
        methods=[p for p in paragraph.split("\n\n") if p.strip()],
        references=[r for r in references.splitlines() if r.strip()],
        manuscript=(run_dir / "manuscript.docx").is_file(), results=results,
        parameters=json.dumps(manifest.get("parameters", {}), indent=2, sort_keys=True),
        packages=list(manifest.get("packages", {}).items()))
    index = run_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
