"""``manuscript.docx``: a run's Method, Results, numbered APA tables and figures, references.

:func:`write_manuscript` assembles a Word document a researcher can paste into a manuscript
or send to co-authors, from what the run wrote (never from a refit):

- **Method**: *Participants* (the cleaning counts of ``results.json`` and the sample table),
  *Measures* (each instrument with its internal consistency from the ``reliability`` table)
  and *Analysis* (the methods paragraph of :func:`~alliance_analysis.report.methods.
  methods_paragraph`, generated from what was fitted, with software versions);
- **Results**: the headline paragraph (:func:`~alliance_analysis.report.methods.
  results_paragraph`) and one sentence per fixed effect of each of the researcher's models;
- numbered **tables** ("Table N", italic title, APA layout: horizontal rules only, numbers
  formatted by :func:`~alliance_analysis.report.tables.format_apa`, a *Note.* below) and
  **figures** ("Figure N", italic title, the PNG), each from the run's ``outputs.json``;
- **References**: only the works the text cites.

The file is byte-identical for the same run: the document's dates are a constant, and the
package is rewritten with fixed entry times in a fixed order (:func:`_normalise_zip`).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from docx import Document
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Inches, Pt

from alliance_analysis.params import RunParams
from alliance_analysis.report.methods import (RunRecord, cited_references, methods_text,
                                              results_paragraph)
from alliance_analysis.report.tables import format_apa, format_p, long_text_to_note

#: The document's creation and modification date: a constant, so that a rerun of the same
#: inputs writes the same bytes (the run's own dates are in ``manifest.json``).
FIXED_DATE = datetime(2000, 1, 1, tzinfo=timezone.utc)

#: Entry time of every file in the package (the earliest a zip file can hold).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

#: Columns shown of the SEM fit tables (when present), in order.
SEM_FIT_COLUMNS = ("model", "group", "level", "n_obs", "chi2", "df", "p", "cfi", "tli", "rmsea",
                   "rmsea_ci_low", "rmsea_ci_high", "srmr", "delta_cfi", "delta_rmsea")

#: Column headers as APA tables print them; statistical symbols are italic (:data:`ITALIC`).
HEADERS = {"estimate": "b", "se": "SE", "df": "df", "t": "t", "p": "p", "n": "n",
           "n_obs": "N", "chi2": "χ²", "cfi": "CFI", "tli": "TLI", "rmsea": "RMSEA",
           "srmr": "SRMR", "alpha": "α", "omega_total": "ω", "k": "k", "std_estimate": "β",
           "sd_or_corr": "SD or r", "odds_ratio": "OR", "aic": "AIC", "bic": "BIC",
           "rmsea_ci": "RMSEA 90% CI", "delta_cfi": "ΔCFI", "delta_rmsea": "ΔRMSEA"}
ITALIC = {"b", "SE", "df", "t", "p", "n", "N", "χ²", "α", "ω", "k", "β", "OR"}


def _tables_wanted(params: RunParams, record: RunRecord) -> list[str]:
    """The run's tables for the manuscript, in the order the text refers to them."""
    tables = record.outputs.get("tables", {})
    wanted = ["describe_sample", "describe_clients", "reliability"]
    for name in params.models:  # one table per model (fixed and random part, N, R2), as
        # papers print them; the separate fixed and random tables of older runs otherwise
        wanted += ([f"model_{name}_apa"] if f"model_{name}_apa" in tables else
                   [f"model_{name}_fixed", f"model_{name}_random"])
    wanted += ["model_comparisons", "multilevel_within_between", "multilevel_therapist_effects"]
    wanted += sorted(n for n, e in tables.items() if e.get("stage") == "04_sem"
                     and n.endswith("_fit"))
    wanted += ["sem_panel_lagged", "change_reliable_summary", "change_ruptures_summary",
               "change_model_dropout_early_alliance", "robustness_summary"]
    return [name for name in dict.fromkeys(wanted) if name in tables
            and (record.folder / "tables" / f"{name}.csv").is_file()]


