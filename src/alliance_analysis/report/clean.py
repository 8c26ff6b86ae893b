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
    run.write_table("cleaning_summary", prepared.summary(),
                    caption="Input rows kept, flagged and excluded by cleaning",
                    note="Every input row is either kept or excluded with its reason "
                    "(tables/ledger_rows.csv); every changed cell is in tables/ledger_cells.csv.")
    run.write_table("codebook", prepared.codebook,
                    caption="Codebook of the processed session table")
    run.write_table("ledger_rows", prepared.ledger_rows, formatted=False,
                    caption="Every input row: kept or excluded, with the reason")
    run.write_table("ledger_cells", prepared.ledger_cells, formatted=False,
                    caption="Every changed cell: old and new value, with the reason")
    return run.record(prepared.headline())
