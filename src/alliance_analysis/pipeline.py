"""Running a whole analysis: the notebooks in order with papermill, then the manifest.

``alliance run params/demo.yaml`` calls :func:`run`, which

1. validates the parameters file (:func:`alliance_analysis.params.load_params`) and the
   output folders;
2. stages the run: a new ``<run>.partial`` beside the run folder (``reports/<name>`` unless
   ``--out``), marked incomplete, and ``<processed>.partial``, a copy of the processed folder;
3. executes ``notebooks/01_clean`` .. ``06_robustness`` with papermill, each with the
   parameters of :func:`alliance_analysis.params.notebook_parameters` (the staging folders),
   in a kernel started ahead of the stage (:mod:`alliance_analysis.kernels`; stages side by
   side share the cores among their BLAS thread pools), saving the
   executed notebook and an HTML rendering of it (made as the stage ends) under ``notebooks/``;
4. writes ``manifest.json`` (parameters, input SHA-256, package versions, git commit, seed,
   times, SHA-256 of every output file) and ``index.html``;
5. swaps both staging folders in for the previous run and processed folders.

Runs are transactions: a failing notebook (or Ctrl-C) stops the run with an error naming the
notebook, the cell and the error, the previous run and processed folders are left as they
were, and the partial run is kept as ``<run>.failed`` with an ``INCOMPLETE`` file and
``"status": "incomplete"`` (or ``"interrupted"``) in its manifest. Executed notebooks record
the folders they end up in, never the staging folders, so a run's files are the same as if it
had been written in place.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from alliance_analysis.report import page as report
from alliance_analysis.errors import (AllianceDataError, AllianceError, AllianceParamsError,
                                      AllianceRunError)
from alliance_analysis.data.io import file_sha256, source_encoding
from alliance_analysis.kernels import KernelPool, blas_environment, execute_in
from alliance_analysis.stages import (NOTEBOOKS, notebooks_dir, parallel_from, project_root,
                                     side_by_side, start_order)
from alliance_analysis.report.methods import methods_paragraph, results_paragraph
from alliance_analysis.report.manuscript import write_manuscript
from alliance_analysis.params import RunParams, load_params, notebook_parameters
from alliance_analysis.report.software import (RECORDED_PACKAGES,  # noqa: F401 - re-exported
                                               git_commit, installed_versions,
                                               lock_differences, package_versions)
from alliance_analysis.report.runfolder import (FAILED, LOCK, PARTIAL, STAGED, check_siblings,
                                                keep_failed, replace_folders, sibling,
                                                stage_folder, write_json)
from alliance_analysis.verify import (ATOL, NOT_RECORDED_FOLDERS, RTOL, compare_runs,
                                      read_manifest, rerun_parameters)

# papermill and nbconvert validate notebooks with jsonschema, whose import builds the grammars
# of the optional rfc3987_syntax package (about 1.2 s of one core) for its "iri" format checks,
# which no notebook schema uses; marked absent, jsonschema leaves those two checks out.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

if TYPE_CHECKING:
    import pandas as pd

MARKER = "INCOMPLETE"

#: Arguments of every notebook kernel. ipykernel logs a warning at each start (its loopback
#: TCP sockets are unencrypted) and an error when shut down mid-interrupt; the kernel is local
#: and short-lived, and a dead kernel still fails the run, so its log keeps critical messages.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]

#: Errors raised inside a notebook that are the user's to fix, by exception name.
USER_ERRORS = {"AllianceDataError": AllianceDataError, "AllianceParamsError": AllianceParamsError}


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; the message says where the partial run is kept.

    A :class:`KeyboardInterrupt`, so code that catches Ctrl-C still does; the command line
    prints the message and exits with status 130.
    """


def _check_writable_folder(what: str, folder: Path) -> None:
    """Refuse an output folder that is a file, lies under a file, or cannot be written.

    The folder and its parent must be writable: a run writes beside it and renames.
    """
    if folder.exists():
        checked = [folder, folder.parent]
    else:
        checked = [next(parent for parent in folder.parents if parent.exists())]
    for parent in checked:
        if not parent.is_dir():
            raise AllianceParamsError(
                f"{what}: {folder} {'is' if parent == folder else 'lies under'} a file "
                f"({parent}), not a folder. Give a folder path")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise AllianceParamsError(
                f"{what}: {parent} cannot be written (permissions). Choose a folder you "
                "can write to")


