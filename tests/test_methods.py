"""The methods paragraph follows the parameters and cites what it names."""

from __future__ import annotations

from pathlib import Path

from alliance_analysis.methods import methods_paragraph
from alliance_analysis.params import load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_methods_paragraph_reflects_parameters() -> None:
    demo = load_params(ROOT / "params" / "demo.yaml")
    text = methods_paragraph(demo, {"python": "3.11.7", "statsmodels": "0.15.0"})
    assert "restricted maximum likelihood" in text and "PHQ-9 at session t+1" in text
    assert "Python 3.11.7" in text and "statsmodels 0.15.0" in text
    raw = demo.to_plain()
    raw["multilevel"] = {**raw["multilevel"], "reml": False, "lagged_outcome": True}
    raw["sem"] = {**raw["sem"], "missing": "listwise"}
    changed = methods_paragraph(parse_params(raw, base_dir=ROOT), {})
    assert "by maximum likelihood" in changed and "controlling for the symptom level" in changed
    assert "listwise deletion" in changed


def test_every_citation_has_its_reference() -> None:
    text = methods_paragraph(load_params(ROOT / "params" / "demo.yaml"), {})
    paragraph, references = text.split("\n\nReferences\n")
    for author in ("Jacobson", "Tang", "Stiles", "Hamaker", "Curran", "Bates", "Baldwin"):
        assert author in paragraph and any(r.startswith(author) for r in references.split("\n"))
