"""The result object every model function returns (DESIGN.md, "Result conventions").

A model function takes the canonical session table and plain arguments and returns a
:class:`ModelResult`: tidy ``params`` (one row per term: ``term, estimate, se, ci_low, ci_high,
p``, plus ``std_estimate`` where meaningful), a ``fit`` mapping (``n_obs, n_clients,
n_therapists, loglik, aic, bic, converged, warnings``; for SEM also ``chi2, df, cfi, tli,
rmsea, srmr``), and the ``spec`` actually fitted (formula or model syntax). Report, notebooks
and ``results.json`` all read these same tables.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from alliance_analysis.errors import ConvergenceWarning

#: Per-attempt optimizer messages: kept in the fit tables, not repeated among a model's flags.
OPTIMIZER_NOTE = re.compile(r"^((lbfgs|bfgs|cg|powell|nm|newton)\b.*:|optimizer )")

#: Columns every ``params`` table starts with, in this order.
PARAM_COLUMNS = ("term", "estimate", "se", "ci_low", "ci_high", "p")


@dataclass(frozen=True)
class ModelResult:
    """A fitted model's tidy estimates, fit statistics and specification.

    Attributes
    ----------
    name
        Stable name of the model (used for table file names and ``results.json`` keys).
    params
        One row per term; columns start with :data:`PARAM_COLUMNS`; one scalar per cell.
    fit
        Fit statistics and diagnostics; ``converged`` (bool) and ``warnings`` (list of text)
        are always present.
    spec
        The formula or model syntax actually fitted.
    extra
        Further tidy tables of the model by name (e.g. ``variance_components``, ``icc``).
    """

    name: str
    params: pd.DataFrame
    fit: Mapping[str, Any]
    spec: str
    extra: Mapping[str, pd.DataFrame] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in PARAM_COLUMNS if c not in self.params.columns]
        if missing:
            raise ValueError(f"{self.name}: params table lacks columns {missing}")
        for key in ("converged", "warnings"):
            if key not in self.fit:
                raise ValueError(f"{self.name}: fit lacks '{key}'")

    def to_table(self) -> pd.DataFrame:
        """The params table with the model name and its convergence flag on every row."""
        table = self.params.copy()
        table.insert(0, "model", self.name)
        table["converged"] = bool(self.fit["converged"])
        return table

    def fit_table(self) -> pd.DataFrame:
        """The fit statistics as a one-row table (warnings joined by '; ')."""
        row = {key: ("; ".join(value) if key == "warnings" else value)
               for key, value in self.fit.items()}
        return pd.DataFrame([{"model": self.name, **row}])

    def flags(self) -> dict[str, Any]:
        """What a reader must know before reading the estimates, for the run folder's index.

        ``{"model", "converged", "singular", "warnings"}``: ``singular`` is False for models
        without variance components; ``warnings`` leaves out the per-attempt optimizer notes
        (they stay in the fit table).
        """
        return {"model": self.name, "converged": bool(self.fit["converged"]),
                "singular": bool(self.fit.get("singular", False)),
                "warnings": [w for w in self.fit["warnings"] if not OPTIMIZER_NOTE.match(w)]}

    def to_markdown(self, digits: int = 3) -> str:
        """The params table as Markdown, with a note when the fit is flagged."""
        text = self.params.to_markdown(index=False, floatfmt=f".{digits}f")
        notes = list(self.fit["warnings"])
        if not self.fit["converged"]:
            notes.insert(0, "The fit did NOT converge: do not interpret these estimates.")
        return text + ("\n\n" + "\n".join(f"Note. {n}" for n in notes) if notes else "")


def not_estimable(name: str, reason: str, spec: str = "", **counts: Any) -> ModelResult:
    """The result of a model the data cannot identify: no estimates, flagged with the reason.

    ``fit`` holds ``converged`` False, ``singular`` False, ``warnings`` ``["NOT ESTIMABLE:
    <reason>"]``, NaN ``loglik``/``aic``/``bic``, and the counts given (``n_obs``,
    ``n_clients``, ``n_therapists``); ``params`` has the columns of :data:`PARAM_COLUMNS`
    and no rows. A :class:`ConvergenceWarning` names the model, so the notebook shows it.
    """
    params = pd.DataFrame({column: pd.Series(dtype=object if column == "term" else float)
                           for column in PARAM_COLUMNS})
    fit = {"n_obs": 0, "n_clients": 0, "n_therapists": 0, **counts, "loglik": float("nan"),
           "aic": float("nan"), "bic": float("nan"), "method": "", "optimizer": "none",
           "converged": False, "singular": False, "warnings": [f"NOT ESTIMABLE: {reason}"]}
    warnings.warn(f"{name}: not estimable: {reason}", ConvergenceWarning, stacklevel=3)
    return ModelResult(name=name, params=params, fit=fit, spec=spec)


def is_estimated(result: ModelResult) -> bool:
    """False for a :func:`not_estimable` result (no estimates to read, draw or record)."""
    return not any(str(w).startswith("NOT ESTIMABLE") for w in result.fit["warnings"])


def warn_if_flagged(result: ModelResult) -> None:
    """Raise a visible :class:`ConvergenceWarning` for a fit whose ``warnings`` say it did not
    converge or is singular (the flags stay in the result too: never hidden)."""
    flagged = [w for w in result.fit["warnings"]
               if w.startswith(("NOT CONVERGED", "SINGULAR FIT"))]
    if flagged:
        warnings.warn(f"{result.name}: " + "; ".join(flagged), ConvergenceWarning, stacklevel=3)
