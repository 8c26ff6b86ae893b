"""SPSS and Stata value labels name the categories of covariates in every table; questionnaire
items keep their numeric codes. Every file is written here by pyreadstat, in ``tmp_path``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from alliance_analysis.data import io, mapping
from alliance_analysis.data.describe import client_characteristics
from alliance_analysis.data.prepare import prepare
from alliance_analysis.instruments import get_instrument
from alliance_analysis.params import parse_params

WAI = get_instrument("wai")
PHQ9 = get_instrument("phq9")
GENDER = {1: "female", 2: "male", 3: "diverse"}
ARM = {1: "treatment as usual", 2: "alliance feedback"}
ITEM_LABELS = {1: "seldom", 5: "always"}  # SPSS files often label the ends of a scale


def labelled_sessions(clients: int = 6, sessions: int = 3) -> pd.DataFrame:
    """Numeric session rows as SPSS stores them: codes for gender and arm, 3 unlabelled."""
    records = []
    for c in range(1, clients + 1):
        for s in range(1, sessions + 1):
            record = {"client_id": f"C{c:02d}", "therapist_id": f"T{1 + c % 2}",
                      "session": float(s), "day": float(7 * (s - 1)),
                      "gender": float(1 + c % 3) if c != 6 else np.nan,
                      "arm": float(1 + c % 2)}
            record |= {item: float(1 + (c + s + i) % 5) for i, item in enumerate(WAI.items())}
            record |= {item: float((c + s + i) % 4) for i, item in enumerate(PHQ9.items())}
            records.append(record)
    return pd.DataFrame(records)


def write_labelled(folder: Path, fmt: str, frame: pd.DataFrame | None = None) -> Path:
    frame = labelled_sessions() if frame is None else frame
    path = folder / f"sessions.{fmt}"
    writer = pyreadstat.write_sav if fmt == "sav" else pyreadstat.write_dta
    labels = {"gender": GENDER, "arm": ARM, **{item: ITEM_LABELS for item in WAI.items()}}
    writer(frame, str(path), variable_value_labels=labels)
    return path


def params_for(tmp_path: Path, data: Path):
    return parse_params({"name": "t", "data": {"path": str(data)}, "instruments": ["wai", "phq9"],
                         "alliance": "wai", "symptoms": "phq9",
                         "columns": {"covariates": ["gender", "arm"]},
                         "privacy": {"min_cell_size": 1}},
                        base_dir=tmp_path)


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_covariates_are_named_by_their_labels_items_stay_numbers(tmp_path: Path,
                                                                  fmt: str) -> None:
    path = write_labelled(tmp_path, fmt)
    raw = io.read(path)
    assert raw.value_labels["gender"] == GENDER  # read as stored, codes in the raw table
    mapped = mapping.map_columns(raw, params_for(tmp_path, path), [WAI, PHQ9])
    assert set(mapped.frame["gender"].dropna()) == {"female", "male", "diverse"}
    assert mapped.frame["gender"].isna().sum() == 3  # client 6's missing value stays missing
    assert set(mapped.frame["arm"]) == set(ARM.values())
    assert mapped.labelled == {"gender": {"1": "female", "2": "male", "3": "diverse"},
                               "arm": {"1": "treatment as usual", "2": "alliance feedback"}}
    assert pd.api.types.is_numeric_dtype(mapped.frame["wai_1"])  # items: numbers, not text
    assert mapped.frame["wai_1"].min() == 1 and mapped.frame["wai_1"].max() == 5


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_processed_table_codebook_and_describe_tables_show_the_labels(tmp_path: Path,
                                                                      fmt: str) -> None:
    path = write_labelled(tmp_path, fmt)
    params = params_for(tmp_path, path)
    prepared = prepare(params, tmp_path / "proc")
    sessions = prepared.sessions
    assert set(sessions["gender"].dropna()) == {"female", "male", "diverse"}
    assert pd.api.types.is_numeric_dtype(sessions["wai_1"])
    assert sessions["wai_total"].between(1, 5).all()  # items were scored as numbers
    book = prepared.codebook.set_index("column")
    assert book.loc["gender", "labels_applied"] == "yes"
    assert book.loc["arm", "labels_applied"] == "yes"
    assert book.loc["wai_1", "labels_applied"] == "no"  # labelled item kept as codes
    assert book.loc["phq9_1", "labels_applied"] == ""  # no labels in the file
    assert '"female"' in book.loc["gender", "value_labels"]
    levels = client_characteristics(sessions, params.columns.covariates, min_cell_size=1)
    gender = levels[levels["characteristic"] == "gender"]["level"].tolist()
    assert sorted(gender) == ["(missing)", "diverse", "female", "male"]
    arm = levels[levels["characteristic"] == "arm"]["level"].tolist()
    assert sorted(arm) == ["alliance feedback", "treatment as usual"]
    assert not levels["level"].isin(["1.0", "2.0", "1", "2"]).any()


def test_a_code_without_a_label_is_kept_as_whole_number_text(tmp_path: Path) -> None:
    frame = labelled_sessions()
    frame.loc[frame["client_id"] == "C01", "gender"] = 9.0  # "9" has no label
    path = write_labelled(tmp_path, "sav", frame)
    mapped = mapping.map_columns(io.read(path), params_for(tmp_path, path), [WAI, PHQ9])
    assert "9" in set(mapped.frame["gender"]) and "9.0" not in set(mapped.frame["gender"])


def test_ids_keep_their_codes_even_when_labelled(tmp_path: Path) -> None:
    """A labelled therapist number could name the therapist: it is never replaced."""
    frame = labelled_sessions()
    frame["therapist_id"] = frame["therapist_id"].str[1:].astype(float)
    path = tmp_path / "s.sav"
    pyreadstat.write_sav(frame, str(path),
                         variable_value_labels={"therapist_id": {1: "Dr A", 2: "Dr B"},
                                                "gender": GENDER})
    mapped = mapping.map_columns(io.read(path), params_for(tmp_path, path), [WAI, PHQ9])
    assert set(mapped.frame["therapist_id"]) == {1.0, 2.0}
    assert set(mapped.labelled) == {"gender"}
