"""Robustness: a specification curve over the analyst's choices (``robustness:``).

:mod:`~alliance_analysis.robustness.curve` expands the choices into specifications, fits each
on the engine (in this process or on Dask, stored chunk by chunk and resumable, as the power
study), summarises the curve and runs the joint test under the null of Simonsohn, Simmons &
Nelson (2020).

May import: :mod:`alliance_analysis.multilevel` (the fits), :mod:`alliance_analysis.power`
(its Dask client), and the layers below them; never the report.
"""
