"""The `alliance` command: simulate writes the documented files; errors exit 2 without traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alliance_analysis.cli import main


def test_simulate_with_design_options(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--seed", "5", "--therapists", "3",
                 "--clients-per-therapist", "4", "--max-sessions", "8"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["seed"] == 5 and truth["design"]["therapists"] == 3
    assert truth["design"]["max_sessions"] == 8
    assert (out / "sessions.csv").read_text().startswith("therapist_id,client_id,session")


def test_simulate_default_reproduces_the_demo_bytes(tmp_path: Path, root: Path) -> None:
    assert main(["simulate", "--out", str(tmp_path)]) == 0
    for name in ("sessions.csv", "truth.json"):
        assert (tmp_path / name).read_bytes() == (root / "data" / "demo" / name).read_bytes()


def test_simulate_bad_design_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--out", str(tmp_path), "--min-sessions", "9",
                 "--max-sessions", "5"]) == 2
    err = capsys.readouterr().err
    assert "invalid simulation design" in err and "Traceback" not in err


def test_console_script_is_installed(root: Path) -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "alliance"), "--help"],
                          capture_output=True, text=True, check=True)
    assert "run" in done.stdout and "simulate" in done.stdout and "validate" in done.stdout


def test_run_from_the_console_script_keeps_its_status_and_message(tmp_path: Path) -> None:
    """``alliance run`` exits without finalising the interpreter: its message still reaches
    the terminal and its status the shell."""
    params = tmp_path / "p.yaml"
    params.write_text("data: nowhere.csv\n", encoding="utf-8")
    done = subprocess.run([str(Path(sys.executable).parent / "alliance"), "run", str(params),
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "p.yaml" in done.stderr and "Traceback" not in done.stderr


def test_make_help_lists_every_target(root: Path) -> None:
    done = subprocess.run(["make", "-s", "help"], cwd=root, capture_output=True, text=True,
                          check=True)
    targets = {line.split()[1] for line in done.stdout.splitlines() if line.strip()}
    assert {"report", "test", "lab", "help"} <= targets


def test_alliance_run_imports_without_collection_then_collects(monkeypatch) -> None:
    """``alliance run`` (console) imports with garbage collection off; once the pipeline is
    imported, collection is on again with the imported objects frozen. Other commands, and
    main() called from Python, leave collection alone."""
    import gc

    from alliance_analysis import cli, pipeline

    seen = {}

    def fake_run(*args, **kwargs):
        seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count())
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "run", fake_run)
    monkeypatch.setattr(cli, "_start_kernels_early", lambda argv: None)
    monkeypatch.setattr(sys, "argv", ["alliance", "run", "params.yaml"])
    monkeypatch.setattr(cli.os, "_exit", lambda status: None)
    assert gc.isenabled()
    try:
        with pytest.raises(SystemExit):
            cli.console()
        assert seen == {"enabled": True, "frozen": seen["frozen"]} and seen["frozen"] > 0
        assert gc.isenabled() and not cli._collect_after_imports
    finally:
        gc.unfreeze()
        gc.enable()
    gc.disable()  # collection turned off by the caller is left off by main()
    try:
        with pytest.raises(SystemExit):
            main(["run", "params.yaml"])
        assert seen["enabled"] is False
    finally:
        gc.enable()
