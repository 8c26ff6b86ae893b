"""End to end: `alliance run` executes the notebooks with papermill and writes the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from alliance_analysis import pipeline
from alliance_analysis.cli import main
from alliance_analysis.errors import AllianceDataError, AllianceParamsError, AllianceRunError
from alliance_analysis.data.io import file_sha256
from conftest import check_html_page, write_params

pytestmark = pytest.mark.slow


def test_run_writes_complete_run_folder(tmp_path: Path, small_study: Path) -> None:
    params = write_params(tmp_path, small_study)
    seen: list[tuple[str, float | None]] = []
    run_dir = pipeline.run(params, out=tmp_path / "run", processed=tmp_path / "processed",
                           on_progress=lambda name, i, n, s: seen.append((name, s)))
    finished = [name for name, s in seen if s is not None]
    # 01_clean first; the later stages side by side, in any order of finishing
    assert finished[0] == "01_clean" and sorted(finished) == sorted(pipeline.NOTEBOOKS)
    assert len(seen) == 2 * len(pipeline.NOTEBOOKS)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and not (run_dir / pipeline.MARKER).exists()
    assert manifest["inputs"] == {str(small_study): file_sha256(small_study)}
    assert set(manifest["seconds"]) == set(pipeline.NOTEBOOKS)
    assert manifest["packages"]["pandas"] and manifest["seed"] == 20261122
    assert manifest["parameters"]["name"] == "t"
    for relative, digest in manifest["outputs"].items():
        assert file_sha256(run_dir / relative) == digest
    for name in pipeline.NOTEBOOKS:
        assert f"notebooks/{name}.ipynb" in manifest["outputs"]
        assert (run_dir / "notebooks" / f"{name}.html").is_file()
    results = json.loads((run_dir / "results.json").read_text())
    rows = len((small_study).read_text().splitlines()) - 1
    assert results["clean.rows_input"] == rows
    assert results["clean.rows_kept"] + results["clean.rows_excluded"] == rows
    assert (tmp_path / "processed" / "sessions.parquet").is_file()
    index = (run_dir / "index.html").read_text()
    assert "complete" in index and "01_clean.html" in index
    describe = nbformat.read(run_dir / "notebooks" / "02_describe.ipynb", as_version=4)
    images = [o for c in describe.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # figures show as pictures, not as "<Figure size ...>" text
    links = check_html_page(run_dir / "index.html")
    assert {"results.json", "manifest.json", "methods.md"} <= set(links)
    assert any(link.startswith("figures/") for link in links)
    assert index.index("Read these first") < index.index("Run summary")  # warnings on top


def test_failing_notebook_stops_run_and_marks_folder(tmp_path: Path) -> None:
    header_only = tmp_path / "empty.csv"
    header_only.write_text("therapist_id,client_id,session\n")
    params = write_params(tmp_path, header_only)
    with pytest.raises(AllianceDataError, match=r"notebook 01_clean failed in cell \d+.*"
                                                r"AllianceDataError.*no data rows"):
        pipeline.run(params, out=tmp_path / "run", processed=tmp_path / "processed")
    run_dir = tmp_path / "run.failed"  # kept for inspection; nothing written to `run`
    assert not (tmp_path / "run").exists() and not (tmp_path / "processed").exists()
    assert (run_dir / pipeline.MARKER).is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and "01_clean" in manifest["error"]
    assert "did NOT finish" in (run_dir / "index.html").read_text()
    assert not (run_dir / "notebooks" / "02_describe.ipynb").exists()


def test_cli_data_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header_only = tmp_path / "empty.csv"
    header_only.write_text("therapist_id,client_id,session\n")
    params = write_params(tmp_path, header_only)
    assert main(["run", str(params), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "01_clean failed" in err and "no data rows" in err and "Traceback" not in err


def test_refuses_to_empty_a_folder_that_is_not_a_run(tmp_path: Path, small_study: Path) -> None:
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.docx").write_text("keep me")
    with pytest.raises(AllianceRunError, match="not a previous run folder"):
        pipeline.run(write_params(tmp_path, small_study), out=precious)
    assert (precious / "thesis.docx").read_text() == "keep me"


def test_other_notebook_failure_is_a_run_error(tmp_path: Path, small_study: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    folder = tmp_path / "notebooks"
    folder.mkdir()
    broken = new_notebook(cells=[new_code_cell("params_file = run_dir = processed_dir = ''",
                                               metadata={"tags": ["parameters"]}),
                                 new_code_cell("1 / 0")])
    broken.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
    nbformat.write(broken, folder / "01_clean.ipynb")
    monkeypatch.setattr(pipeline, "notebooks_dir", lambda: folder)
    params = write_params(tmp_path, small_study)
    with pytest.raises(AllianceRunError, match=r"01_clean failed in cell 3.*ZeroDivisionError"):
        pipeline.run(params, out=tmp_path / "run", notebooks=("01_clean",))
    assert main(["run", str(params), "--out", str(tmp_path / "run2")]) == 1


OWN_MODELS = """\
scoring:
  phq9: {min_items: 8, rounding: half_even}
