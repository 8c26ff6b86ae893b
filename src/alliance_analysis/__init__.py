"""alliance-analysis: a research workbench for psychotherapy therapeutic-alliance research.

The logic of every analysis lives in this package; the notebooks in ``notebooks/`` are thin,
parameterised windows onto it, run in order by :mod:`alliance_analysis.pipeline`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("alliance-analysis")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
