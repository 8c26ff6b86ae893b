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
