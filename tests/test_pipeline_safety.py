"""Runs are transactions: a failed or interrupted rerun never destroys a finished run.

A run writes into ``<out>.partial`` (and ``<processed>.partial``) and swaps them in only when
every notebook succeeded; otherwise the previous run and processed folders stay byte for byte
as they were and the partial run is kept as ``<out>.failed``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alliance_analysis import pipeline
from alliance_analysis.cli import main
from alliance_analysis.data.io import file_sha256
from conftest import write_params

pytestmark = pytest.mark.slow

#: The clean stage alone: enough for a finished run with a processed table, and fast.
STAGES = ("01_clean",)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a finished run (``run/``), its ``processed/`` folder and ``t.yaml``."""
    from alliance_analysis.data.simulate import SimulationDesign, simulate, write

    folder = tmp_path_factory.mktemp("finished")
    design = SimulationDesign(therapists=3, clients_per_therapist=4, max_sessions=6)
    data = write(simulate(design, seed=3), folder / "study")["sessions"]
    pipeline.run(write_params(folder, data), out=folder / "run",
                 processed=folder / "processed", notebooks=STAGES)
    return folder


@pytest.fixture
def previous(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished run for one test to rerun over."""
    for name in ("run", "processed", "study", "t.yaml"):
        copy = shutil.copytree if (finished / name).is_dir() else shutil.copy
        copy(finished / name, tmp_path / name)
    return tmp_path


def hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {path.relative_to(folder).as_posix(): file_sha256(path)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def run_args(folder: Path, params: Path) -> list[str]:
    return ["run", str(params), "--out", str(folder / "run"),
            "--processed", str(folder / "processed")]


def test_failed_rerun_keeps_the_previous_run(previous: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    before = {name: hashes(previous / name) for name in ("run", "processed")}
    header_only = previous / "empty.csv"
    header_only.write_text("therapist_id,client_id,session\n")
    params = write_params(previous, header_only)
    assert main(run_args(previous, params)) == 2
    err = capsys.readouterr().err
    failed = previous / "run.failed"
    assert "no data rows" in err and "Traceback" not in err
    assert f"kept in {failed}" in err and "previous run" in err and "unchanged" in err
    assert {name: hashes(previous / name) for name in ("run", "processed")} == before
    manifest = json.loads((failed / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and (failed / pipeline.MARKER).is_file()
    assert str(failed / "notebooks" / "01_clean.ipynb") in manifest["error"]
    assert not list(previous.glob("*.partial"))


def test_ctrl_c_exits_130_and_keeps_the_previous_run(
        previous: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    before = {name: hashes(previous / name) for name in ("run", "processed")}

    def interrupted(name: str, run_dir: Path, parameters: dict[str, str],
                    kernels=None) -> None:
        # Half-written output in both staging folders, then Ctrl-C.
        (run_dir / "tables").mkdir()
        (run_dir / "tables" / "cleaning_summary.csv").write_text("rule,rows_excl")
        (Path(parameters["processed_dir"]) / "sessions.parquet").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_execute", interrupted)
    assert main(run_args(previous, previous / "t.yaml")) == 130
    err = capsys.readouterr().err
    message = [line for line in err.splitlines() if not line.startswith("[1/")]  # progress
    assert len(message) == 1 and message[0].startswith("interrupted: ")
    assert "Traceback" not in err
    assert "Ctrl-C in 01_clean" in err and "run.failed" in err
    assert {name: hashes(previous / name) for name in ("run", "processed")} == before
    manifest = json.loads((previous / "run.failed" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert not list(previous.glob("*.partial"))


def test_successful_rerun_replaces_the_run_and_leaves_no_temporary_folder(
        finished: Path, previous: Path) -> None:
    (previous / "run.failed").mkdir()  # an older failed run, now obsolete
    (previous / "run.failed" / "manifest.json").write_text("{}")
    old_key = (previous / "processed" / "pseudonym.key").read_bytes()
    run_dir = pipeline.run(previous / "t.yaml", out=previous / "run",
                           processed=previous / "processed", notebooks=STAGES)
    assert run_dir == previous / "run"
    assert sorted(p.name for p in previous.iterdir()) == ["processed", "run", "study", "t.yaml"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and not (run_dir / pipeline.MARKER).exists()
    assert manifest["processed"]["folder"] == str(previous / "processed")
    for relative, digest in manifest["outputs"].items():
        assert file_sha256(run_dir / relative) == digest
    assert (previous / "processed" / "pseudonym.key").read_bytes() == old_key
    for name, digest in manifest["processed"]["files"].items():
        assert file_sha256(previous / "processed" / name) == digest
    # Same inputs and key: the same files as the run it replaced (written in another folder).
    for relative in ("results.json", "outputs.json", "params.yaml", "methods.md",
                     *(f"tables/{p.name}" for p in (finished / "run" / "tables").iterdir())):
        assert (run_dir / relative).read_bytes() == (finished / "run" / relative).read_bytes()
    # Executed notebooks name the folders they ended in, never the staging folders.
    notebook = json.loads((run_dir / "notebooks" / "01_clean.ipynb").read_text())
    assert notebook["metadata"]["papermill"]["parameters"]["run_dir"] == str(run_dir)
    for path in [*run_dir.rglob("*"), *(previous / "processed").rglob("*")]:
        if path.is_file():
            assert b".partial" not in path.read_bytes(), path


def test_leftovers_of_a_killed_run_are_replaced_and_other_folders_refused(
        tmp_path: Path, small_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from alliance_analysis.report.runfolder import STAGED

    params = write_params(tmp_path, small_study)
    foreign = tmp_path / "run.partial"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(run_args(tmp_path, params)) == 2
    err = capsys.readouterr().err
    assert f"{foreign} exists and was not written by a run" in err and "Traceback" not in err
    assert (foreign / "notes.txt").read_text() == "mine" and not (tmp_path / "run").exists()
    (foreign / "notes.txt").unlink()
    for name in ("run.partial", "processed.partial"):  # as left by a killed run
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / STAGED).write_text("")
        (tmp_path / name / "sessions.parquet").write_text("half")
    pipeline.run(params, out=tmp_path / "run", processed=tmp_path / "processed", notebooks=())
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*"))
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "complete"
    assert not (tmp_path / "processed" / "sessions.parquet").exists()
