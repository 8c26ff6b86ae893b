"""The stages of a run (its notebooks) and which start when: the clean stage first, then the
others side by side.

The stages after :data:`PARALLEL_AFTER` read only its processed table and nothing of each
other, so they may run at the same time (``jobs`` of them, :func:`stage_workers`); they start
in an order packed so that no long stage is left to run alone at the end (:func:`start_order`).
``results.json`` and ``outputs.json`` are written under a lock with sorted keys, so the run
folder does not depend on which stage finished first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from alliance_analysis.errors import AllianceRunError

#: The pipeline's notebooks, in the order they run.
NOTEBOOKS: tuple[str, ...] = ("01_clean", "02_describe", "03_multilevel", "04_sem", "05_change",
                              "06_robustness")


def project_root() -> Path:
    """The source checkout holding ``notebooks/`` (the package is installed editable)."""
    return Path(__file__).resolve().parents[2]


def notebooks_dir() -> Path:
    """Folder of the pipeline notebooks, found relative to the package."""
    folder = project_root() / "notebooks"
    if not (folder / f"{NOTEBOOKS[0]}.ipynb").is_file():
        raise AllianceRunError(
            f"cannot find the pipeline notebooks in {folder}. Install the workbench from its "
            "source folder with `pip install -e .` (as `make report` does)"
        )
    return folder


#: The stage after which the others may run at the same time.
PARALLEL_AFTER = "01_clean"

#: The order the stages after :data:`PARALLEL_AFTER` start in when several run at a time,
#: packed for two cores from their seconds on the demo (03 7.8, 05 6.1, 04 5.3, 06 3.8 when it
#: fits its specifications and 1.8 when they are cached, 02 3.4): 03 and 05 first, then 06
#: beside 03 and 04 beside 05, so that the two cores end together (03 + 04 against
#: 05 + 06 + 02) rather than one stage running alone at the end. Stages not listed follow in
#: notebook order.
START_ORDER: tuple[str, ...] = ("03_multilevel", "05_change", "06_robustness", "04_sem",
                                "02_describe")


def start_order(notebooks: Sequence[str], jobs: int | None) -> list[str]:
    """The order the stages start in: up to :data:`PARALLEL_AFTER` as given, then (when
    several run at a time) :data:`START_ORDER`."""
    notebooks = list(notebooks)
    split = parallel_from(notebooks)
    rest = notebooks[split:]
    if stage_workers(jobs) > 1:
        rest.sort(key=lambda name: (START_ORDER.index(name) if name in START_ORDER
                                    else len(START_ORDER)))
    return notebooks[:split] + rest


def stage_workers(jobs: int | None) -> int:
    """Stages run at a time after :data:`PARALLEL_AFTER`: ``jobs``, else one per core."""
    return max(1, jobs if jobs is not None else (os.cpu_count() or 1))


def parallel_from(notebooks: Sequence[str]) -> int:
    """The position of the first stage that may run beside others: the one after
    :data:`PARALLEL_AFTER` (0 when that stage is not run)."""
    notebooks = list(notebooks)
    return notebooks.index(PARALLEL_AFTER) + 1 if PARALLEL_AFTER in notebooks else 0


def side_by_side(notebooks: Sequence[str], jobs: int | None) -> int:
    """How many stages run at the same time at most: :func:`stage_workers`, no more than the
    stages from :func:`parallel_from` on (1 when they run one after another)."""
    after = len(notebooks) - parallel_from(notebooks)
    workers = stage_workers(jobs)
    return 1 if workers == 1 or after <= 1 else min(workers, after)
