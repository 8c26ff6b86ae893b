"""Monte Carlo power for alliance study designs: many simulated studies, each analysed as the
real one would be, on Dask (or serially).

Modules: :mod:`~alliance_analysis.power.study` (:func:`run_power` and the summary),
:mod:`~alliance_analysis.power.params` (the power parameters file),
:mod:`~alliance_analysis.power.run` (replicates stored chunk by chunk, on Dask) and
:mod:`~alliance_analysis.power.replicate` (one replicate). The report of a study (tables,
power curve) is :mod:`alliance_analysis.report.power`.

May import: the model families, data, options, params, instruments, results, errors. Never
the report or the pipeline.
"""

from alliance_analysis.power.params import PowerParams, load_power_params
from alliance_analysis.power.study import (PowerResult, design_grid, headline_table,
                                           performance, run_power, scenario_fields,
                                           smallest_adequate, wilson_interval)

__all__ = ["PowerParams", "PowerResult", "design_grid", "headline_table", "load_power_params",
           "performance", "run_power", "scenario_fields", "smallest_adequate",
           "wilson_interval"]
