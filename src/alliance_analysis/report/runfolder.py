"""The run folder a pipeline run writes: tables, figures and headline results.

Notebooks never write files themselves; they hand results to a :class:`RunFolder`, which
writes them under stable names so that two runs with the same inputs give byte-identical
``tables/`` and ``results.json``::

    reports/<run>/
        tables/<name>.csv       tidy, full precision (and <name>.md, .tex, .html: APA formatted)
        figures/<name>.png, <name>.svg
        results.json            headline numbers by stable key
        outputs.json            the index of every table and figure (see RunFolder.outputs)

A run writes into ``<run>.partial`` and ``<processed>.partial`` and swaps them in only when it
completes (:func:`replace_folders`); a failed run is kept as ``<run>.failed``
(:func:`keep_failed`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from alliance_analysis.errors import AllianceParamsError, AllianceRunError
from alliance_analysis.report.tables import write_apa_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _plain(value: Any) -> Any:
    """A JSON-able Python value (numpy scalars to Python, NaN to None)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: Mapping[str, Any], plain: bool = False) -> None:
    """Write ``payload`` as deterministic JSON (sorted keys, 2-space indent, final newline).

    The file is written under a temporary name and renamed, so an interrupted run never
    leaves a truncated ``results.json``, ``outputs.json`` or ``manifest.json``. ``plain``:
    the payload is JSON-able already (read from JSON, new values through :func:`_plain`).
    """
    text = json.dumps(payload if plain else _plain(payload), indent=2, sort_keys=True,
                      ensure_ascii=False)
    temporary = path.with_name(f".{path.name}.writing")
    try:
        temporary.write_text(text + "\n", encoding="utf-8")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


#: The lock file of a run folder's shared indexes (removed when the run finishes).
LOCK = ".indexes.lock"


@contextmanager
def _locked(folder: Path, timeout: float = 60.0, stale_after: float = 120.0) -> Iterator[None]:
    """Hold the run folder's lock while ``results.json`` or ``outputs.json`` is read, changed
    and written, so that stages running at the same time (in separate kernels) never lose
    each other's entries.

    The lock is a file created exclusively (``O_CREAT | O_EXCL``, portable, unlike
    ``fcntl``) holding a token of its owner, who alone removes it. The writes it guards take
    milliseconds, so a lock older than ``stale_after`` seconds was left by a killed kernel:
    it is renamed away atomically (only one waiter can do so) and the wait goes on. Waiting
    longer than ``timeout`` for a live lock is an error naming the file, never a silent
    takeover.

    Raises
    ------
    AllianceRunError
        The lock stayed taken for ``timeout`` seconds.
    """
    path = folder / LOCK
    token = f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                stale = time.time() - path.stat().st_mtime > stale_after
            except FileNotFoundError:
                continue
            if stale:
                grave = path.with_name(f"{LOCK}.{token}.stale")
                try:
                    os.rename(path, grave)
                    grave.unlink(missing_ok=True)
                except FileNotFoundError:  # another waiter took it over first
                    pass
                continue
            if time.monotonic() > deadline:
                raise AllianceRunError(
                    f"{path}: the run folder's lock has been taken for {timeout:g} s. If no "
                    "run is writing to this folder, delete the file and rerun") from None
            time.sleep(0.005)
            continue
        with os.fdopen(handle, "w") as lock:
            lock.write(token)
        break
    try:
        yield
    finally:
        try:
            if path.read_text() == token:
                path.unlink()
        except FileNotFoundError:
            pass


