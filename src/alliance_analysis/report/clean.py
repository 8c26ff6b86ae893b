"""Writing the clean stage (``01_clean``) into the run folder."""

from __future__ import annotations

from typing import Any

from alliance_analysis.data.prepare import Prepared
from alliance_analysis.report.runfolder import RunFolder


def report_clean(prepared: Prepared, run: RunFolder) -> dict[str, Any]:
    """Write the cleaning summary, the codebook and both ledgers; record the headline counts.

    Returns
    -------
    dict
        The headline numbers as recorded in ``results.json`` (``clean.*``).
    """
    run.write_table("cleaning_summary", prepared.summary())
    run.write_table("codebook", prepared.codebook)
    run.write_table("ledger_rows", prepared.ledger_rows, formatted=False)
    run.write_table("ledger_cells", prepared.ledger_cells, formatted=False)
    return run.record(prepared.headline())
