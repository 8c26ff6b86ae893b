"""The HTML copy of an executed notebook, readable offline: local maths, answers kept hidden.

nbconvert's HTML pages load MathJax from a CDN, so without a network connection (a clinic
computer, an archived run folder, a reviewer's train journey) every formula stays raw LaTeX.
:func:`render_notebook_html` renders with nbconvert's ``lab`` template, as JupyterLab shows a
notebook, but points the page at a copy of MathJax 2 inside the run folder
(``notebooks/mathjax/``, :func:`copy_mathjax`), taken from the ``jupyter_server_mathjax``
package that JupyterLab itself serves it from. Only the files the configuration used here
needs are copied (:data:`MATHJAX_FILES`: about 2 MB instead of the package's 12 MB), once per
folder; the same package version gives byte-identical files, so two runs stay identical.

The configuration is MathJax's ``TeX-AMS-MML_HTMLorMML-full`` (TeX and AMS maths, HTML-CSS
output) with ``Safe`` (as nbconvert's default) and the package's STIX web fonts, the only
fonts it ships (:data:`LOCAL_CONFIG`).

Cells whose input JupyterLab collapses (``jupyter.source_hidden``, as the tutorials' answers)
are collapsed in the page too: a Markdown cell becomes a ``<details>`` element the reader
opens with a click, a code cell's input is left out.
"""

from __future__ import annotations

import copy
import functools
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

#: Folder beside the HTML pages holding the MathJax copy.
MATHJAX_FOLDER = "mathjax"

#: Files and folders of the package's MathJax copied, relative to its ``static/`` folder:
#: the loader, the combined configuration (TeX and MathML input, HTML-CSS output and the
#: menus in one file), ``Safe``, the extensions and output modules MathJax loads on demand
#: (TeX macros such as ``\cancel`` or ``\color``, tables, the operator dictionary) and the
#: STIX web fonts with their metrics. Left out: the accessibility extensions, the SVG
#: output, the MathML extras and 40 translations of the menus (the page is in English).
MATHJAX_FILES: tuple[str, ...] = (
    "LICENSE",
    "MathJax.js",
    "config/TeX-AMS-MML_HTMLorMML-full.js",
    "config/Safe.js",
    "extensions/Safe.js",
    "extensions/HelpDialog.js",
    "extensions/MathMenu.js",
    "extensions/MathZoom.js",
    "extensions/TeX",
    "extensions/HTML-CSS",
    "jax/element/mml",
    "jax/output/HTML-CSS",
    "fonts/HTML-CSS/STIX-Web/woff",
)

#: A configuration file of our own, loaded after the combined one: the package ships only
#: the STIX web fonts (MathJax's default would look for TeX fonts that are not there).
LOCAL_CONFIG = """\
/* Written by alliance_analysis.report.notebook_html: MathJax uses the STIX web fonts
   that jupyter_server_mathjax ships (MathJax would look for its TeX fonts otherwise). */
MathJax.Hub.Config({
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web",
               imageFont: null}
});
MathJax.Ajax.loadComplete("[MathJax]/config/local-fonts.js");
"""

#: The ``src`` of the page's MathJax script, relative to the HTML page.
MATHJAX_URL = (f"{MATHJAX_FOLDER}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe,"
               "local-fonts")

#: Summary of a collapsed Markdown cell in the page.
HIDDEN_SUMMARY = "Show the hidden cell (the answers)"


def mathjax_source() -> Path:
    """The ``static/`` folder of the installed ``jupyter_server_mathjax`` (MathJax 2)."""
    import jupyter_server_mathjax

    return Path(jupyter_server_mathjax.__file__).parent / "static"


def copy_mathjax(folder: str | Path) -> Path:
    """Copy the MathJax files the pages need into ``<folder>/mathjax`` unless already there.

    The copy is made in a temporary folder beside the target and renamed into place, so a
    page never sees half a copy and a second call (the next notebook of the same run) finds
    it complete and copies nothing.

    Returns
    -------
    pathlib.Path
        The ``mathjax`` folder.
    """
    folder = Path(folder)
    target = folder / MATHJAX_FOLDER
    with _MATHJAX_LOCK:  # one copy at a time in a process (the others find it made)
        if not (target / "MathJax.js").is_file():
            _copy_mathjax(target)
    return target