def _check_folders(run_dir: Path, processed_dir: Path) -> None:
    """Refuse output folders a run could not replace safely (before anything is written)."""
    for what, folder in (("--out (the run folder)", run_dir),
                         ("--processed (the processed-data folder)", processed_dir)):
        _check_writable_folder(what, folder)
    if run_dir == processed_dir or run_dir in processed_dir.parents \
            or processed_dir in run_dir.parents:
        raise AllianceParamsError(
            f"the run folder {run_dir} and the processed-data folder {processed_dir} overlap; "
            "a run replaces each of them as a whole. Give --out and --processed separate "
            "folders")
    if run_dir.is_dir() and any(run_dir.iterdir()) \
            and not (run_dir / "manifest.json").exists():
        raise AllianceRunError(
            f"{run_dir} is not empty and holds no manifest.json, so it is not a previous "
            "run folder. Choose another output folder (--out) or empty it yourself"
        )
    check_siblings(run_dir, processed_dir)


def _relocate(text: str, moves: dict[Path, Path]) -> str:
    """``text`` with every staging folder's path replaced by the folder it is moved to."""
    for staging in sorted(moves, key=lambda path: -len(str(path))):
        text = text.replace(str(staging), str(moves[staging]))
    return text


def _relocate_notebook(executed: Path, parameters: dict[str, str]) -> Any:
    """Make an executed notebook name the folders it ends up in, not the staging folders.

    The injected parameters cell is written again by papermill's own translator, so the
    notebook reads as if it had been executed with ``parameters`` (whose ``run_dir`` is the
    folder it ends up in). Returns the notebook as written.
    """
    import nbformat
    from papermill.translators import translate_parameters

    notebook = nbformat.read(executed, as_version=4)
    for cell in notebook.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.source = translate_parameters("python3", "python", parameters, "Parameters")
    recorded = notebook.metadata.get("papermill", {})
    if "parameters" in recorded:
        recorded["parameters"] = dict(parameters)
    if "output_path" in recorded:
        recorded["output_path"] = str(Path(parameters["run_dir"]) / "notebooks"
                                      / executed.name)
    nbformat.write(notebook, executed)
    return notebook


def _render_html(executed: Path, notebook: Any = None) -> None:
    from alliance_analysis.report.notebook_html import render_notebook_html

    # maths from a local MathJax copy, answers kept hidden
    render_notebook_html(executed, notebook)


def _prepare_pages(folder: Path) -> None:
    from alliance_analysis.report.notebook_html import prepare

    prepare(folder)


def _execute(name: str, run_dir: Path, parameters: dict[str, str],
             kernels: KernelPool | None = None) -> None:
    """Execute notebook ``name`` with papermill into ``run_dir/notebooks``: in the kernel
    ``kernels`` started for it ahead of time (:class:`~alliance_analysis.kernels.KernelPool`,
    which also starts the next stages' kernels now), or in a kernel papermill starts."""
    from papermill.exceptions import PapermillExecutionError

    source = notebooks_dir() / f"{name}.ipynb"
    executed = run_dir / "notebooks" / f"{name}.ipynb"
    km = kernels.take(name) if kernels is not None else None  # waits for its imports
    try:
        # written once at the end (and on a failure, before papermill raises), not after
        # every cell: those saves serialise the whole notebook, images and all, each time
        execute_in(
            km, str(source), str(executed), parameters=parameters, kernel_name="python3",
            cwd=str(source.parent), progress_bar=False, log_output=False,
            extra_arguments=KERNEL_ARGUMENTS, request_save_on_cell_execute=False,
        )
    except PapermillExecutionError as exc:
        where = (f"notebook {name} failed in cell {exc.cell_index + 1} (execution count "
                 f"{exc.exec_count})")
        # The researcher's own mistakes keep their type (exit status 2); anything else is a
        # failure of the run.
        kind = USER_ERRORS.get(exc.ename, AllianceRunError)
        if exc.ename == "KeyboardInterrupt":  # Ctrl-C reached the kernel first
            raise KeyboardInterrupt from None
        raise kind(f"{where}: {exc.ename}: {exc.evalue}. The executed notebook, with the full "
                   f"traceback, is {executed}") from None


