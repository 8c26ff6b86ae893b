"""Figure files: each figure written as a 300-dpi PNG and an SVG with fixed metadata.

:func:`save` writes the files :class:`~alliance_analysis.report.runfolder.RunFolder` indexes
(``figures/<name>.png`` and ``.svg``). The same figure gives the same bytes: the SVG's ids are
salted (:data:`RC`), no date or creator is recorded, and the PNG holds only the pixels and
their resolution (:mod:`alliance_analysis.report.png`). The figures themselves are drawn in
:mod:`alliance_analysis.report.plots`, inside the theme built on :data:`RC`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alliance_analysis.report.png import write_png

#: rcParams of every figure, drawn and saved: SVG ids salted (the same in every run), text
#: as paths (an SVG looks the same on a computer without the font).
RC = {"svg.hashsalt": "alliance-analysis", "svg.fonttype": "path", "figure.dpi": 100}


def save(fig: Figure, folder: str | Path, name: str) -> list[Path]:
    """Write ``<name>.png`` (300 dpi) and ``<name>.svg`` with fixed metadata; return the paths.

    The SVG's bytes are those of ``fig.savefig``; the PNG holds the pixels of ``savefig``'s
    PNG (drawn as ``savefig`` draws them, encoded by :func:`png.write_png` in a third of the
    time). Both are written with a third fewer drawings: ``savefig`` draws a figure that has
    a layout engine twice (once, with output switched off, to run the layout; once to print),
    so PNG plus SVG took four drawings. Here the constrained layout runs once, on the PNG's
    300-dpi renderer as ``savefig`` runs it, and both files are printed from that layout
    without a layout engine: two drawings (``tests/test_describe.py`` checks both files
    against ``savefig``'s own). Titles are placed once (:func:`_titles_kept`): placing one
    measures the tick labels again, a sixth of the time of the layout and the two prints.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{name}.png", folder / f"{name}.svg"
    engine = fig.get_layout_engine()
    # the rcParams that would give the figure a default layout engine are off, so that
    # set_layout_engine(None) removes the engine instead of installing one
    with mpl.rc_context({**RC, "figure.autolayout": False,
                         "figure.constrained_layout.use": False}):
        shown = fig.canvas  # given back at the end (a pyplot figure keeps its window)
        canvas = FigureCanvasAgg(fig)  # the canvas (and renderer) savefig prints a PNG with
        if engine is not None:
            dpi = fig.dpi
            fig.dpi = 300
            try:
                engine.execute(fig)
            finally:
                fig.dpi = dpi
        fig.set_layout_engine(None)
        try:
            with _titles_kept(fig, laid_out=True) if engine is not None else nullcontext():
                # print_raw draws as print_png does; the pixels stay in the canvas' renderer
                with open(os.devnull, "wb") as discard:
                    fig.savefig(discard, format="rgba", dpi=300)
                write_png(png, np.asarray(canvas.renderer.buffer_rgba()), dpi=300)
            with _titles_kept(fig):
                fig.savefig(svg, metadata={"Date": None, "Creator": None})
        finally:
            fig.set_layout_engine(engine)
            fig.set_canvas(shown)
    return [png, svg]


@contextmanager
def _titles_kept(fig: Figure, laid_out: bool = False) -> Iterator[None]:
    """Keep each title the last layout (``laid_out``: of the axes it lays out) or drawing left
    at its axes' top, unless a y offset text, twinned, aligned or child axes could lift it
    (those depend on sizes; top tick labels, in points, do not). Why not public: titles given
    no ``y`` are placed by the private ``_autotitlepos`` flag, cleared for the prints only."""
    aligned = getattr(fig, "_align_label_groups", {}).get("title")  # the same for each axes
    def placed(ax: Any) -> bool:
        twins, offset = getattr(ax, "_twinned_axes", None), ax.yaxis.offsetText
        return (getattr(ax, "_autotitlepos", None) is True
                and ax.title.get_position()[1] == 1.0 and not ax.child_axes
                and twins is not None and len(twins.get_siblings(ax)) == 1
                and aligned is not None and len(aligned.get_siblings(ax)) == 1
                and not (offset.get_visible() and offset.get_text())
                and (not laid_out or (ax.get_subplotspec() is not None
                                      and ax.get_in_layout())))

    for ax in (kept := [ax for ax in fig.get_axes() if placed(ax)]):
        ax._autotitlepos = False
    try:
        yield
    finally:
        for ax in kept:
            ax._autotitlepos = True