def _figures_wanted(params: RunParams, record: RunRecord) -> list[str]:
    """The run's figures for the manuscript (those with a PNG), in order."""
    wanted = [f"trajectories_{params.symptoms}", f"trajectories_{params.alliance}",
              *(f"model_coefficients_{name}" for name in params.models),
              "multilevel_within_between", "sem_riclpm_paths", "change_reliable",
              "robustness_curve"]
    figures = record.outputs.get("figures", {})
    return [name for name in dict.fromkeys(wanted) if name in figures
            and (record.folder / "figures" / f"{name}.png").is_file()]


def _fallback_titles(params: RunParams) -> dict[str, str]:
    """Titles of outputs a run may leave untitled."""
    titles = {f"trajectories_{i.key}": f"{i.name} over sessions"
              for i in params.instrument_definitions()}
    return {**titles,
            "multilevel_within_between": "Within- and between-client effects of the alliance "
            "on next-session symptoms",
            "multilevel_therapist_effects": "Therapist and client parts of early alliance and "
            "outcome",
            "sem_riclpm_paths": "Paths of the random-intercept cross-lagged panel model",
            "change_reliable": "Reliable and clinically significant change"}


def _title(entry: Mapping[str, Any], name: str, params: RunParams) -> str:
    """An output's title, or a stated one (else its name in words) when the run left it
    empty."""
    return (entry.get("title") or _fallback_titles(params).get(name)
            or name.replace("_", " ").capitalize())


