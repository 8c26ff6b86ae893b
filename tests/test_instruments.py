"""Tests of the questionnaire definitions: shipped data, validation and the registry."""

import pydantic
import pytest
import yaml

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.instruments import INSTRUMENTS, Instrument, get_instrument

SHIPPED = ["wai", "wai_t", "srs", "phq9", "gad7", "core10", "tasc"]

CUSTOM_YAML = """
instruments:
  ors:
    name: Outcome Rating Scale
    construct: outcome
    rater: client
    n_items: 4
    item_min: 0
    item_max: 10
    scoring: sum
    subscales: {individual: [1], interpersonal: [2], social: [3], overall: [4]}
    bands: [[0, clinical range], [25, non-clinical range]]
    cutoff: 25
    source: "Miller, S. D., Duncan, B. L., Brown, J., Sparks, J. A., & Claud, D. A. (2003).
      The Outcome Rating Scale. Journal of Brief Therapy, 2(2), 91-100."
"""


def _fields(**changes):
    """A valid plain definition, with `changes` applied."""
    fields = {
        "key": "abc",
        "name": "A test scale",
        "construct": "symptoms",
        "rater": "client",
        "n_items": 4,
        "item_min": 0,
        "item_max": 3,
        "scoring": "sum",
        "source": "Nobody (2026). A test scale.",
    }
    return fields | changes


def test_registry_ships_the_documented_instruments():
    assert sorted(INSTRUMENTS) == sorted(SHIPPED)
    for key, instrument in INSTRUMENTS.items():
        assert instrument.key == key
        assert instrument.source.strip()


@pytest.mark.parametrize(
    ("key", "n_items", "total_range"),
    [("wai", 12, (1, 5)), ("wai_t", 12, (1, 7)), ("srs", 4, (0, 40)), ("phq9", 9, (0, 27)),
     ("gad7", 7, (0, 21)), ("core10", 10, (0, 40)), ("tasc", 12, (1, 4))],
)
def test_item_columns_and_total_range(key, n_items, total_range):
    instrument = get_instrument(key)
    assert instrument.items() == [f"{key}_{i}" for i in range(1, n_items + 1)]
    assert instrument.total_range() == total_range


def test_wai_sr_subscales_partition_the_items():
    wai = INSTRUMENTS["wai"]
    numbers = sorted(i for items in wai.subscales.values() for i in items)
    assert numbers == list(range(1, 13))
    assert wai.subscale_items("goal") == ["wai_4", "wai_6", "wai_8", "wai_11"]
    assert wai.score_column() == "wai_total"
    assert wai.score_column("bond") == "wai_bond"


def test_published_thresholds():
    phq9, gad7, core10 = INSTRUMENTS["phq9"], INSTRUMENTS["gad7"], INSTRUMENTS["core10"]
    assert (phq9.cutoff, phq9.rci) == (10, 6)
    assert [low for low, _ in phq9.bands] == [0, 5, 10, 15, 20]
    assert (gad7.cutoff, gad7.rci) == (8, 4)
    assert (core10.cutoff, core10.rci, core10.reverse) == (11, 6, [2, 3])
    assert INSTRUMENTS["srs"].cutoff == 36


def test_unknown_subscale_lists_the_known_ones():
    with pytest.raises(AllianceParamsError, match=r"'wai' has no subscale 'agreement'.*bond"):
        INSTRUMENTS["wai"].score_column("agreement")
    with pytest.raises(AllianceParamsError, match="none"):
        INSTRUMENTS["phq9"].subscale_items("somatic")


def test_unknown_key_names_it_and_lists_the_known_keys():
    with pytest.raises(AllianceParamsError) as info:
        get_instrument("bdi2")
    message = str(info.value)
    assert "'bdi2'" in message
    for key in SHIPPED:
        assert key in message


def test_custom_instrument_from_a_yaml_parameters_block():
    custom = yaml.safe_load(CUSTOM_YAML)["instruments"]
    ors = get_instrument("ors", custom)
    assert ors.key == "ors"
    assert ors.bands == [(0.0, "clinical range"), (25.0, "non-clinical range")]
    assert ors.score_column("social") == "ors_social"
    assert ors.total_range() == (0, 40)
    with pytest.raises(AllianceParamsError, match="ors"):
        get_instrument("bdi2", custom)


def test_custom_definition_replaces_a_shipped_one():
    fields = INSTRUMENTS["wai_t"].model_dump() | {"subscales": {"bond": [1, 2, 3, 4]}}
    assert get_instrument("wai_t", {"wai_t": fields}).subscale_items("bond")[0] == "wai_t_1"
    assert INSTRUMENTS["wai_t"].subscales == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reverse": [0, 5]}, r"reverse items \[0, 5\] are outside 1..4"),
        ({"subscales": {"a": [1, 9]}}, r"subscale 'a' items \[9\]"),
        ({"subscales": {"total": [1]}}, "not 'total'"),
        ({"item_min": 3, "item_max": 3}, "item_min must be below item_max"),
        ({"prorate_min_items": 5}, "prorate_min_items must be within 1..4"),
        ({"cutoff": 13}, "cutoff 13 is outside the total range 0..12"),
        ({"bands": [[5, "b"], [0, "a"]]}, "strictly ascending"),
        ({"key": "Bad-Key"}, "key must be lower-case"),
        ({"scoring": "median"}, "scoring"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_custom_definitions_are_refused(changes, message):
    key = changes.get("key", "abc")
    with pytest.raises(AllianceParamsError, match=message):
        get_instrument(key, {key: _fields(**changes)})


def test_every_problem_is_reported_at_once():
    with pytest.raises(AllianceParamsError) as info:
        get_instrument("abc", {"abc": _fields(reverse=[7], subscales={"a": [8]}, cutoff=99)})
    assert all(word in str(info.value) for word in ["reverse", "subscale 'a'", "cutoff"])


def test_key_must_match_its_entry():
    with pytest.raises(AllianceParamsError, match="'xyz'.*'abc'"):
        get_instrument("xyz", {"xyz": _fields()})


def test_instrument_is_frozen_and_validated_directly():
    instrument = Instrument.model_validate(_fields())
    with pytest.raises(pydantic.ValidationError):
        instrument.n_items = 5
    with pytest.raises(pydantic.ValidationError, match="outside"):
        Instrument(**_fields(reverse=[5]))
