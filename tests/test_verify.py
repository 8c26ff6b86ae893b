"""Reproducibility: byte-identical reruns; `alliance verify` catching tampered data or outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alliance_analysis import pipeline
from alliance_analysis.cli import main
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.verify import SKIPPED_NOTEBOOK, compare_runs, read_manifest
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
    rerun inherit one thread) and with the stages run one after another instead of side by
    side."""
    run_dir, data = original
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")
    processed = tmp_path / "processed"
    processed.mkdir()
    shutil.copy(run_dir.parent / "processed" / "pseudonym.key", processed)
    # the original ran the stages after 01_clean side by side (one per core); this rerun
    # runs them one after another
    again = pipeline.run(write_params(tmp_path, data), out=tmp_path / "run",
                         processed=processed, notebooks=STAGES, jobs=1)
    for folder in ("tables", "figures"):
        names = sorted(p.name for p in (run_dir / folder).iterdir())
        assert names == sorted(p.name for p in (again / folder).iterdir())
        for name in names:
            assert (run_dir / folder / name).read_bytes() == \
                (again / folder / name).read_bytes(), f"{folder}/{name}"
    assert (run_dir / "results.json").read_bytes() == (again / "results.json").read_bytes()


def test_the_manifest_records_the_csv_encoding(original: tuple[Path, Path]) -> None:
    manifest = json.loads((original[0] / "manifest.json").read_text())
    assert manifest["encoding"] == "utf-8"


def _apa_tables(run_dir: Path) -> list[str]:
    """Tables the run wrote in every format (csv, md, html, tex), by name."""
    tables = json.loads((run_dir / "outputs.json").read_text())["tables"]
    return [name for name, entry in tables.items()
            if {Path(f).suffix for f in entry["files"]} >= {".csv", ".md", ".html", ".tex"}]


def _tamper(run_dir: Path) -> dict[str, str]:
    """Edit, replace, delete and add output files of ``run_dir``; return file -> what."""
    first, second, third = _apa_tables(run_dir)[:3]
    figures = sorted((run_dir / "figures").glob("*.png"))
    md = run_dir / "tables" / f"{first}.md"
    md.write_text(md.read_text().replace("|", "!", 1))
    html = run_dir / "tables" / f"{second}.html"
    html.write_text(html.read_text().replace("<td>", "<td>0", 1))
    figures[0].write_bytes(figures[1].read_bytes())  # a figure replaced by another
    (run_dir / "tables" / f"{third}.tex").unlink()
    (run_dir / "tables" / "added.csv").write_text("a\n1\n")
    return {f"tables/{first}.md": "DIFFERS at line", f"tables/{second}.html": "DIFFERS at line",
            f"figures/{figures[0].name}": "DIFFERS (SHA-256)",
            f"tables/{third}.tex": "DIFFERS: recorded in the manifest but missing from the run",
            "tables/added.csv": "DIFFERS: in the run folder but not recorded in its manifest"}


