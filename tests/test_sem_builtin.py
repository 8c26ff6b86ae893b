"""The built-in SEM analyses as named ``sem_models:`` entries: settings, the older ``sem:``
form, switching them off, and the SEM stage without them."""

from __future__ import annotations

import json
from pathlib import Path

import papermill
import pytest
import yaml

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.options import SemModelSpec, SemOptions
from alliance_analysis.params import load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "params" / "demo.yaml"


def _raw() -> dict:
    return yaml.safe_load(DEMO.read_text(encoding="utf-8"))


def test_demo_lists_the_three_built_in_analyses_with_the_former_defaults() -> None:
    params = load_params(DEMO)
    builtin = params.builtin_sem()
    assert builtin.names == {"cfa": "alliance_cfa", "panel": "alliance_symptoms",
                             "growth": "symptom_growth"}
    # the demo's entries state exactly the settings the built-ins always had
    assert builtin.cfa == builtin.panel == builtin.growth == SemOptions()
    assert list(params.own_sem_models()) == ["cfa_s3", "cfa_by_arm", "riclpm5",
                                             "riclpm5_by_arm"]


def test_entries_carry_their_own_settings() -> None:
    raw = _raw()
    raw["sem_models"]["alliance_cfa"].update(session=3, estimator="WLSMV", missing="listwise")
    raw["sem_models"]["alliance_symptoms"].update(waves=[2, 3, 4, 5],
                                                  constrain_crosslagged=True)
    raw["sem_models"]["symptom_growth"].update(waves=[1, 2, 3, 4], early_sessions=2)
    builtin = parse_params(raw, base_dir=DEMO.parent).builtin_sem()
    assert (builtin.cfa.cfa_session, builtin.cfa.estimator, builtin.cfa.missing) == \
        (3, "DWLS", "listwise")
    assert builtin.panel.waves == (2, 3, 4, 5) and builtin.panel.constrain_crosslagged
    assert builtin.panel.missing == "fiml"  # each entry its own missing-data choice
    assert builtin.growth.growth_sessions == (1, 2, 3, 4) and builtin.growth.early_sessions == 2


def test_older_files_without_sem_models_keep_all_three() -> None:
    raw = _raw()
    del raw["sem_models"], raw["robustness"]
    raw["sem"] = {"cfa_session": 2, "waves": [1, 2, 3]}
    builtin = parse_params(raw, base_dir=DEMO.parent).builtin_sem()
    assert builtin.cfa.cfa_session == 2 and builtin.panel.waves == (1, 2, 3)
    assert builtin.names == {"cfa": "alliance_cfa", "panel": "alliance_symptoms",
                             "growth": "symptom_growth"}
    del raw["sem"]
    assert parse_params(raw, base_dir=DEMO.parent).builtin_sem().cfa == SemOptions()


def test_own_models_only_switch_the_built_ins_off() -> None:
    raw = _raw()
    for name in ("alliance_cfa", "alliance_symptoms", "symptom_growth"):
        del raw["sem_models"][name]
    builtin = parse_params(raw, base_dir=DEMO.parent).builtin_sem()
    assert builtin == (None, None, None, {})
    assert "generate: panel" in builtin.absent("panel")


@pytest.mark.parametrize("change, message", [
    ({"sem": {"cfa_session": 2}}, r"sem: .* cannot be combined with sem_models"),
    ({"sem_models": {"again": {"generate": "panel", "waves": [1, 2, 3]}}},
     r"\['alliance_symptoms', 'again'\] all have generate: panel"),
])
def test_ambiguous_built_ins_are_refused(change: dict, message: str) -> None:
    raw = _raw()
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if key in raw else value
    with pytest.raises(AllianceParamsError, match=message):
        parse_params(raw, base_dir=DEMO.parent)


@pytest.mark.parametrize("entry, message", [
    ({"generate": "panel", "waves": [1, 2, 3], "x": "wai_total"}, "takes waves, .* not x"),
    ({"generate": "alliance_cfa"}, "needs session"),
    ({"generate": "alliance_cfa", "session": 1, "estimator": "MLR"}, "ML or WLSMV"),
    ({"generate": "symptom_growth", "waves": [1, 2, 3], "estimator": "MLR"}, "fitted by ML"),
    ({"generate": "panel", "waves": [3, 2, 4]}, "increasing"),
    ({"generate": "riclpm", "x": "a", "y": "b", "waves": [1, 2, 3], "early_sessions": 2},
     "early_sessions applies to generate: symptom_growth"),
])
def test_built_in_entries_take_only_their_settings(entry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SemModelSpec(**entry)


def test_sem_stage_without_built_ins_fits_only_the_own_models(tmp_path: Path) -> None:
    """Notebook 04 with only an own model: each built-in part says it was not fitted, none
    of their tables or figures is written, and the own model's are."""
    from alliance_analysis.data.prepare import prepare

    raw = _raw()
    raw["sem_models"] = {"bond_s1": {"syntax": "Bond =~ wai_3 + wai_5 + wai_7 + wai_9",
                                     "session": 1}}
    del raw["robustness"]
    raw["data"]["path"] = str((DEMO.parent / raw["data"]["path"]).resolve())
    params_file = tmp_path / "own.yaml"
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    prepare(load_params(params_file), tmp_path / "processed")
    executed = tmp_path / "04.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "04_sem.ipynb"), str(executed), cwd=str(ROOT / "notebooks"),
        parameters={"params_file": str(params_file), "run_dir": str(tmp_path / "run"),
                    "processed_dir": str(tmp_path / "processed")},
        progress_bar=False, kernel_name="python3")
    tables = {p.stem for p in (tmp_path / "run" / "tables").glob("*.csv")}
    assert {"sem_bond_s1_fit", "sem_bond_s1_params"} <= tables
    assert not {t for t in tables if t.startswith(("sem_cfa", "sem_panel", "sem_growth",
                                                   "sem_riclpm", "sem_clpm"))}
    assert not list((tmp_path / "run" / "figures").glob("sem_riclpm_paths*"))
    text = json.dumps(json.loads(executed.read_text(encoding="utf-8"))["cells"])
    for generate in ("alliance_cfa", "panel", "symptom_growth"):
        assert f"Not fitted: no sem_models entry has generate: {generate}" in text
