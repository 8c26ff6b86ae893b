"""Stages side by side: a failure or Ctrl-C cancels the stages not started; the run folder's
lock admits one writer at a time and never takes over a live lock (fast: no notebooks run)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from alliance_analysis import pipeline
from alliance_analysis.errors import AllianceRunError
from alliance_analysis.report import runfolder
from alliance_analysis.robustness.curve import curve_key
from alliance_analysis.specs import RobustnessSpec

NOTEBOOKS = ("01_clean", "02_describe", "03_multilevel", "04_sem", "05_change", "06_robustness")


def _run_stages(monkeypatch, fail: str | None = None, interrupt: str | None = None):
    started: list[str] = []

    def fake(name: str, run_dir: Path, parameters: dict[str, str], kernels=None) -> None:
        started.append(name)
        # a failing stage fails early, while the stage beside it still runs
        time.sleep(0.05 if name in (fail, interrupt) else 0.2)
        if name == fail:
            raise AllianceRunError(f"{name} failed")
        if name == interrupt:
            raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_execute", fake)
    manifest = {"seconds": {}}
    running: list[str] = []
    try:
        pipeline._execute_all(NOTEBOOKS, Path("."), {}, manifest, None, 2, running)
        raised = None
    except BaseException as exc:  # noqa: BLE001 - what the run would see
        raised = exc
    return started, manifest, running, raised


def test_all_stages_run_and_seconds_are_in_notebook_order(monkeypatch):
    started, manifest, _, raised = _run_stages(monkeypatch)
    assert raised is None and started[0] == "01_clean" and sorted(started) == sorted(NOTEBOOKS)
    assert list(manifest["seconds"]) == list(NOTEBOOKS)


def test_a_failure_cancels_the_stages_not_started(monkeypatch):
    started, manifest, _, raised = _run_stages(monkeypatch, fail="05_change")
    assert isinstance(raised, AllianceRunError) and "05_change failed" in str(raised)
    # 03 and 05 started together (the packed order); 05 failed, so the others never started
    # (03 ran to its end)
    assert started == ["01_clean", "03_multilevel", "05_change"]
    assert "03_multilevel" in manifest["seconds"]
    assert "05_change" not in manifest["seconds"]


def test_ctrl_c_in_a_stage_cancels_the_rest_and_names_it(monkeypatch):
    started, _, running, raised = _run_stages(monkeypatch, interrupt="05_change")
    assert isinstance(raised, KeyboardInterrupt)
    assert started == ["01_clean", "03_multilevel", "05_change"]
    assert running == ["05_change"]


def test_the_lock_admits_one_writer_and_refuses_to_break_a_live_lock(tmp_path):
    holders, peak, errors = 0, 0, []
    guard = threading.Lock()

    def writer(hold: float) -> None:
        nonlocal holders, peak
        try:
            with runfolder._locked(tmp_path, timeout=0.2):
                with guard:
                    holders += 1
                    peak = max(peak, holders)
                time.sleep(hold)
                with guard:
                    holders -= 1
        except AllianceRunError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=writer, args=(h,)) for h in (0.5, 0.3, 0.3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 1 and len(errors) == 2 and "delete the file and rerun" in errors[0]
    assert not (tmp_path / runfolder.LOCK).exists()


def test_a_stale_lock_of_a_killed_writer_is_taken_over(tmp_path):
    lock = tmp_path / runfolder.LOCK
    lock.write_text("a killed kernel")
    old = time.time() - 1000
    import os
    os.utime(lock, (old, old))
    with runfolder._locked(tmp_path, timeout=1.0, stale_after=120.0):
        assert lock.read_text() != "a killed kernel"
    assert not lock.exists()


def test_the_cache_key_changes_when_columns_are_renamed():
    section = RobustnessSpec.model_validate({
        "formula": "y ~ {x} + (1 | client_id)", "target": "{x}", "choices": {"x": ["a"]}})
    data = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    swapped = data.rename(columns={"a": "b", "b": "a"})
    assert curve_key(data, section, {}) != curve_key(swapped, section, {})
    assert curve_key(data, section, {}) == curve_key(data.copy(), section, {})


def test_stages_after_the_clean_stage_start_in_the_packed_order() -> None:
    from alliance_analysis.pipeline import NOTEBOOKS
    from alliance_analysis.stages import start_order

    assert start_order(NOTEBOOKS, jobs=2) == ["01_clean", "03_multilevel", "05_change",
                                              "06_robustness", "04_sem", "02_describe"]
    assert start_order(NOTEBOOKS, jobs=1) == list(NOTEBOOKS)  # one after another: as given
    assert start_order(["01_clean", "07_mine", "04_sem"], jobs=2) == ["01_clean", "04_sem",
                                                                      "07_mine"]
    assert start_order(["02_describe", "03_multilevel"], jobs=2) == ["03_multilevel",
                                                                     "02_describe"]
