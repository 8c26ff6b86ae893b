"""Change and process markers: reliable and clinically significant change, sudden gains,
alliance ruptures and repairs, early alliance and dropout.

Modules: :mod:`~alliance_analysis.change.markers` (the stage as one call:
:func:`analyse_change`), :mod:`~alliance_analysis.change.reliable_change`,
:mod:`~alliance_analysis.change.sudden_gains`, :mod:`~alliance_analysis.change.ruptures`,
:mod:`~alliance_analysis.change.dropout` and :mod:`~alliance_analysis.change.client_series`
(each client's scores by session, what every marker reads).

May import: data, stats, options, params, instruments, results, errors. Never
:mod:`alliance_analysis.multilevel` or :mod:`alliance_analysis.sem`, nor the report.
"""

from alliance_analysis.change.markers import (ChangeReport, analyse_change, dropout_rule,
                                              dropout_status, reliable_change)
from alliance_analysis.options import ChangeOptions

__all__ = ["ChangeOptions", "ChangeReport", "analyse_change", "dropout_rule", "dropout_status",
           "reliable_change"]
