"""Dependencies are declared once in pyproject.toml; environment.yml must mirror them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

# conda-forge names that differ from PyPI names
CONDA_NAMES = {"pyyaml": "pyyaml"}


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    assert match, requirement
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def test_environment_yml_mirrors_pyproject(root: Path) -> None:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = dict(_split(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((root / "environment.yml").read_text())
    mirrored: dict[str, str] = {}
    for entry in env["dependencies"]:
        for item in entry["pip"] if isinstance(entry, dict) else [entry]:
            if item in ("pip", "-e .") or item.startswith("python="):
                continue
            name, spec = _split(item)
            mirrored[name] = spec
    assert {CONDA_NAMES.get(k, k): v for k, v in declared.items()} == mirrored
    python = [e for e in env["dependencies"] if isinstance(e, str) and e.startswith("python=")]
    assert python == ["python=3.11"] and project["requires-python"].startswith(">=3.11")


def test_lock_satisfies_pyproject_and_environment(root: Path) -> None:
    from packaging.requirements import Requirement

    locked = {}
    for line in (root / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            locked[name.lower().replace("_", "-")] = version
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in locked, f"{name} is declared but not locked"
        assert requirement.specifier.contains(locked[name]), (name, locked[name])


def test_manifest_reports_lock_differences(tmp_path: Path) -> None:
    from alliance_analysis.pipeline import lock_differences

    lock = tmp_path / "requirements.lock"
    lock.write_text("# header\nnumpy==0.0.1\n")
    differences = lock_differences(lock)
    assert differences is not None and differences["numpy"]["locked"] == "0.0.1"
    assert lock_differences(tmp_path / "absent.lock") is None
