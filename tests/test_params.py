"""Parameters: the demo file loads; every mistake is an AllianceParamsError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from alliance_analysis.cli import main
from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.params import load_params, parse_params
from conftest import write_params


def test_demo_params_load(root: Path) -> None:
    params = load_params(root / "params" / "demo.yaml")
    assert params.name == "demo"
    assert params.data.path == (root / "data" / "demo" / "sessions.csv").resolve()
    assert params.alliance == "wai" and params.symptoms == "phq9"


def test_relative_paths_resolve_against_the_params_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.csv").write_text("a\n1\n")
    params = parse_params({"name": "x", "data": {"path": "sub/d.csv"}, "output": "out"},
                          base_dir=tmp_path)
    assert params.data.path == tmp_path / "sub" / "d.csv"
    assert params.output_dir() == tmp_path / "out"


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "d.csv"
    path.write_text("client_id,session\nA,1\n")
    return path


def test_unknown_key_names_key_and_allowed_keys(tmp_path: Path, data_file: Path) -> None:
    params = write_params(tmp_path, data_file, extra="sede: 3\n")
    with pytest.raises(AllianceParamsError) as err:
        load_params(params)
    message = str(err.value)
    assert "unknown key 'sede'" in message
    assert "seed" in message and "instruments" in message  # the allowed keys are listed


def test_unknown_nested_key_lists_that_sections_keys(tmp_path: Path, data_file: Path) -> None:
    params = write_params(tmp_path, data_file, extra="columns:\n  client: PID\n")
    with pytest.raises(AllianceParamsError, match=r"unknown key 'columns.client'.*client_id"):
        load_params(params)


def test_wrong_type_names_key_and_value(tmp_path: Path, data_file: Path) -> None:
    params = write_params(tmp_path, data_file, extra="seed: twelve\n")
    with pytest.raises(AllianceParamsError, match=r"key 'seed'.*'twelve'"):
        load_params(params)


def test_wrong_choice_lists_allowed_values(tmp_path: Path, data_file: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text(f"name: t\ndata:\n  path: {data_file}\n  format: xls\n")
    with pytest.raises(AllianceParamsError, match=r"data.format.*'csv'.*'parquet'.*'xls'"):
        load_params(params)


def test_missing_data_file(tmp_path: Path) -> None:
    params = write_params(tmp_path, tmp_path / "nope.csv")
    with pytest.raises(AllianceParamsError, match=r"key 'data.path': file not found.*nope.csv"):
        load_params(params)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(AllianceParamsError, match="parameters file not found"):
        load_params(tmp_path / "absent.yaml")


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("name: t\ndata: [unclosed\n")
    with pytest.raises(AllianceParamsError, match="not valid YAML at line"):
        load_params(params)


def test_missing_required_key(tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("name: t\n")
    with pytest.raises(AllianceParamsError, match="missing required key 'data'"):
        load_params(params)


def test_alliance_must_be_a_listed_instrument(tmp_path: Path, data_file: Path) -> None:
    params = write_params(tmp_path, data_file, extra="instruments: [wai, phq9]\nalliance: srs\n")
    with pytest.raises(AllianceParamsError, match=r"key 'alliance'.*\['wai', 'phq9'\]"):
        load_params(params)


def test_cli_prints_params_error_without_traceback(tmp_path: Path, data_file: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    params = write_params(tmp_path, data_file, extra="sede: 3\n")
    assert main(["validate", str(params)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'sede'" in err and "Traceback" not in err
    assert main(["run", str(params)]) == 2


def test_cli_validate_accepts_demo(root: Path) -> None:
    assert main(["validate", str(root / "params" / "demo.yaml")]) == 0


def test_unknown_instrument_lists_known_ones(tmp_path: Path, data_file: Path) -> None:
    params = write_params(tmp_path, data_file, extra="instruments: [wai, phq8]\n")
    with pytest.raises(AllianceParamsError, match=r"Unknown instrument 'phq8'.*gad7.*phq9"):
        load_params(params)


def test_researcher_defines_an_instrument_in_the_parameters(tmp_path: Path,
                                                           data_file: Path) -> None:
    extra = """instruments: [wai, hsci]
symptoms: hsci
custom_instruments:
  hsci:
    name: Hopkins Symptom Checklist, 10-item version
    construct: symptoms
    rater: client
    n_items: 10
    item_min: 1
    item_max: 4
    scoring: mean
    reverse: []
    source: "Derogatis et al. (1974). Behavioral Science, 19, 1-15."
"""
    params = load_params(write_params(tmp_path, data_file, extra=extra))
    hsci = params.instrument_definitions()[1]
    assert hsci.items()[-1] == "hsci_10" and hsci.total_range() == (1.0, 4.0)


def test_invalid_custom_instrument_is_a_params_error(tmp_path: Path, data_file: Path) -> None:
    extra = """instruments: [wai, phq9, odd]