class RunFolder:
    """Writes one run's tables, figures and headline numbers under stable names.

    Every table and figure written is recorded in the folder's index, ``outputs.json``
    (:meth:`outputs`): its name, kind, stage, title, note, files and the flags of the models
    it shows. The page and ``alliance verify`` read that index; nothing guesses a file's
    stage from its name or a model's state from message text.

    Parameters
    ----------
    path
        The run folder (created if missing).
    stage
        The stage writing through this object (``01_clean`` ... ``05_change``), recorded
        with each output.
    """

    def __init__(self, path: str | Path, stage: str | None = None,
                 ci_level: float = 0.95) -> None:
        self.path = Path(path)
        self.stage = stage
        #: Level of the confidence intervals in this stage's tables: their formatted CI
        #: column is labelled by it ("90% CI" under ``multilevel.ci_level: 0.9``).
        self.ci_level = ci_level
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def index_file(self) -> Path:
        """``outputs.json``: every table and figure of the run, by kind and name."""
        return self.path / "outputs.json"

    def outputs(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The index: ``{"tables": {name: entry}, "figures": {name: entry}}``.

        An entry holds ``stage``, ``title``, ``note``, ``files`` (relative to the run folder)
        and ``flags``: one ``{"model", "converged", "singular", "warnings"}`` per model shown
        (:meth:`alliance_analysis.results.ModelResult.flags`).
        """
        if not self.index_file.exists():
            return {"tables": {}, "figures": {}}
        return json.loads(self.index_file.read_text(encoding="utf-8"))

    def _index(self, kind: str, name: str, files: Sequence[Path], title: str, note: str,
               flags: Sequence[Mapping[str, Any]]) -> None:
        entry = _plain({"stage": self.stage, "title": title, "note": note,
                        "files": sorted(p.relative_to(self.path).as_posix() for p in files),
                        "flags": [dict(f) for f in flags]})
        with _locked(self.path):
            index = self.outputs()
            index.setdefault(kind, {})[name] = entry
            write_json(self.index_file, index, plain=True)

    @property
    def results_file(self) -> Path:
        """``results.json``: every headline number of the run, by stable key."""
        return self.path / "results.json"

    def results(self) -> dict[str, Any]:
        """The headline numbers recorded so far."""
        if not self.results_file.exists():
            return {}
        return json.loads(self.results_file.read_text(encoding="utf-8"))

    def record(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Add headline numbers to ``results.json`` (keys like ``clean.rows_read``).

        Returns the values as stored, so a notebook cell can show them.
        """
        plain = _plain(dict(values))
        with _locked(self.path):
            stored = self.results()
            stored.update(plain)
            write_json(self.results_file, stored, plain=True)
        return plain

    def write_figure(self, name: str, fig: Figure, caption: str = "",
                     flags: Sequence[Mapping[str, Any]] = ()) -> list[Path]:
        """Save ``figures/<name>.png`` (300 dpi) and ``.svg`` (:func:`figure_files.save`);
        index it with its ``caption`` (required: what the figure shows)."""
        # imported here: matplotlib costs a stage that writes no figure (and the pipeline's
        # own process) about half a second
        from alliance_analysis.report.figure_files import save

        if not caption.strip():
            raise ValueError(f"figure {name}: every figure needs a caption saying what it "
                             "shows")
        paths = save(fig, self.path / "figures", name)
        self._index("figures", name, paths, caption, "", flags)
        return paths

    def figure(self, name: str) -> Any:
        """A written figure (``figures/<name>.png``) for a notebook to show, or None if absent.

        Notebooks show what the run wrote, not a second drawing of it.
        """
        from IPython.display import Image

        path = self.path / "figures" / f"{name}.png"
        return Image(filename=str(path), width=700) if path.is_file() else None

    def write_table(self, name: str, table: pd.DataFrame, caption: str = "", note: str = "",
                    formatted: bool = True, flags: Sequence[Mapping[str, Any]] = (),
                    shown: pd.DataFrame | None = None) -> Path:
        """Write ``tables/<name>.csv`` (tidy, full precision) and, unless ``formatted=False``
        (long listings such as the ledgers), the APA-formatted ``.md``, ``.tex`` and ``.html``
        with ``caption`` above and ``note`` below (:func:`tables.write_apa_table`); index it
        with ``flags``, one per model the table shows
        (:meth:`~alliance_analysis.results.ModelResult.flags`). ``shown`` is the formatted
        text when the caller formats the table itself (default: :func:`tables.format_apa`).

        Returns the CSV path.
        """
        if not caption.strip():
            raise ValueError(f"table {name}: every table the report shows needs a caption "
                             "(its title as a reader of a paper would write it)")
        folder = self.path / "tables"
        folder.mkdir(exist_ok=True)
        csv_path = folder / f"{name}.csv"
        table.to_csv(csv_path, index=False, lineterminator="\n")
        written = [csv_path]
        if formatted:
            write_apa_table(folder, name, table, caption=caption, note=note, shown=shown,
                            ci_level=self.ci_level)
            written += [folder / f"{name}{suffix}" for suffix in (".md", ".tex", ".html")]
        self._index("tables", name, written, caption, note, flags)
        return csv_path


# Runs are transactions: a run writes into staging folders beside its run folder and its
# processed folder and swaps them in only when every stage succeeded (pipeline.run).

#: Suffix of a staging folder (``<folder>.partial``) and of a failed run's folder.
PARTIAL, FAILED = ".partial", ".failed"

#: File marking a staging folder as the workbench's own; removed before it is swapped in.
STAGED = ".alliance-staging"


def sibling(folder: Path, suffix: str) -> Path:
    """``folder`` with ``suffix`` appended to its name, in the same parent folder."""
    return folder.with_name(folder.name + suffix)


def _empty(folder: Path) -> bool:
    return folder.is_dir() and not any(folder.iterdir())


def check_siblings(run_dir: Path, processed_dir: Path) -> None:
    """Refuse to start when a staging or failed folder's name is taken by something else.

    ``<run>.partial`` and ``<processed>.partial`` may be left by a run that was killed (they
    hold :data:`STAGED`) and ``<run>.failed`` by a failed run (it holds ``manifest.json``);
    those are replaced. Anything else of those names is the user's and is never deleted.

    Raises
    ------
    AllianceParamsError
        Naming the folder and what to do (the command exits with status 2).
    """
    for folder, mark in ((sibling(run_dir, PARTIAL), STAGED), (sibling(run_dir, FAILED),
                         "manifest.json"), (sibling(processed_dir, PARTIAL), STAGED)):
        if folder.exists() and not (_empty(folder) or (folder / mark).is_file()):
            raise AllianceParamsError(
                f"{folder} exists and was not written by a run; a run uses that name for "
                "its unfinished output. Move or rename it, then rerun")


def stage_folder(final: Path, seed: bool = False) -> Path:
    """Create the staging folder ``<final>.partial``: empty, or with ``seed`` a copy of
    ``final`` (so a processed folder keeps its pseudonym key and any other files).

    A staging folder left by a killed run is removed first (see :func:`check_siblings`).
    """
    staging = sibling(final, PARTIAL)
    if staging.exists():
        shutil.rmtree(staging)
    if seed and final.is_dir():
        shutil.copytree(final, staging, symlinks=True)
    else:
        staging.mkdir(parents=True)
    (staging / STAGED).write_text("Unfinished output of a run; deleted or replaced by the "
                                  "next run.\n", encoding="utf-8")
    return staging


def replace_folders(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Move each staging folder to its final place, replacing the folder there: all or none.

    Each final folder is first renamed aside (``.<name>.replaced-*``), the staging folder is
    renamed in, and the old folders are deleted only when every rename succeeded; on an error
    the renames are undone. Renames within one parent folder stay on one file system, so no
    reader ever sees a half-written folder under the final name.
    """
    moved: list[tuple[Path, Path, Path | None]] = []
    try:
        for staging, final in pairs:
            (staging / STAGED).unlink(missing_ok=True)
            aside = None
            if final.exists():
                aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.replaced-",
                                              dir=final.parent))
                aside.rmdir()
                final.rename(aside)
            moved.append((staging, final, aside))
            staging.rename(final)
    except BaseException:
        for staging, final, aside in reversed(moved):
            if not staging.exists() and final.exists():
                final.rename(staging)
            if aside is not None and aside.exists():
                aside.rename(final)
        raise
    for _, _, aside in moved:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def keep_failed(staging: Path, final: Path) -> Path:
    """Keep a failed run's staging folder as ``<final>.failed`` (replacing an older one).

    Returns the folder's new path.
    """
    failed = sibling(final, FAILED)
    if failed.exists():
        shutil.rmtree(failed)
    staging.rename(failed)
    (failed / STAGED).unlink(missing_ok=True)
    return failed