def _execute_all(notebooks: Sequence[str], stage: Path, parameters: dict[str, str],
                 manifest: dict[str, Any],
                 on_progress: Callable[[str, int, int, float | None], None] | None,
                 jobs: int | None, running: list[str], kernels: KernelPool | None = None,
                 on_done: Callable[[str], None] | None = None) -> None:
    """Run the notebooks: in order up to :data:`PARALLEL_AFTER`, then ``jobs`` at a time,
    in the packed order of :func:`start_order`.

    ``running`` holds the notebooks started and not finished (for the message of Ctrl-C).
    On the first failure or Ctrl-C the stages not started yet are cancelled; the failure (the
    first in notebook order, Ctrl-C before any other) is raised once the running stages have
    ended (Ctrl-C reaches their kernels too and ends them).

    With ``kernels`` (see :func:`_execute`), each stage runs in a kernel started ahead of
    it, so that starting kernels and importing fill the time a core would wait (while
    ``01_clean`` runs alone, or while the main process works). ``on_done(name)`` is called
    after each stage that succeeded (in the stage's thread).
    """
    from concurrent.futures import as_completed

    total = len(notebooks)
    workers = side_by_side(notebooks, jobs)

    stop = threading.Event()  # set by the first failure: later stages do not start

    def one(index: int, name: str) -> None:
        if stop.is_set():
            return
        if on_progress:
            on_progress(name, index, total, None)
        running.append(name)
        start = time.perf_counter()
        try:
            _execute(name, stage, parameters, kernels)
        except BaseException:
            stop.set()
            raise
        manifest["seconds"][name] = round(time.perf_counter() - start, 2)
        running.remove(name)
        if on_progress:
            on_progress(name, index, total, manifest["seconds"][name])
        if on_done:
            try:
                on_done(name)
            except BaseException:
                stop.set()
                raise

    split = parallel_from(notebooks)
    for index, name in enumerate(notebooks[:split], start=1):
        one(index, name)
    number = {name: index for index, name in enumerate(notebooks, start=1)}
    rest = [(number[name], name) for name in start_order(notebooks, jobs)[split:]]
    if workers == 1:
        for index, name in rest:
            one(index, name)
        return
    errors: dict[str, BaseException] = {}
    interrupted: list[str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(one, index, name): name for index, name in rest}
        try:
            for future in as_completed(futures):
                if future.cancelled():
                    continue
                if future.exception() is not None:
                    errors[futures[future]] = future.exception()
                    for queued in futures:  # stages not started yet do not start
                        queued.cancel()
        except KeyboardInterrupt as exc:  # Ctrl-C reaches the kernels too and ends them
            stop.set()
            interrupted = list(running)
            errors["Ctrl-C"] = exc
            for queued in futures:
                queued.cancel()
        # leaving the pool waits for the stages still running
    manifest["seconds"] = {name: manifest["seconds"][name] for name in notebooks
                           if name in manifest["seconds"]}
    if errors:
        if interrupted:
            running[:] = interrupted
        first = next((e for e in errors.values() if isinstance(e, KeyboardInterrupt)), None)
        raise first if first is not None else next(
            errors[name] for name in notebooks if name in errors)