def test_every_file_is_compared_by_its_kind(original: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    """The comparison of :func:`verify` on a tampered copy, against the untouched run as its
    "rerun" (no pipeline run): every kind of change is one DIFFERS row naming the file."""
    run_dir = original[0]
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    expected = _tamper(copy)
    svg = next((copy / "figures").glob("*.svg"))
    svg.write_text(svg.read_text().replace("<svg", "<svg data-x='1'", 1))
    expected[f"figures/{svg.name}"] = "DIFFERS (SHA-256)"
    # the same pixels encoded by Pillow (another encoder or zlib build): a match
    from PIL import Image

    png = sorted((copy / "figures").glob("*.png"))[2]
    with Image.open(png) as image:
        image.load()
        image.save(png, dpi=image.info["dpi"])
    assert png.read_bytes() != (run_dir / "figures" / png.name).read_bytes()
    params = copy / "params.yaml"
    params.write_text(params.read_text().replace("seed: ", "seed: 1", 1))
    expected["params.yaml"] = "DIFFERS in 1 entry(ies): seed"
    manifest = read_manifest(copy)
    table = compare_runs(copy, run_dir, manifest)
    differing = table[~table["status"].isin(["match", SKIPPED_NOTEBOOK])]
    assert sorted(differing["where"]) == sorted(expected)
    for name, status in zip(differing["where"], differing["status"]):
        assert status.startswith(expected[name]), (name, status)
    md = differing.set_index("where").loc[next(n for n in expected if n.endswith(".md"))]
    assert md["reported"].startswith("! ") and md["rerun"].startswith("| ")
    # every recorded output is compared, the executed notebooks (run times) skipped
    assert set(manifest["outputs"]) | {"tables/added.csv"} == set(table["where"])
    notebooks = table[table["where"].str.startswith("notebooks/")]
    assert len(notebooks) == 2 * len(STAGES) and (notebooks["status"] == SKIPPED_NOTEBOOK).all()


def test_verify_matches_an_untouched_run_on_every_file(original: tuple[Path, Path]) -> None:
    run_dir = original[0]
    table = pipeline.verify(run_dir)
    compared = table[~table["where"].str.startswith("notebooks/")]
    assert (compared["status"] == "match").all(), compared[compared["status"] != "match"]
    recorded = json.loads((run_dir / "manifest.json").read_text())["outputs"]
    assert set(table["where"]) == set(recorded)
    kinds = {Path(name).suffix for name in compared["where"]}
    assert {".csv", ".md", ".html", ".tex", ".png", ".svg", ".json", ".yaml"} <= kinds


def test_verify_reports_every_tampered_file_on_whole_lines(
        original: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Every kind of tampering in one run folder; the report (stdout, here not a terminal)
    lists only the differences, each on one line however long. The untouched run stands in
    for the rerun (``alliance verify`` reruns it identically, as the test above shows)."""
    monkeypatch.setattr(pipeline, "verify", lambda folder, **_: compare_runs(
        Path(folder), original[0], read_manifest(Path(folder))))
    copy = tmp_path / "run"
    shutil.copytree(original[0], copy)
    results = json.loads((copy / "results.json").read_text())
    results["clean.rows_kept"] += 1
    long_key = "tampered." + "a_key_far_longer_than_any_terminal_" * 8
    results[long_key] = 1
    (copy / "results.json").write_text(json.dumps(results))
    expected = _tamper(copy)
    assert main(["verify", str(copy)]) == 1
    captured = capsys.readouterr()
    assert "Rerunning" in captured.err
    lines = captured.out.splitlines()
    for name, status in expected.items():
        assert any(line.startswith(name) and status in line for line in lines), name
    assert any("clean.rows_kept" in line and "DIFFERS" in line for line in lines)
    assert any(long_key in line and "(absent)" in line and line.rstrip().endswith("DIFFERS")
               for line in lines), "the long line was cut"
    assert not any(line.rstrip().endswith(" match") for line in lines)  # only differences
    assert f"{2 + len(expected)} differing" in captured.out
    assert f"Skipped: {2 * len(STAGES)} x executed notebook, holds run times." in captured.out


def test_verify_all_lists_every_item(original: tuple[Path, Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``--all`` prints matched and skipped items too (the rerun replaced by the run itself)."""
    run_dir = original[0]
    monkeypatch.setattr(pipeline, "verify", lambda folder, **_: compare_runs(
        Path(folder), run_dir, read_manifest(Path(folder))))
    assert main(["verify", str(run_dir), "--all"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].endswith("every item") and lines[1].split() == \
        ["where", "item", "reported", "rerun", "status"]
    assert any(line.startswith("results.json") and line.endswith("match") for line in lines)
    assert any(line.startswith("notebooks/01_clean.ipynb") and SKIPPED_NOTEBOOK in line
               for line in lines)
    assert f"0 differing, {2 * len(STAGES)} skipped" in out


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