models:
  growth:
    formula: "phq9_total ~ I(session - 1) + (1 + I(session - 1) | client_id) + (1 | therapist_id)"
  growth_arm:
    formula: "phq9_total ~ I(session - 1) * C(arm) + (1 + I(session - 1) | client_id) + (1 | therapist_id)"
    where: "session <= 8"
  within_between:
    formula: "phq9_total ~ I(session - 1) + wai_within_lag1 + wai_between + (1 | client_id)"
    reml: false
comparisons:
  - [growth, within_between]
"""


def test_run_with_own_models_and_scoring_rules(tmp_path: Path, small_study: Path) -> None:
    """``alliance run`` with scoring:, models: and comparisons: writes the promised outputs."""
    params = write_params(tmp_path, small_study, extra=OWN_MODELS)
    run_dir = pipeline.run(params, out=tmp_path / "run", processed=tmp_path / "processed",
                           notebooks=("01_clean", "03_multilevel"))
    tables = run_dir / "tables"
    for name in ("growth", "growth_arm", "within_between"):
        fixed = pd.read_csv(tables / f"model_{name}_fixed.csv")
        assert list(fixed.columns) == ["term", "estimate", "se", "df", "t", "p", "ci_low",
                                       "ci_high"]
        random = pd.read_csv(tables / f"model_{name}_random.csv")
        assert list(random.columns) == ["group", "term", "term2", "variance", "sd_or_corr"]
        assert random["group"].iloc[-1] == "Residual"
    covariance = pd.read_csv(tables / "model_growth_random.csv").dropna(subset=["term2"])
    assert len(covariance) == 1 and -1 <= covariance["sd_or_corr"].iloc[0] <= 1
    assert "I(session - 1):C(arm)[T.PDT]" in set(
        pd.read_csv(tables / "model_growth_arm_fixed.csv")["term"])
    comparison = pd.read_csv(tables / "model_comparisons.csv")
    refit = dict(zip(comparison["model"], comparison["refit"], strict=True))
    assert refit == {"growth": True, "within_between": False}  # REML growth refitted by ML
    results = json.loads((run_dir / "results.json").read_text())
    for key in ("loglik", "aic", "bic", "n_obs", "n_clients", "n_therapists", "converged",
                "singular", "reml"):
        assert f"models.growth.{key}" in results
    assert results["models.growth.reml"] is True and results["models.within_between.reml"] is False
    ledger = pd.read_csv(tables / "ledger_cells.csv")
    prorated = ledger[(ledger["rule"] == "prorated") & (ledger["column"] == "phq9_total")]
    assert len(prorated) and prorated["reason"].str.contains("8 of 9 items").all()
    index = (run_dir / "index.html").read_text()
    assert "model_growth_fixed" in index


def test_bad_model_stops_the_run_before_any_model_is_fitted(tmp_path: Path,
                                                            small_study: Path) -> None:
    bad = "models:\n  m:\n    formula: \"phq9_total ~ sesion + (1 | client_id)\"\n"
    params = write_params(tmp_path, small_study, extra=bad)
    with pytest.raises(AllianceParamsError, match=r"(?s)03_multilevel failed in cell \d+ .*"
                                                  r"models.m: \['sesion'\] is not a column"):
        pipeline.run(params, out=tmp_path / "run", processed=tmp_path / "processed",
                     notebooks=("01_clean", "03_multilevel"))


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_out_that_is_a_file_exits_2(tmp_path: Path, small_study: Path, where: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "report.txt"
    blocker.write_text("not a folder")
    out = blocker if where == "a file" else blocker / "run"
    assert main(["run", str(write_params(tmp_path, small_study)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{'is' if where == 'a file' else 'lies under'} a file" in err
    assert "Traceback" not in err and blocker.read_text() == "not a folder"


def test_verify_refuses_a_truncated_manifest(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text('{"status": "comp')
    assert main(["verify", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "not a readable manifest" in err and "Traceback" not in err
