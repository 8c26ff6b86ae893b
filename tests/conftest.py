"""Shared fixtures: paths of the project and a small dataset for end-to-end runs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root() -> Path:
    """The project's top-level folder."""
    return ROOT


def write_params(folder: Path, data: Path, name: str = "t", extra: str = "") -> Path:
    """Write a minimal parameters file pointing at ``data``; returns its path."""
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\ndata:\n  path: {data}\n{extra}", encoding="utf-8")
    return path


@pytest.fixture
def small_study(tmp_path: Path) -> Path:
    """A small simulated study (6 therapists x 5 clients, with the planted faults) as CSV."""
    from alliance_analysis.data.simulate import SimulationDesign, simulate, write

    design = SimulationDesign(therapists=6, clients_per_therapist=5, max_sessions=10)
    return write(simulate(design, seed=3), tmp_path / "study")["sessions"]


def check_html_page(page: Path) -> list[str]:
    """Check a page is well formed and every local link or image exists; return the links.

    Well formed: every non-void element is closed in order (html.parser, stdlib). Links:
    ``href``/``src`` values that are not absolute URLs or fragments must name existing files.
    """
    from html.parser import HTMLParser

    void = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    class Checker(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.links: list[str] = []

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag not in void:
                self.stack.append(tag)
            self.links += [v for k, v in attrs if k in ("href", "src") and v]

        def handle_endtag(self, tag: str) -> None:
            assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
            self.stack.pop()

    checker = Checker()
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    checker.feed(text)
    checker.close()
    assert checker.stack == [], f"unclosed: {checker.stack}"
    local = [link for link in checker.links if not link.startswith(("#", "http", "mailto"))]
    missing = [link for link in local if not (page.parent / link).exists()]
    assert not missing, f"links to missing files: {missing}"
    return local


def stopped_at_start(value_grad, values, start, lower, max_iter, canonical=None):
    """A stand-in for the engine's optimizer that stops at its start (not an optimum).

    Patched over ``alliance_analysis.multilevel.engine.nested.minimise`` by tests of the
    non-convergence flags.
    """
    import numpy as np

    from alliance_analysis.multilevel.engine import optimize

    value, gradient = value_grad(start)
    largest = float(np.max(np.abs(gradient)))
    attempt = optimize.Attempt("TNC", start, value, gradient,
                               optimize.hessian(value_grad, start), np.ones(start.size, bool),
                               largest, largest, 1, "stopped at the start (test)")
    return attempt, [attempt]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pipeline on the demo data and ``params/demo.yaml``, run once per session
    (about a minute on two cores); returns the run folder. Tests read it, never change it."""
    from alliance_analysis import pipeline

    folder = tmp_path_factory.mktemp("demo")
    return pipeline.run(ROOT / "params" / "demo.yaml", out=folder / "run",
                        processed=folder / "processed")


def nested_stats(data, random=("1", "session"), three_level=True, therapist_slope=False):
    """The nested engine's sufficient statistics of ``data`` (``client``, ``therapist``, ``y``,
    ``session``, ``x`` and the ``random`` columns): fixed effects ``1 + session + x``, client
    effects ``random``, a therapist intercept (and slope) when ``three_level``.

    Shared by the engine's tests of its runs of clients and of its block factorisation.
    """
    import numpy as np

    from alliance_analysis.multilevel.engine.layout import sufficient_statistics

    data = data.sort_values(["therapist", "client"], kind="stable")
    clients = data["client"].to_numpy()
    client_starts = np.flatnonzero(np.r_[True, clients[1:] != clients[:-1]])
    therapists = data["therapist"].to_numpy()
    owner = therapists[client_starts]
    ones = np.ones(len(data))
    zc = np.column_stack([ones if r == "1" else data[r].to_numpy() for r in random])
    zt = (np.column_stack([ones, data["session"]]) if therapist_slope else ones[:, None]
          if three_level else np.zeros((len(data), 0)))
    return sufficient_statistics(
        zc, zt, np.column_stack([ones, data["session"], data["x"]]), data["y"].to_numpy(),
        client_starts,
        np.flatnonzero(np.r_[True, therapists[1:] != therapists[:-1]]) if three_level
        else np.array([0]),
        np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if three_level
        else np.array([0]))


def notebook_file(path: Path, *sources: str) -> Path:
    """Write a Python notebook of code cells ``sources`` to ``path``."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[new_code_cell(source) for source in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)
    return path


def run_new_and_pooled(source: Path, fork: bool, check=None) -> tuple[list, list]:
    """Execute notebook ``source`` in a kernel papermill starts and in the kernel a
    ``KernelPool`` readied for it; ``(execution_count, outputs)`` of every cell, both ways.

    ``check(km)`` is called with the pool's kernel manager before the notebook runs in it;
    the kernel must be shut down at the end, as papermill's own.
    """
    import json

    from alliance_analysis.kernels import KernelPool, execute_in
    from alliance_analysis.pipeline import KERNEL_ARGUMENTS

    folder = source.parent
    new, pooled = folder / "new.ipynb", folder / "pooled.ipynb"
    arguments = dict(kernel_name="python3", progress_bar=False, cwd=str(folder),
                     extra_arguments=KERNEL_ARGUMENTS)
    execute_in(None, str(source), str(new), **arguments)
    with KernelPool(folder, KERNEL_ARGUMENTS, [source.stem], fork=fork) as pool:
        km = pool.take(source.stem)
        assert km is not None and km.is_alive()
        if check is not None:
            check(km)
        execute_in(km, str(source), str(pooled), **arguments)
        assert not km.has_kernel
    return tuple([(c["execution_count"], c["outputs"])
                  for c in json.loads(path.read_text())["cells"]] for path in (new, pooled))
