"""HTML copies of executed notebooks: maths from a local MathJax, hidden answers stay hidden,
the same notebook gives the same bytes."""

from __future__ import annotations

import hashlib
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from alliance_analysis.report import notebook_html
from alliance_analysis.report.notebook_html import (MATHJAX_FILES, copy_mathjax, mathjax_source,
                                                    prepare, render_notebook_html)

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "notebooks" / "tutorials").glob("*.ipynb"))
#: The copy is a small part of the package's 12 MB (it measured 2.6 MB with MathJax 2.7.9).
MAX_MATHJAX_BYTES = 4_000_000


def maths_notebook(folder: Path) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("The ICC is $\\tau_T / (\\tau_T + \\tau_C + \\sigma^2)$."),
        nbformat.v4.new_code_cell("1 + 1"),
        nbformat.v4.new_markdown_cell("### Answers\n\nThe secret answer is 42.",
                                      metadata={"jupyter": {"source_hidden": True},
                                                "tags": ["answers"]}),
    ]
    for number, cell in enumerate(notebook.cells):
        cell.id = f"cell-{number:02d}"  # as the project's notebooks have (new ones are random)
    path = folder / "maths.ipynb"
    nbformat.write(notebook, path)
    return path


def script_sources(page: str) -> list[str]:
    return re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", page)


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_listed_mathjax_file_is_in_the_package() -> None:
    source = mathjax_source()
    for name in MATHJAX_FILES:
        assert (source / name).exists(), name


def test_maths_load_from_the_local_copy_never_from_the_internet(tmp_path: Path) -> None:
    page = render_notebook_html(maths_notebook(tmp_path)).read_text(encoding="utf-8")
    mathjax = [src for src in script_sources(page) if "mathjax" in src.lower()]
    assert mathjax == [notebook_html.MATHJAX_URL]
    assert not re.search(r"https?://[^\"' ]*mathjax", page, flags=re.IGNORECASE)
    loader, _, query = mathjax[0].partition("?")
    assert (tmp_path / loader).is_file()
    for config in query.removeprefix("config=").split(","):  # every configuration file named
        assert (tmp_path / "mathjax" / "config" / f"{config}.js").is_file(), config
    assert (tmp_path / "mathjax" / "fonts" / "HTML-CSS" / "STIX-Web" / "woff").is_dir()
    size = sum(p.stat().st_size for p in (tmp_path / "mathjax").rglob("*") if p.is_file())
    assert size < MAX_MATHJAX_BYTES
    assert "\\tau_T" in page  # the TeX is in the page, for MathJax to typeset


def test_mathjax_is_copied_once_per_folder(tmp_path: Path) -> None:
    first = copy_mathjax(tmp_path)
    marker = first / "MathJax.js"
    stamp = marker.stat().st_mtime_ns
    assert copy_mathjax(tmp_path) == first and marker.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["mathjax"]  # no staging folder left


def test_the_same_notebook_gives_the_same_bytes(tmp_path: Path) -> None:
    pages = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        pages.append(render_notebook_html(maths_notebook(folder)).read_bytes())
    assert pages[0] == pages[1]
    assert tree_digest(tmp_path / "a" / "mathjax") == tree_digest(tmp_path / "b" / "mathjax")


def test_prepare_copies_mathjax_and_leaves_the_page_unchanged(tmp_path: Path) -> None:
    """The pipeline readies the exporter and MathJax while its first stage runs; the page is
    the one rendered without that."""
    plain, prepared = tmp_path / "plain", tmp_path / "prepared"
    plain.mkdir()
    prepared.mkdir()
    page = render_notebook_html(maths_notebook(plain)).read_bytes()
    prepare(prepared)
    assert (prepared / "mathjax" / "MathJax.js").is_file()
    assert render_notebook_html(maths_notebook(prepared)).read_bytes() == page


class _Visible(HTMLParser):
    """Collects the text outside every ``<details>`` element and inside them."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.outside: list[str] = []
        self.inside: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "details":
            self.depth += 1
            assert ("open", None) not in attrs  # closed until the reader clicks

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        (self.inside if self.depth else self.outside).append(data)


def test_hidden_answers_stay_hidden_in_the_page(tmp_path: Path) -> None:
    page = render_notebook_html(maths_notebook(tmp_path)).read_text(encoding="utf-8")
    parsed = _Visible()
    parsed.feed(page)
    assert parsed.depth == 0
    assert "The secret answer is 42." in "".join(parsed.inside)
    assert "The secret answer is 42." not in "".join(parsed.outside)
    assert "The ICC is" in "".join(parsed.outside)


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_answers_stay_hidden_in_the_page(path: Path, tmp_path: Path) -> None:
    copy = shutil.copy(path, tmp_path / path.name)
    answers = nbformat.read(path, as_version=4).cells[-1].source
    first_answer = next(line for line in answers.splitlines() if line.startswith("1. "))
    words = first_answer[3:60].split("**")[-1].strip()  # plain text of the first answer
    page = render_notebook_html(Path(copy)).read_text(encoding="utf-8")
    parsed = _Visible()
    parsed.feed(page)
    assert words in " ".join(parsed.inside)
    assert words not in " ".join(parsed.outside)


def test_a_collapsed_code_cell_shows_only_its_outputs(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("secret_code = 1", metadata={"jupyter": {
        "source_hidden": True}})
    cell.outputs = [nbformat.v4.new_output("stream", text="shown output\n")]
    notebook.cells = [cell]
    path = tmp_path / "code.ipynb"
    nbformat.write(notebook, path)
    page = render_notebook_html(path).read_text(encoding="utf-8")
    assert "secret_code" not in page and "shown output" in page
