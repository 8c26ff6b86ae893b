"""The machine a benchmark ran on, in one line: every benchmark's header says it the same way.

Imported by the benchmark scripts (the benchmark folder is on ``sys.path`` when a script in it
runs); nothing here is timed.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: Packages whose versions the line names (those installed).
PACKAGES = ("numpy", "scipy", "statsmodels", "alliance-analysis")


def machine() -> str:
    """System, CPU model, cores and memory; Python and the versions of :data:`PACKAGES`."""
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = next(int(line.split()[1]) for line in meminfo.read_text().splitlines()
                     if line.startswith("MemTotal"))
        memory = f", {total / 2**20:.0f} GiB"
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores{memory}; "
            f"Python {platform.python_version()}, {', '.join(versions)}")


def write_table(table: pd.DataFrame, out: Path, note: str) -> None:
    """Write a benchmark's table to ``out`` (CSV) and print it under a line naming Python,
    the cores and ``note``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, lineterminator="\n")
    print(f"\n{platform.python_version()}, {os.cpu_count()} cores; {note}")
    print(table.round(3).to_string(index=False))
    print(f"written to {out}")
