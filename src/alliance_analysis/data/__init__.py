"""Data in: reading the five formats, the anonymisation gate, cleaning with its ledger,
scoring, the canonical session table, descriptive tables and simulated data with known truth.

Modules: :mod:`~alliance_analysis.data.io` (CSV, Excel, SPSS, Stata, Parquet),
:mod:`~alliance_analysis.data.privacy` (the gate and pseudonyms),
:mod:`~alliance_analysis.data.cleaning` (rules and the ledger),
:mod:`~alliance_analysis.data.scoring` (scores and reliability),
:mod:`~alliance_analysis.data.schema` (the canonical table and codebook),
:mod:`~alliance_analysis.data.prepare` (the clean stage as one call),
:mod:`~alliance_analysis.data.describe` (the describe stage's tables),
:mod:`~alliance_analysis.data.clients` (client-level summaries every model family reads:
baseline and post scores, early alliance) and :mod:`~alliance_analysis.data.simulate`
(simulated datasets with their truth: :mod:`~alliance_analysis.data.simulate_sessions` and
:mod:`~alliance_analysis.data.simulate_panel` behind its one :func:`simulate`).

May import: :mod:`alliance_analysis.params`, :mod:`alliance_analysis.options`,
:mod:`alliance_analysis.instruments`, :mod:`alliance_analysis.results`,
:mod:`alliance_analysis.errors`. Never a model family, the report or the pipeline (the
contract in ``pyproject.toml``, checked by ``make test``).
"""
