"""The manifest's record of the software a run used: package versions, their differences
from ``requirements.lock``, and the git commit of the workbench.

References
----------
PEP 503 (normalised names): https://peps.python.org/pep-0503/
Core metadata (``Name``, ``Version``): https://packaging.python.org/en/latest/specifications/core-metadata/
"""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path
from typing import Any

#: Distributions whose installed versions go into the manifest.
RECORDED_PACKAGES: tuple[str, ...] = (
    "alliance-analysis", "numpy", "scipy", "pandas", "pyarrow", "statsmodels", "semopy",
    "matplotlib", "seaborn", "pydantic", "pandera", "pyreadstat", "openpyxl", "papermill",
    "nbconvert", "ipykernel", "jinja2", "python-docx", "jupyter-server-mathjax",
)


def _canonical(name: str) -> str:
    """A distribution's name as the package index compares names (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions() -> dict[str, str]:
    """The version of every installed distribution, by canonical name (:func:`_canonical`).

    What ``importlib.metadata.version`` gives for each name (the first on ``sys.path``; a
    test checks every locked package), in one pass reading only the metadata headers, where
    ``version()`` parses each whole file (0.15 s for the lock file's packages; 0.01 s here).
    """
    from importlib.metadata import distributions

    versions: dict[str, str] = {}
    for dist in distributions():
        text = (dist.read_text("METADATA") or dist.read_text("PKG-INFO")
                or dist.read_text("") or "")  # "": a one-file legacy egg-info
        header = text.split("\n\n", 1)[0]
        name = re.search(r"^Name:[ \t]*(\S.*?)\s*$", header, re.MULTILINE)
        number = re.search(r"^Version:[ \t]*(\S.*?)\s*$", header, re.MULTILINE)
        if name and number:
            versions.setdefault(_canonical(name.group(1)), number.group(1))
    return versions


def package_versions(installed: dict[str, str] | None = None) -> dict[str, str]:
    """Installed versions of the packages a run depends on, and of Python (``installed``:
    :func:`installed_versions`, read if not given)."""
    installed = installed_versions() if installed is None else installed
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        versions[name] = _version(installed, name)
    return versions


def _version(installed: dict[str, str], name: str) -> str:
    """``name``'s version from :func:`installed_versions`; one it does not name is looked up
    by ``importlib.metadata`` (a distribution whose folder and ``Name`` disagree)."""
    if (canonical := _canonical(name)) in installed:
        return installed[canonical]
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def lock_differences(lock_file: Path,
                     installed: dict[str, str] | None = None) -> dict[str, dict[str, str]] | None:
    """Packages whose installed version differs from ``requirements.lock`` (None: no lock).

    Parameters
    ----------
    lock_file
        The lock file (``name==version`` lines).
    installed
        :func:`installed_versions`, read if not given.

    Returns
    -------
    dict or None
        ``{package: {"locked": ..., "installed": ...}}``; empty when everything matches.
    """
    if not lock_file.is_file():
        return None
    installed = installed_versions() if installed is None else installed
    differences = {}
    for line in lock_file.read_text(encoding="utf-8").splitlines():
        name, sep, locked = line.strip().partition("==")
        if not sep or line.startswith("#"):
            continue
        found = _version(installed, name)
        if found != locked:
            differences[name] = {"locked": locked, "installed": found}
    return differences


def git_commit(folder: Path) -> dict[str, Any] | None:
    """The git commit of ``folder`` and whether the work tree had changes, if it is a repo."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None
