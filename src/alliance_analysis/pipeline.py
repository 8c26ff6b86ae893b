"""Running a whole analysis: the notebooks in order with papermill, then the manifest.

``alliance run params/demo.yaml`` calls :func:`run`, which

1. validates the parameters file (:func:`alliance_analysis.params.load_params`);
2. empties the run folder (``reports/<name>`` unless ``--out``) and marks it incomplete;
3. executes ``notebooks/01_clean`` .. ``05_change`` with papermill, each with the parameters of
   :func:`alliance_analysis.params.notebook_parameters`, saving the executed notebook and an
   HTML rendering of it under ``notebooks/`` in the run folder;
4. writes ``manifest.json`` (parameters, input SHA-256, package versions, git commit, seed,
   times, SHA-256 of every output file) and ``index.html``.

A failing notebook stops the run with an :class:`AllianceRunError` naming the notebook, the
cell and the error; the partial run folder keeps an ``INCOMPLETE`` file and its manifest says
``"status": "incomplete"``.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from alliance_analysis import report
from alliance_analysis.errors import (AllianceDataError, AllianceError, AllianceParamsError,
                                      AllianceRunError)
from alliance_analysis.io import file_sha256
from alliance_analysis.params import RunParams, load_params, notebook_parameters
from alliance_analysis.runfolder import write_json

#: The pipeline's notebooks, in the order they run.
NOTEBOOKS: tuple[str, ...] = ("01_clean", "02_describe", "03_multilevel", "04_sem", "05_change")

#: Distributions whose installed versions go into the manifest.
RECORDED_PACKAGES: tuple[str, ...] = (
    "alliance-analysis", "numpy", "scipy", "pandas", "pyarrow", "statsmodels", "semopy",
    "matplotlib", "seaborn", "pydantic", "pandera", "pyreadstat", "openpyxl", "papermill",
    "nbconvert", "ipykernel",
)

MARKER = "INCOMPLETE"

#: Errors raised inside a notebook that are the user's to fix, by exception name.
USER_ERRORS = {"AllianceDataError": AllianceDataError, "AllianceParamsError": AllianceParamsError}


def project_root() -> Path:
    """The source checkout holding ``notebooks/`` (the package is installed editable)."""
    return Path(__file__).resolve().parents[2]


def notebooks_dir() -> Path:
    """Folder of the pipeline notebooks, found relative to the package."""
    folder = project_root() / "notebooks"
    if not (folder / f"{NOTEBOOKS[0]}.ipynb").is_file():
        raise AllianceRunError(
            f"cannot find the pipeline notebooks in {folder}. Install the workbench from its "
            "source folder with `pip install -e .` (as `make report` does)"
        )
    return folder


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on, and of Python."""
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(folder: Path) -> dict[str, Any] | None:
    """The git commit of ``folder`` and whether the work tree had changes, if it is a repo."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def _prepare(run_dir: Path) -> None:
    """Empty a previous run folder; refuse to empty a folder that is not one."""
    if run_dir.exists() and any(run_dir.iterdir()):
        if not (run_dir / "manifest.json").exists():
            raise AllianceRunError(
                f"{run_dir} is not empty and holds no manifest.json, so it is not a previous "
                "run folder. Choose another output folder (--out) or empty it yourself"
            )
        shutil.rmtree(run_dir)
    (run_dir / "notebooks").mkdir(parents=True)


def _render_html(executed: Path) -> None:
    import nbconvert
    import nbformat

    notebook = nbformat.read(executed, as_version=4)
    body, _ = nbconvert.HTMLExporter(template_name="lab").from_notebook_node(notebook)
    executed.with_suffix(".html").write_text(body, encoding="utf-8")


def _execute(name: str, run_dir: Path, parameters: dict[str, str]) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = notebooks_dir() / f"{name}.ipynb"
    executed = run_dir / "notebooks" / f"{name}.ipynb"
    try:
        papermill.execute_notebook(
            str(source), str(executed), parameters=parameters, kernel_name="python3",
            cwd=str(source.parent), progress_bar=False, log_output=False,
            # ipykernel warns at every start that its loopback TCP sockets are unencrypted;
            # the kernel is local and short-lived, so its own log stays at errors only.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except PapermillExecutionError as exc:
        where = (f"notebook {name} failed in cell {exc.cell_index + 1} (execution count "
                 f"{exc.exec_count})")
        # The researcher's own mistakes keep their type (exit status 2); anything else is a
        # failure of the run.
        kind = USER_ERRORS.get(exc.ename, AllianceRunError)
        raise kind(f"{where}: {exc.ename}: {exc.evalue}. The executed notebook, with the full "
                   f"traceback, is {executed}") from None
    finally:
        if executed.exists():
            _render_html(executed)


def _output_hashes(run_dir: Path) -> dict[str, str]:
    return {
        path.relative_to(run_dir).as_posix(): file_sha256(path)
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and path.name not in ("manifest.json", "index.html")
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(params_file: str | Path, out: str | Path | None = None,
        processed: str | Path | None = None, notebooks: Sequence[str] = NOTEBOOKS,
        on_progress: Callable[[str, int, int, float | None], None] | None = None) -> Path:
    """Run the pipeline notebooks on one parameters file and write the run folder.

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

    Returns
    -------
    Path
        The run folder.

    Raises
    ------
    AllianceParamsError
        The parameters file is invalid (nothing is written).
    AllianceDataError
        The data cannot be used (raised inside ``01_clean``); the run folder is left marked
        ``INCOMPLETE``.
    AllianceRunError
        A notebook failed for another reason; the run folder is left marked ``INCOMPLETE``.
    """
    params_path = Path(params_file).resolve()
    params: RunParams = load_params(params_path)
    run_dir = Path(out).resolve() if out is not None else params.output_dir()
    processed_dir = Path(processed).resolve() if processed is not None else params.processed_dir()
    _prepare(run_dir)
    (run_dir / MARKER).write_text("This run did not finish; see manifest.json.\n")
    (run_dir / "params.yaml").write_text(
        yaml.safe_dump(params.to_plain(), sort_keys=True), encoding="utf-8")
    manifest: dict[str, Any] = {
        "status": "running",
        "run": params.name,
        "parameters_file": str(params_path),
        "parameters": params.to_plain(),
        "seed": params.seed,
        "inputs": {str(params.data.path): file_sha256(params.data.path)},
        "privacy": {"dropped": list(params.privacy.drop), "allowed": dict(params.privacy.allow)},
        "packages": package_versions(),
        "git": git_commit(project_root()),
        "started": _now(),
        "seconds": {},
    }
    parameters = notebook_parameters(params_path, run_dir, processed_dir)
    try:
        for index, name in enumerate(notebooks, start=1):
            if on_progress:
                on_progress(name, index, len(notebooks), None)
            start = time.perf_counter()
            _execute(name, run_dir, parameters)
            manifest["seconds"][name] = round(time.perf_counter() - start, 2)
            if on_progress:
                on_progress(name, index, len(notebooks), manifest["seconds"][name])
    except AllianceError as exc:
        manifest.update(status="incomplete", error=str(exc))
        raise
    else:
        manifest["status"] = "complete"
        (run_dir / MARKER).unlink()
    finally:
        manifest["finished"] = _now()
        manifest["outputs"] = _output_hashes(run_dir)
        manifest["processed"] = {
            "folder": str(processed_dir),
            "files": {path.name: file_sha256(path) for path in sorted(processed_dir.glob("*"))
                      if path.is_file() and path.suffix in (".parquet", ".csv")},
        } if processed_dir.is_dir() else None
        write_json(run_dir / "manifest.json", manifest)
        report.write_index(run_dir, manifest)
    return run_dir
