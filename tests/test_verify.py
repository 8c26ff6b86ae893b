"""Reproducibility: byte-identical reruns, and `alliance verify` catching tampered data or results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alliance_analysis import pipeline
from alliance_analysis.cli import main
from alliance_analysis.errors import AllianceDataError
from conftest import write_params

pytestmark = pytest.mark.slow

STAGES = pipeline.NOTEBOOKS


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from alliance_analysis.data.simulate import SimulationDesign, simulate, write

    folder = tmp_path_factory.mktemp("verify")
    design = SimulationDesign(therapists=6, clients_per_therapist=5, max_sessions=10)
    data = write(simulate(design, seed=3), folder / "study")["sessions"]
    params = write_params(folder, data)
    run_dir = pipeline.run(params, out=folder / "run", processed=folder / "processed",
                           notebooks=STAGES)
    return run_dir, data


def test_rerun_is_byte_identical(original: tuple[Path, Path], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The same data, parameters and key give the same bytes, also with another number of
    BLAS/OpenMP threads (the original run used the machine's default; the kernels of the
    rerun inherit one thread)."""
    run_dir, data = original
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")
    processed = tmp_path / "processed"
    processed.mkdir()
    shutil.copy(run_dir.parent / "processed" / "pseudonym.key", processed)
    again = pipeline.run(write_params(tmp_path, data), out=tmp_path / "run",
                         processed=processed, notebooks=STAGES)
    for folder in ("tables", "figures"):
        names = sorted(p.name for p in (run_dir / folder).iterdir())
        assert names == sorted(p.name for p in (again / folder).iterdir())
        for name in names:
            assert (run_dir / folder / name).read_bytes() == \
                (again / folder / name).read_bytes(), f"{folder}/{name}"
    assert (run_dir / "results.json").read_bytes() == (again / "results.json").read_bytes()


def test_verify_matches_an_untouched_run(original: tuple[Path, Path]) -> None:
    table = pipeline.verify(original[0])
    assert (table["status"] == "match").all(), table[table["status"] != "match"]
    assert {"results.json", "tables/cleaning_summary.csv"} <= set(table["where"])


def test_verify_finds_a_tampered_result(original: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(original[0], copy)
    results = json.loads((copy / "results.json").read_text())
    results["clean.rows_kept"] += 1
    (copy / "results.json").write_text(json.dumps(results))
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().err
    assert "clean.rows_kept" in out and "DIFFERS" in out and "1 differing" in out


def test_verify_refuses_tampered_data(original: tuple[Path, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, data = original
    tampered = tmp_path / "sessions.csv"
    text = data.read_text().splitlines()
    first = text[1].split(",")
    first[-1] = "3" if first[-1] != "3" else "2"  # change one item value
    tampered.write_text("\n".join([text[0], ",".join(first), *text[2:]]) + "\n")
    with pytest.raises(AllianceDataError, match="differs from the manifest"):
        pipeline.verify(run_dir, data=tampered)
    assert main(["verify", str(run_dir), "--data", str(tampered)]) == 2
    assert "not the file the run used" in capsys.readouterr().err
