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


def test_installed_versions_are_those_importlib_metadata_gives(tmp_path: Path) -> None:
    """The manifest's one-pass reading of the installed versions gives, for every locked and
    every recorded package, what ``importlib.metadata.version`` gives."""
    from importlib.metadata import PackageNotFoundError, version

    from alliance_analysis.pipeline import (RECORDED_PACKAGES, installed_versions,
                                            lock_differences, package_versions)

    root = Path(__file__).resolve().parents[1]
    names = [line.partition("==")[0] for line in
             (root / "requirements.lock").read_text().splitlines()
             if "==" in line and not line.startswith("#")]
    expected = {}
    for name in [*names, *RECORDED_PACKAGES, "no-such-package-here"]:
        try:
            expected[name] = version(name)
        except PackageNotFoundError:
            expected[name] = "not installed"
    assert len(names) > 100 and expected["no-such-package-here"] == "not installed"
    installed = installed_versions()
    recorded = package_versions(installed)
    assert {name: recorded[name] for name in RECORDED_PACKAGES} == {
        name: expected[name] for name in RECORDED_PACKAGES}
    # every package pinned at the version importlib.metadata gives: nothing differs
    lock = tmp_path / "requirements.lock"
    lock.write_text("".join(f"{name}=={expected[name]}\n" for name in expected))
    assert lock_differences(lock, installed) == {}