def _shown(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """The columns of a tidy table a manuscript shows, APA formatted (as text)."""
    table = table.rename(columns={"chisq": "chi2", "pvalue": "p"})
    if name.startswith("sem_") and name.endswith("_fit"):
        table = table[[c for c in SEM_FIT_COLUMNS if c in table.columns]]
    drop = [c for c in table.columns if c in ("converged", "warnings", "note", "model")
            and table[c].nunique(dropna=True) <= 1]
    table = table.drop(columns=drop).dropna(axis=1, how="all")
    shown = format_apa(table.reset_index(drop=True))
    if "rmsea_ci_low" in shown.columns and "rmsea_ci_high" in shown.columns:
        shown.insert(list(shown.columns).index("rmsea_ci_low"), "rmsea_ci",
                     [f"[{a}, {b}]" if a else "" for a, b in
                      zip(shown["rmsea_ci_low"], shown["rmsea_ci_high"], strict=True)])
        shown = shown.drop(columns=["rmsea_ci_low", "rmsea_ci_high"])
    return shown


def _rule(cell: Any, side: str) -> None:
    """Draw a single horizontal rule on one side (``top``, ``bottom``) of a table cell."""
    properties = cell._tc.get_or_add_tcPr()
    borders = properties.find(qn("w:tcBorders"))
    if borders is None:
        borders = OxmlElement("w:tcBorders")
        properties.append(borders)
    line = OxmlElement(f"w:{side}")
    for key, value in (("val", "single"), ("sz", "6"), ("space", "0"), ("color", "000000")):
        line.set(qn(f"w:{key}"), value)
    borders.append(line)


def _add_table(document: Any, number: int, title: str, shown: pd.DataFrame, note: str) -> None:
    """Table N (bold), its italic title, the table with APA rules, and its note."""
    document.add_paragraph().add_run(f"Table {number}").bold = True
    document.add_paragraph().add_run(title).italic = True
    width = max(1, len(shown.columns))
    table = document.add_table(rows=1 + len(shown), cols=width)
    # every cell in one pass over the grid: python-docx's row.cells rebuilds the whole grid
    # on each call, which made large tables quadratic
    cells = table._cells
    for j, column in enumerate(shown.columns):
        header = HEADERS.get(column, column.replace("_", " "))
        cell = cells[j]
        cell.paragraphs[0].add_run(header).italic = header in ITALIC
        _rule(cell, "top")
        _rule(cell, "bottom")
    for i, row in enumerate(shown.itertuples(index=False), start=1):
        for j, value in enumerate(row):
            cell = cells[i * width + j]
            cell.paragraphs[0].add_run("" if value is None else str(value))
            if i == len(shown):
                _rule(cell, "bottom")
    if note:
        paragraph = document.add_paragraph()
        paragraph.add_run("Note.").italic = True
        paragraph.add_run(f" {note}")


def _add_figure(document: Any, number: int, title: str, png: Path) -> None:
    """Figure N (bold), its italic title and the picture, six inches wide."""
    document.add_paragraph().add_run(f"Figure {number}").bold = True
    document.add_paragraph().add_run(title).italic = True
    document.add_picture(str(png), width=Inches(6))
    document.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER


def _participants(record: RunRecord, numbers: Mapping[str, int]) -> str:
    """The Participants paragraph: rows read, excluded and analysed; sample sizes."""
    r = record.results
    sentences = []
    if "clean.rows_input" in r:
        sentences.append(
            f"The data held {r['clean.rows_input']:,} session records, of which "
            f"{r.get('clean.rows_excluded', 0):,} were excluded by the cleaning rules and "
            f"{r.get('clean.rows_kept', 0):,} were analysed: {r.get('clean.clients', 0):,} "
            f"clients treated by {r.get('clean.therapists', 0):,} therapists.")
    sample = record.table("describe_sample")
    if sample is not None and {"quantity", "value"} <= set(sample.columns):
        facts = [f"{q} {v}" for q, v in zip(sample["quantity"], sample["value"], strict=True)
                 if "median" in str(q)]
        if facts:
            where = (f" (Table {numbers['describe_sample']})" if "describe_sample" in numbers
                     else "")
            sentences.append(f"The {'; the '.join(facts)}{where}.")
    return " ".join(sentences) or "The run recorded no sample description."


def _bounded(value: float) -> str:
    """A statistic that cannot exceed 1, APA style: two decimals, no leading zero."""
    return f"{value:.2f}".replace("0.", ".", 1)


def _measures(params: RunParams, record: RunRecord) -> list[str]:
    """One sentence per instrument, with alpha and omega at baseline when the run has them."""
    reliability = record.table("reliability")
    out = []
    for instrument in params.instrument_definitions():
        text = f"{instrument.name} ({instrument.n_items} items)"
        if reliability is not None and {"instrument", "scale", "occasion"} <= set(
                reliability.columns):
            rows = reliability[(reliability["instrument"] == instrument.key)
                               & (reliability["scale"] == "total")]
            first = rows[rows["occasion"] == "baseline"]
            row = (first if len(first) else rows).head(1)
            if len(row):
                alpha, low, high, omega = (row[c].iloc[0] if c in row else None for c in
                                           ("alpha", "ci_low", "ci_high", "omega_total"))
                text += (f": internal consistency at the {row['occasion'].iloc[0]} assessment "
                         f"was α = {_bounded(alpha)}"
                         + (f", 95% CI [{_bounded(low)}, {_bounded(high)}]"
                            if pd.notna(low) and pd.notna(high) else "")
                         + (f", ω = {_bounded(omega)}" if pd.notna(omega) else ""))
        out.append(text + ".")
    return out


def _model_sentences(params: RunParams, record: RunRecord,
                     numbers: Mapping[str, int]) -> list[str]:
    """One sentence per researcher's model: each fixed effect with b, SE, t(df) and p."""
    out = []
    for name in params.models:
        fixed = record.table(f"model_{name}_fixed")
        if fixed is None or fixed.empty or not {"term", "estimate", "se", "df", "t", "p"} <= set(
                fixed.columns):
            continue
        parts = []
        for row in fixed.itertuples(index=False):
            if row.term == "(Intercept)":
                continue
            p = format_p(row.p)
            stat = (f"z = {row.t:.2f}" if row.df == float("inf") else
                    f"t({row.df:.2f}) = {row.t:.2f}")
            parts.append(f"{row.term}: b = {row.estimate:.2f}, SE = {row.se:.2f}, {stat}, "
                         + (f"p {p}" if p.startswith("<") else f"p = {p}"))
        if parts:
            shown_in = next((t for t in (f"model_{name}_apa", f"model_{name}_fixed")
                             if t in numbers), None)
            where = f" (Table {numbers[shown_in]})" if shown_in else ""
            out.append(f"In model {name}{where}, " + "; ".join(parts) + ".")
    return out


def _normalise_zip(data: bytes) -> bytes:
    """The package rewritten with fixed entry times, ``[Content_Types].xml`` first and the
    other parts in sorted order, so that equal content gives equal bytes."""
    source = zipfile.ZipFile(io.BytesIO(data))
    names = sorted(source.namelist(), key=lambda n: (n != "[Content_Types].xml", n))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            target.writestr(info, source.read(name))
    return out.getvalue()


def write_manuscript(run_dir: Path, params: RunParams, manifest: Mapping[str, Any]) -> Path:
    """Write ``<run_dir>/manuscript.docx``: Method, Results, tables, figures, references.

    Parameters
    ----------
    run_dir
        A run folder with ``results.json``, ``outputs.json``, ``tables/`` and ``figures/``
        (any of them may be missing: what is absent is left out).
    params
        The run's parameters (the models, instruments and options the text describes).
    manifest
        The run's manifest; its ``packages`` (installed versions) go into the Analysis
        paragraph. Its dates are not used, so a rerun writes the same bytes.

    Returns
    -------
    Path
        The written ``manuscript.docx``.

    Notes
    -----
    Tables follow the APA Publication Manual (7th ed., sections 7.8-7.21): the number in
    bold, the title in italics on the next line, horizontal rules only (above and below the
    header, below the last row), a *Note.* below; figures likewise (section 7.26). Numbers
    in tables come from :func:`~alliance_analysis.report.tables.format_apa`.

    References
    ----------
    .. [1] American Psychological Association (2020). *Publication Manual of the American
       Psychological Association* (7th ed.).
    """
    run_dir = Path(run_dir)
    record = RunRecord.read(run_dir)
    tables = _tables_wanted(params, record)
    figures = _figures_wanted(params, record)
    numbers = {name: i for i, name in enumerate(tables, start=1)}
    analysis, _ = methods_text(params, manifest.get("packages", {}), run_dir)

    document = Document()
    style = document.styles["Normal"]
    style.font.name, style.font.size = "Times New Roman", Pt(12)
    document.add_heading(f"Alliance analysis: {params.name}", level=0)

    document.add_heading("Method", level=1)
    document.add_heading("Participants", level=2)
    document.add_paragraph(_participants(record, numbers))
    document.add_heading("Measures", level=2)
    measures = " ".join(_measures(params, record))
    if "reliability" in numbers:
        measures += f" Table {numbers['reliability']} gives the reliability of every scale."
    document.add_paragraph(measures)
    document.add_heading("Analysis", level=2)
    document.add_paragraph(analysis)

    document.add_heading("Results", level=1)
    results = results_paragraph(params, record.results)
    document.add_paragraph(results or "The run recorded no headline results.")
    model_text = _model_sentences(params, record, numbers)
    for sentence in model_text:
        document.add_paragraph(sentence)
    if figures:
        document.add_paragraph(
            f"Figures 1 to {len(figures)} show the run's main results." if len(figures) > 1
            else "Figure 1 shows the run's main result.")

    document.add_heading("References", level=1)
    captions = [f"{e.get('title', '')} {e.get('note', '')}" for kind, names in
                (("tables", tables), ("figures", figures))
                for e in (record.outputs[kind][n] for n in names)]
    for reference in cited_references(" ".join([analysis, results, *model_text, *captions])):
        document.add_paragraph(reference)

    for name in tables:
        entry = record.outputs["tables"][name]
        table = record.table(name)
        if table is None:
            continue
        document.add_page_break()
        shown, note = long_text_to_note(_shown(name, table), entry.get("note", ""))
        _add_table(document, numbers[name], _title(entry, name, params), shown, note)
    for number, name in enumerate(figures, start=1):
        document.add_page_break()
        _add_figure(document, number, _title(record.outputs["figures"][name], name, params),
                    run_dir / "figures" / f"{name}.png")

    core = document.core_properties
    core.author = core.last_modified_by = "alliance-analysis"
    core.title = f"Alliance analysis: {params.name}"
    core.created = core.modified = core.last_printed = FIXED_DATE
    core.revision = 1
    buffer = io.BytesIO()
    document.save(buffer)
    path = run_dir / "manuscript.docx"
    temporary = path.with_name(".manuscript.docx.writing")
    try:
        temporary.write_bytes(_normalise_zip(buffer.getvalue()))
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


__all__: Sequence[str] = ("write_manuscript",)