custom_instruments:
  odd: {name: Odd, construct: symptoms, rater: client, n_items: 3, item_min: 4, item_max: 1,
        scoring: sum, source: none}
"""
    with pytest.raises(AllianceParamsError, match=r"instruments: .*odd"):
        load_params(write_params(tmp_path, data_file, extra=extra))


def test_multilevel_early_sessions_must_precede_dropout(tmp_path: Path) -> None:
    """The docstring's promise is checked: early alliance is measured before dropout."""
    from alliance_analysis.params import parse_params

    data = tmp_path / "d.csv"
    data.write_text("client_id,therapist_id,session\n")
    raw = {"name": "t", "data": {"path": str(data)},
           "multilevel": {"early_sessions": 8}, "change": {"dropout_sessions": 8}}
    with pytest.raises(AllianceParamsError, match=r"multilevel.early_sessions \(8\) must be "
                                                  r"below change.dropout_sessions \(8\)"):
        parse_params(raw, base_dir=tmp_path)
    raw["change"] = {"dropout": "column", "dropout_column": "left"}
    assert parse_params(raw, base_dir=tmp_path).multilevel.early_sessions == 8


@pytest.mark.parametrize("section, key, value", [
    ("multilevel", "reml", "no"), ("multilevel", "early_sessions", True),
    ("sem", "cfa_session", "1"), ("change", "repair_within", 2.0),
    ("cleaning", "min_sessions", True), ("multilevel", "therapist_level", 1)])
def test_options_are_not_coerced(tmp_path: Path, section: str, key: str, value: object) -> None:
    from alliance_analysis.params import parse_params

    data = tmp_path / "d.csv"
    data.write_text("client_id,therapist_id,session\n")
    raw = {"name": "t", "data": {"path": str(data)}, section: {key: value}}
    with pytest.raises(AllianceParamsError, match=f"key '{section}.{key}'"):
        parse_params(raw, base_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# scoring: changes to an instrument's scoring rule
# --------------------------------------------------------------------------------------------

def _scoring_params(tmp_path: Path, scoring: object):
    data = tmp_path / "d.csv"
    data.write_text("client_id,therapist_id,session\n")
    return parse_params({"name": "t", "data": {"path": str(data)}, "scoring": scoring},
                        base_dir=tmp_path)


def test_scoring_rule_reaches_the_instrument_definitions(tmp_path: Path) -> None:
    params = _scoring_params(tmp_path, {"phq9": {"min_items": 8, "rounding": "half_even"}})
    phq9 = {i.key: i for i in params.instrument_definitions()}["phq9"]
    assert (phq9.prorate_min_items, phq9.rounding, phq9.rounding_decimals) == (8, "half_even", 0)
    assert params.measures()[1] == phq9
    gad7 = {i.key: i for i in params.instrument_definitions()}["gad7"]
    assert (gad7.prorate_min_items, gad7.rounding) == (6, "none")  # untouched


def test_scoring_rule_of_an_unlisted_instrument_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AllianceParamsError, match=r"scoring: \['phq8'\] are not among"):
        _scoring_params(tmp_path, {"phq8": {"min_items": 7}})


def test_scoring_min_items_above_the_item_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AllianceParamsError, match=r"scoring\.phq9: .*prorate_min_items must be "
                                                  r"within 1\.\.9; got 10"):
        _scoring_params(tmp_path, {"phq9": {"min_items": 10}})


@pytest.mark.parametrize(("rule", "key"), [
    ({"rounding": "sometimes"}, "scoring.phq9.rounding"),
    ({"decimals": 7}, "scoring.phq9.decimals"),
    ({"min_items": 0}, "scoring.phq9.min_items"),
    ({"round": "half_up"}, "scoring.phq9.round"),
])
def test_invalid_scoring_rule_names_its_key(tmp_path: Path, rule: dict, key: str) -> None:
    with pytest.raises(AllianceParamsError, match=key.replace(".", r"\.")):
        _scoring_params(tmp_path, {"phq9": rule})


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: t\nseed: 1\nseed: 2\n", encoding="utf-8")
    with pytest.raises(AllianceParamsError, match=r"'seed' is given twice \(lines 2 and 3\)"):
        load_params(path)


def test_a_parameters_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes("name: t\n# männlich\n".encode("latin-1"))
    with pytest.raises(AllianceParamsError, match=r"not UTF-8 text \(byte 0xe4 on line 2\)"):
        load_params(path)
    with pytest.raises(AllianceParamsError, match=r"is a folder"):
        load_params(tmp_path)