def _output_hashes(run_dir: Path) -> dict[str, str]:
    """SHA-256 of every output file, except the manifest, the page (they hold dates) and
    the MathJax copy the notebooks' HTML reads (a copy of the installed
    jupyter-server-mathjax, whose version the manifest records)."""
    return {
        path.relative_to(run_dir).as_posix(): file_sha256(path)
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and path.name not in ("manifest.json", "index.html", STAGED, LOCK)
        and not path.relative_to(run_dir).as_posix().startswith(NOT_RECORDED_FOLDERS)
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(params_file: str | Path, out: str | Path | None = None,
        processed: str | Path | None = None, notebooks: Sequence[str] = NOTEBOOKS,
        on_progress: Callable[[str, int, int, float | None], None] | None = None,
        jobs: int | None = None) -> Path:
    """Run the pipeline notebooks on one parameters file and write the run folder.

    The run is a transaction (see the module's docstring): it is written into
    ``<out>.partial`` and ``<processed>.partial`` and replaces the previous run and processed
    folders only when every notebook succeeded; an older ``<out>.failed`` is then removed.

    Parameters
    ----------
    params_file
        The YAML parameters file.
    out
        Run folder; default ``output`` from the parameters, else ``reports/<name>``.
    processed
        Folder for the processed session table; default ``data/processed/<name>``.
    notebooks
        Which notebooks to run, in order (default: all of :data:`NOTEBOOKS`).
    on_progress
        Called as ``on_progress(notebook, index, total, seconds)`` before (``seconds`` None)
        and after each notebook.
    jobs
        Notebooks run at the same time after ``01_clean`` (the later stages read only its
        processed table): default one per CPU core, 1 runs them one after another. The
        outputs are the same bytes either way (:data:`PARALLEL_AFTER`).

    Returns
    -------
    Path
        The run folder.

    Raises
    ------
    AllianceParamsError
        The parameters file or an output folder is invalid (nothing is written).
    AllianceDataError
        The data cannot be used (raised inside a notebook, mostly ``01_clean``).
    AllianceRunError
        A notebook failed for another reason, or the run folder is not a previous run's.
    RunInterrupted
        Ctrl-C stopped the run.

    After an error raised while notebooks run, the previous run and processed folders are
    unchanged and the partial run is kept as ``<out>.failed``, marked ``INCOMPLETE``, its
    manifest's ``status`` ``"incomplete"`` or ``"interrupted"``; the message says so.
    """
    params_path = Path(params_file).resolve()
    params: RunParams = load_params(params_path)
    run_dir = Path(out).resolve() if out is not None else params.output_dir()
    processed_dir = Path(processed).resolve() if processed is not None else params.processed_dir()
    _check_folders(run_dir, processed_dir)
    had_run = (run_dir / "manifest.json").is_file()
    stage, stage_processed = stage_folder(run_dir), sibling(processed_dir, PARTIAL)
    moves = {stage: sibling(run_dir, FAILED), stage_processed: processed_dir}
    error: BaseException | None = None
    current = ""
    try:
        stage_folder(processed_dir, seed=True)
        (stage / "notebooks").mkdir()
        (stage / MARKER).write_text("This run did not finish; see manifest.json.\n")
        (stage / "params.yaml").write_text(
            yaml.safe_dump(params.to_plain(), sort_keys=True), encoding="utf-8")
        manifest = _start_manifest(params, params_path, notebooks)
        parameters = notebook_parameters(params_path, stage, stage_processed)
        running: list[str] = []
        # Each executed notebook is rendered as soon as its stage ends, beside the stages
        # still running (one page at a time: they share the MathJax copy), naming the
        # folders a complete run ends up in; _finish renders a failed run's pages again.
        complete = notebook_parameters(params_path, run_dir, processed_dir)
        rendered: dict[str, dict[str, str]] = {}
        renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        pages: list[Future] = []

        def render(name: str) -> None:
            executed = stage / "notebooks" / f"{name}.ipynb"
            if executed.is_file():  # as _finish, render the notebooks there are
                _render_executed(executed, complete)
                rendered[name] = complete

        # the first page's set-up (MathJax copy, templates) is done while 01_clean runs
        pages.append(renderer.submit(_prepare_pages, stage / "notebooks"))
        try:
            # kernels are readied as many ahead as stages run side by side, and those stages
            # share the cores among their BLAS pools
            workers = side_by_side(notebooks, jobs)
            with KernelPool(notebooks_dir(), KERNEL_ARGUMENTS, start_order(notebooks, jobs),
                            ahead=workers, env=blas_environment(workers)) as kernels:
                kernels.start_soon(kernels.order[:1])  # while papermill is imported
                _execute_all(notebooks, stage, parameters, manifest, on_progress, jobs,
                             running, kernels,
                             lambda name: pages.append(renderer.submit(render, name)))
            for page in pages:  # a page that could not be rendered fails the run
                page.result()
        except KeyboardInterrupt as exc:
            current = ", ".join(running)
            error = exc
            manifest.update(status="interrupted", error=f"interrupted (Ctrl-C) in {current}")
        except Exception as exc:  # noqa: BLE001 - recorded, then raised again below
            error = exc
            manifest.update(status="incomplete", error=_relocate(str(exc), moves))
        else:
            manifest["status"] = "complete"
            (stage / MARKER).unlink()
            moves[stage] = run_dir
        finally:
            renderer.shutdown(wait=True)
        _finish(stage, stage_processed, manifest, params,
                notebook_parameters(params_path, moves[stage], processed_dir), rendered)
        if error is None:
            replace_folders([(stage_processed, processed_dir), (stage, run_dir)])
            shutil.rmtree(sibling(run_dir, FAILED), ignore_errors=True)
            return run_dir
    except BaseException:  # the run could not even be recorded: keep what can be read
        shutil.rmtree(stage_processed, ignore_errors=True)
        if (stage / "manifest.json").is_file():
            keep_failed(stage, run_dir)
        else:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    shutil.rmtree(stage_processed, ignore_errors=True)
    kept = keep_failed(stage, run_dir)
    where = (f"The partial run is kept in {kept}; "
             + (f"the previous run in {run_dir} is unchanged." if had_run
                else f"nothing was written to {run_dir}."))
    if isinstance(error, KeyboardInterrupt):
        raise RunInterrupted(f"run stopped by Ctrl-C{f' in {current}' if current else ''}. "
                             f"{where}") from None
    if isinstance(error, AllianceError):
        raise type(error)(f"{manifest['error'].rstrip().rstrip('.')}. {where}") from None
    raise error


def _start_manifest(params: RunParams, params_path: Path,
                    notebooks: Sequence[str]) -> dict[str, Any]:
    """The manifest as a run starts (``status`` running): inputs, versions, parameters."""
    installed = installed_versions()
    return {
        "status": "running",
        "run": params.name,
        "parameters_file": str(params_path),
        "parameters": params.to_plain(),
        "seed": params.seed,
        "inputs": {str(params.data.path): file_sha256(params.data.path)},
        "encoding": source_encoding(params.data),  # of a CSV file; None for other formats
        "privacy": {"dropped": list(params.privacy.drop), "allowed": dict(params.privacy.allow)},
        "packages": package_versions(installed),
        "lock": {"file": "requirements.lock",
                 "differences": lock_differences(project_root() / "requirements.lock",
                                                 installed)},
        "git": git_commit(project_root()),
        "started": _now(),
        "notebooks": list(notebooks),
        "seconds": {},
    }


def _render_executed(executed: Path, parameters: dict[str, str]) -> None:
    """Make an executed notebook name the folders ``parameters`` name, then render its HTML."""
    _render_html(executed, _relocate_notebook(executed, parameters))


def _finish(stage: Path, stage_processed: Path, manifest: dict[str, Any], params: RunParams,
            parameters: dict[str, str],
            rendered: dict[str, dict[str, str]] | None = None) -> None:
    """Render the executed notebooks, write ``methods.md``, ``manuscript.docx``,
    ``manifest.json`` and ``index.html``.

    ``parameters`` are the notebook parameters naming the folders the run ends up in (the
    run or failed folder and the processed folder): the notebooks and the manifest record
    those, not the staging folders. ``rendered`` names the notebooks already relocated and
    rendered as their stage ended, with the parameters they were relocated to; those are
    not rendered again when the parameters are the same.
    """
    rendered = rendered or {}
    for executed in sorted((stage / "notebooks").glob("*.ipynb")):
        if rendered.get(executed.stem) != parameters:
            _render_executed(executed, parameters)
    manifest["finished"] = _now()
    manifest["outputs"] = _output_hashes(stage)
    manifest["processed"] = {
        "folder": parameters["processed_dir"],
        "files": {path.name: file_sha256(path) for path in sorted(stage_processed.glob("*"))
                  if path.is_file() and path.suffix in (".parquet", ".csv")},
    }
    methods = methods_paragraph(params, manifest["packages"], run_dir=stage)
    summary = results_paragraph(params, run_dir=stage)
    (stage / "methods.md").write_text(
        f"## Methods\n\n{methods}\n\n## Results\n\n{summary}\n", encoding="utf-8")
    manifest["outputs"]["methods.md"] = file_sha256(stage / "methods.md")
    if manifest.get("status") == "complete":  # a failed run keeps its own error in view
        manifest["outputs"]["manuscript.docx"] = file_sha256(write_manuscript(stage, params,
                                                                              manifest))
    write_json(stage / "manifest.json", manifest)
    report.write_index(stage, manifest, methods=methods, results=summary)


def verify(run_dir: str | Path, data: str | Path | None = None, rtol: float = RTOL,
           atol: float = ATOL, workdir: str | Path | None = None) -> "pd.DataFrame":
    """Rerun a run from its manifest and compare every output file it recorded.

    The comparison, file by file, is :func:`alliance_analysis.verify.compare_runs`: numbers
    of ``results.json`` and the CSV tables within the tolerance, figures by SHA-256, the other
    tables (``.md``, ``.html``, ``.tex``) and text files byte for byte; a file missing on
    either side is a difference; executed notebooks (they hold run times) are skipped.

    Parameters
    ----------
    run_dir
        A run folder written by :func:`run` (holds ``manifest.json``).
    data
        The data file, if not at the path recorded in the manifest (e.g. on another machine).
    rtol, atol
        Tolerance: a number matches when ``|rerun - reported| <= atol + rtol * |reported|``.
    workdir
        Where to rerun (default: a temporary folder, removed afterwards).

    Returns
    -------
    pandas.DataFrame
        One row per compared item: ``where`` (a file of the run folder), ``item`` (a key, a
        column, or the whole file), ``reported``, ``rerun`` and ``status`` (``match``,
        ``DIFFERS ...`` or ``skipped (...)``).

    Raises
    ------
    AllianceDataError
        The data file's SHA-256 differs from the manifest's: the numbers cannot come from it;
        or ``manifest.json`` is not readable.
    AllianceRunError
        The folder holds no complete run.

    Notes
    -----
    Client and therapist pseudonyms depend on the secret key of the original run. When that
    key is still at its recorded place it is reused and the pseudonym columns are compared
    too; otherwise they are skipped.
    """
    import tempfile

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    with tempfile.TemporaryDirectory(dir=workdir) as temporary:
        folder = Path(temporary)
        params_file, same_key = rerun_parameters(manifest, data, folder)
        rerun = run(params_file, out=folder / "run", processed=folder / "processed",
                    notebooks=manifest.get("notebooks", NOTEBOOKS))
        return compare_runs(run_dir, rerun, manifest, rtol, atol, same_key)


def validation_notebooks() -> list[Path]:
    """The notebooks of ``notebooks/validation/``, in name order."""
    return sorted((notebooks_dir() / "validation").glob("*.ipynb"))


def reproduce(out: str | Path,
              on_progress: Callable[[str, int, int, float | None], None] | None = None,
              ) -> "pd.DataFrame":
    """Run every validation notebook and write ``<out>/index.html`` with the comparisons.

    Each notebook compares the workbench's estimates with published reference values and
    writes its table to ``<out>/tables/<name>.csv``; executed notebooks and their HTML go to
    ``<out>/notebooks/``.

    Returns
    -------
    pandas.DataFrame
        One row per reference (:func:`alliance_analysis.validation.summary`).

    Raises
    ------
    AllianceRunError
        When any notebook fails or any comparison is outside its tolerance (after the page
        is written).
    """
    import pandas as pd
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from alliance_analysis import validation

    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / "notebooks").mkdir(parents=True)
    data_dir = project_root() / "data" / "reference"
    failures: dict[str, str] = {}
    found = validation_notebooks()
    for index, source in enumerate(found, start=1):
        if on_progress:
            on_progress(source.stem, index, len(found), None)
        start = time.perf_counter()
        executed = out / "notebooks" / source.name
        try:
            papermill.execute_notebook(
                str(source), str(executed), kernel_name="python3", cwd=str(source.parent),
                parameters={"data_dir": str(data_dir), "out_dir": str(out)},
                progress_bar=False, log_output=False, extra_arguments=KERNEL_ARGUMENTS)
        except PapermillExecutionError as exc:
            failures[source.stem] = f"{exc.ename}: {exc.evalue}"
        finally:
            if executed.exists():
                _render_html(executed)
        if on_progress:
            on_progress(source.stem, index, len(found), round(time.perf_counter() - start, 2))
    tables = {path.stem: pd.read_csv(path) for path in sorted((out / "tables").glob("*.csv"))}
    validation.write_index(out, tables, failures)
    overview = validation.summary(tables)
    if failures or int(overview["failed"].sum()):
        raise AllianceRunError(
            f"published references not reproduced ({'; '.join(failures) or 'see the table'}): "
            f"{out / 'index.html'}")
    return overview
