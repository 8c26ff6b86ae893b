"""The report: the run folder and its index of outputs, figures, APA tables, the page and the
methods text, and one ``report_<stage>(results, run)`` writer per stage.

Modules: :mod:`~alliance_analysis.report.runfolder` (:class:`RunFolder`: tables, figures,
``results.json`` and the index ``outputs.json``), :mod:`~alliance_analysis.report.plots`
(every figure: it draws, it does not compute), :mod:`~alliance_analysis.report.tables`
(APA formatting), :mod:`~alliance_analysis.report.page` (``index.html``),
:mod:`~alliance_analysis.report.methods` (methods and results paragraphs), and the stage
writers :mod:`~alliance_analysis.report.clean`, :mod:`~alliance_analysis.report.describe`,
:mod:`~alliance_analysis.report.multilevel`, :mod:`~alliance_analysis.report.sem`,
:mod:`~alliance_analysis.report.change` and :mod:`~alliance_analysis.report.power`.

May import: every model family and data (their result objects), never the pipeline or the
command line. Nothing is imported here, so that writing a table does not load every model.
"""