def _copy_mathjax(target: Path) -> None:
    folder = target.parent
    source = mathjax_source()
    staging = Path(tempfile.mkdtemp(prefix=".mathjax-", dir=folder))
    try:
        for name in MATHJAX_FILES:
            origin, copy_to = source / name, staging / name
            copy_to.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, copy_to, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copyfile(origin, copy_to)
        (staging / "config" / "local-fonts.js").write_text(LOCAL_CONFIG, encoding="utf-8")
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "MathJax.js").is_file():
            raise


def hide_collapsed_cells(notebook: Any) -> Any:
    """A copy of ``notebook`` whose collapsed cells stay collapsed in the HTML page.

    A Markdown cell with ``metadata.jupyter.source_hidden`` (e.g. a tutorial's answers) is
    wrapped in ``<details><summary>...</summary> ... </details>``: closed until the reader
    clicks, as JupyterLab shows it. A code cell with a hidden input keeps only its outputs.
    """
    shown = copy.deepcopy(notebook)
    for cell in shown.cells:
        if not cell.get("metadata", {}).get("jupyter", {}).get("source_hidden", False):
            continue
        if cell.cell_type == "markdown":
            cell.source = (f"<details class='hidden-cell'><summary>{HIDDEN_SUMMARY}</summary>"
                           f"\n\n{cell.source}\n\n</details>")
        elif cell.cell_type == "code":
            cell.metadata["transient"] = {"remove_source": True}
    return shown


def render_notebook_html(executed: str | Path, notebook: Any = None) -> Path:
    """Write ``<executed>.html`` beside an executed notebook, readable offline.

    Renders with nbconvert's ``HTMLExporter`` and the ``lab`` template; formulas load MathJax
    from the copy in the same folder (:func:`copy_mathjax`, :data:`MATHJAX_URL`), never from
    the internet; collapsed cells stay collapsed (:func:`hide_collapsed_cells`).

    Parameters
    ----------
    executed
        The executed notebook (``.ipynb``).
    notebook
        Its contents when the caller has just read or written them (an ``nbformat``
        notebook), so that it is not read again; None reads ``executed``.

    Returns
    -------
    pathlib.Path
        The HTML file.
    """
    import nbformat

    executed = Path(executed)
    copy_mathjax(executed.parent)
    if notebook is None:
        notebook = nbformat.read(executed, as_version=4)
    with _EXPORTER_LOCK:  # one exporter: its templates are compiled once per process
        body, _ = _exporter().from_notebook_node(hide_collapsed_cells(notebook))
    target = executed.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


_EXPORTER_LOCK = threading.Lock()
_MATHJAX_LOCK = threading.Lock()


def prepare(folder: str | Path) -> None:
    """Do now what the first page of a run would wait for: copy MathJax into ``folder``
    (:func:`copy_mathjax`) and make the exporter, its templates compiled by rendering a
    small notebook (about a second in all).

    The pipeline calls it while its first stage runs, when a core is free; the pages are
    the same with or without it.
    """
    import nbformat

    copy_mathjax(folder)
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Title\n\nText with $x^2$ and a [link](#title)."),
        nbformat.v4.new_code_cell("x = 1\nx", execution_count=1, outputs=[
            nbformat.v4.new_output("execute_result", {"text/plain": "1",
                                                      "text/html": "<b>1</b>"},
                                   execution_count=1),
            nbformat.v4.new_output("stream", name="stdout", text="printed\n")])]
    with _EXPORTER_LOCK:
        _exporter().from_notebook_node(hide_collapsed_cells(notebook))


@functools.cache
def _exporter() -> Any:
    """nbconvert's ``lab`` HTML exporter with the local MathJax (made once, then reused)."""
    import nbconvert

    return nbconvert.HTMLExporter(template_name="lab", mathjax_url=MATHJAX_URL)
